// The real vhost-net device, in a QEMU guest booted once for this whole file (see
// test/fixtures/kernel/qemu.ts). Without QEMU and a kernel this prints one SKIP line, unless
// CI=true or VHOST_IOTLB_REQUIRE_KERNEL=1, where a missing kernel is a failure.
// The cli probe runs bin/run.js, i.e. the last `npm run build` (npm test builds first).
import t from 'tap'
import {NEEDED_PACKAGES, findPrerequisites, guestNode, runInGuest} from '../fixtures/kernel/qemu.js'
import type {Outcome} from '../fixtures/kernel/guest/record.js'
import type {CliRun} from '../fixtures/kernel/guest/cli.js'
import {cliTests, holdTests} from '../fixtures/kernel/cli-assertions.js'
import type {HoldTranscript} from '../fixtures/remote/kernel-scenario.js'

const required = process.env.CI === 'true' || process.env.VHOST_IOTLB_REQUIRE_KERNEL === '1'
const pre = findPrerequisites()

if (!pre.ok) {
  const why = `real-kernel tests need ${NEEDED_PACKAGES} (missing: ${pre.missing.join('; ')})`
  if (required) t.fail(why)
  else t.plan(0, why)
} else {
  // One boot under TCG takes 15-40 s depending on host load; tap's default is 30 s per file.
  t.setTimeout(10 * 60_000)
  const run = await runInGuest(pre.found, {
    script: guestNode('test/fixtures/kernel/guest/main.ts', ['smoke', 'miss', 'cli']),
    timeoutMs: 8 * 60_000,
  })
  const s = (ms?: number): string => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`)
  type ProbeLine = {probe: string; observations?: Record<string, Outcome>; error?: string; ms?: number; startupMs?: number}
  const probes = new Map<string, ProbeLine>()
  for (const line of run.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const parsed = JSON.parse(line) as ProbeLine
    probes.set(parsed.probe, parsed)
  }
  t.comment(
    `guest: prepare ${s(run.timings.prepare)}, boot ${s(run.timings.ready)}, modprobe done ${s(run.timings.modprobed)}, ` +
      `node start ${s(probes.get('_timing')?.startupMs)}, script done ${s(run.timings.exited)}, total ${s(run.timings.total)}` +
      `${run.initramfsBuilt ? ' (built initramfs)' : ''}`,
  )

  const diagnostics = {stderr: run.stderr, console: run.console.split('\n').slice(-40).join('\n')}
  t.test('the guest booted and ran the probes', async (t) => {
    t.notOk(run.timedOut, 'QEMU finished before the timeout', diagnostics)
    t.equal(run.modprobeStatus, 0, 'modprobe vhost_net tun', diagnostics)
    t.equal(run.status, 0, 'guest script exit status', diagnostics)
  })

  t.test('smoke: device IOTLB on a stock kernel', async (t) => {
    const smoke = probes.get('smoke')
    if (!smoke?.observations) {
      t.fail('no smoke observations', {error: smoke?.error, ...diagnostics})
      return
    }
    const o = smoke.observations
    const ok = (name: string, value?: unknown): void => {
      const r = o[name]
      t.ok(r?.ok, `${name} succeeds`, {result: r})
      if (value !== undefined && r?.ok) t.same(r.value, value, `${name} returns ${String(value)}`)
    }
    const fails = (name: string, code: string): void => {
      const r = o[name]
      t.equal(r && !r.ok ? r.error.code : undefined, code, `${name} fails with ${code}`, {result: r})
    }
    const u64 = (name: string): bigint | undefined => {
      const r = o[name]
      return r?.ok && typeof r.value === 'string' ? BigInt(r.value) : undefined
    }

    ok('open')
    ok('getFeaturesBeforeOwner'); // vhost-net answers GET_FEATURES itself, owner or not
    ok('setOwner', 0)
    fails('setOwnerAgain', 'EBUSY')
    const features = u64('getFeatures') ?? 0n
    t.not(features & (1n << 33n), 0n, `VIRTIO_F_ACCESS_PLATFORM (bit 33) offered in 0x${features.toString(16)}`)
    t.equal(features & (1n << 63n), 0n, 'VHOST_F_DEVICE_IOTLB (bit 63) is not offered')
    const backend = u64('getBackendFeatures') ?? 0n
    t.not(backend & 2n, 0n, `VHOST_BACKEND_F_IOTLB_MSG_V2 offered in 0x${backend.toString(16)}`)
    fails('updateBeforeFeatures', 'EFAULT'); // no IOTLB until ACCESS_PLATFORM is acked
    fails('setFeaturesUnoffered', 'EOPNOTSUPP')
    ok('setFeatures', 0)
    ok('setBackendFeatures', 0)

    ok('updateV2', 72)
    ok('updateV1', 72); // v1 envelopes stay accepted after MSG_V2 is acked
    ok('updateOverlapping', 72); // no overlap check in the interval tree
    fails('updateSizeZero', 'EINVAL')
    fails('updateKernelUaddr', 'EFAULT')
    fails('updateUaddrWraps', 'EFAULT')
    ok('invalidate', 72)
    fails('batchBegin', 'EFAULT'); // batching is vhost-vdpa only
    fails('missFromUser', 'EFAULT')
    fails('envelopeType3', 'EINVAL')
    ok('write71', 72)
    ok('write40', 72)
    fails('write39', 'EINVAL')
    fails('write3', 'EINVAL')
    ok('longWrite', 72)
    ok('asidNonZero', 72); // without VHOST_BACKEND_F_IOTLB_ASID the asid word is skipped

    ok('pollIdle', 0)
    fails('readIdle', 'EAGAIN')

    fails('rfcUpdateIotlb', 'ENOTTY')
    fails('rfcSetRequestEntry', 'ENOTTY')
    fails('rfcSetIotlbFd0', 'ENOTTY')
    fails('rfcSetIotlbFdMinus1', 'ENOBUFS'); // the unknown number lands in the per-ring handler
    ok('close')
  })

  t.test('miss: the worker asks for the rings it cannot translate', async (t) => {
    const miss = probes.get('miss')
    if (!miss?.observations) {
      t.fail('no miss observations', {error: miss?.error, ...diagnostics})
      return
    }
    const o = miss.observations
    for (const [name, r] of Object.entries(o)) {
      if (name.endsWith('.setBackend') || name === 'mapped.readAfter') continue
      t.ok(r.ok, `${name} succeeds`, {result: r})
    }
    const code = (name: string): string | undefined => {
      const r = o[name]
      return r && !r.ok ? r.error.code : undefined
    }
    t.equal(code('unmapped.setBackend'), 'EFAULT', 'VHOST_NET_SET_BACKEND needs the used ring mapped first')
    t.ok(o['mapped.setBackend']?.ok, 'VHOST_NET_SET_BACKEND with the used ring mapped', {result: o['mapped.setBackend']})
    const r = o['mapped.misses']
    const misses = r?.ok ? (r.value as Array<Record<string, unknown>>) : []
    // Descriptor table first, then the available ring, each read-only; size and uaddr are 0.
    t.match(misses, [
      {type: 1, iova: '0x100000', perm: 1, size: '0x0', uaddr: '0x0', version: 2},
      {type: 1, iova: '0x101000', perm: 1, size: '0x0', uaddr: '0x0', version: 2},
    ])
    t.equal(misses.length, 2, 'no more misses once the rings are mapped')
    t.equal(code('mapped.readAfter'), 'EAGAIN', 'the queue is empty afterwards')
  })

  const cli = probes.get('cli')
  const runs: Record<string, CliRun> = {}
  const holds: Record<string, HoldTranscript> = {}
  const threw: Record<string, string> = {}
  for (const [name, r] of Object.entries(cli?.observations ?? {})) {
    if (!r.ok) threw[name] = r.error.message
    if (!r.ok || typeof r.value !== 'object' || r.value === null) continue
    // The hold sessions (kernel-scenario.ts's transcripts) ride along with the single runs.
    if ('steps' in r.value) holds[name] = r.value as HoldTranscript
    else runs[name] = r.value as CliRun
  }
  if (!cli?.observations) t.fail('no cli observations', {error: cli?.error, ...diagnostics})
  else {
    const slowest = Object.entries(runs).sort((a, b) => b[1].ms - a[1].ms)[0]
    const held = Object.entries(holds).map(([name, h]) => `${name} ${s(h.ms)} (holder ready ${s(h.readyMs)}, ${h.steps.length} steps)`)
    t.comment(`cli: ${Object.keys(runs).length} runs of the binary in ${s(cli.ms)}, slowest ${slowest?.[0]} ${s(slowest?.[1].ms)}; hold: ${held.join(', ')}`)
    cliTests(t, runs)
    holdTests(t, holds, threw)
  }
}
