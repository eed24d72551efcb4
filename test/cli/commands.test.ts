// Every command through the real binary: stdout, stderr, exit code, and the state file before
// and after a failure.
import * as fs from 'node:fs'

import t, {type Test} from 'tap'

import {type Run, runCli} from '../fixtures/cli.js'

function stateIn(t: Test): string {
  return `${t.testdir()}/emu.json`
}

function json(run: Run): any {
  return JSON.parse(run.stdout)
}

function noStack(t: Test, run: Run) {
  t.notMatch(run.stdout + run.stderr, /\n\s+at .+:\d+:\d+\)?/, 'no stack trace')
}

t.test('update: text and JSON', async (t) => {
  const state = stateIn(t)
  const text = await runCli(['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f00_0000_1000', '--perm', 'rw'], {state})
  t.equal(text.code, 0)
  t.equal(text.stdout, 'slot 1: iova 0x1000 size 0x1000 uaddr 0x7f0000001000 perm rw type update valid\n')
  t.equal(text.stderr, '')
  const j = await runCli(['update', '--iova', '0x402000', '--size', '0x1000', '--uaddr', '8192', '--perm', 'r', '--invalid', '--json'], {state})
  t.equal(j.code, 0)
  t.same(json(j), {
    slot: 2,
    entry: {iova: '0x402000', size: '0x1000', userspace_addr: '0x2000', perm: 'ro', type: 'update', valid: false},
    completed_miss: false,
  })
})

t.test('update warns about an unaligned iova', async (t) => {
  const run = await runCli(['update', '--iova', '0x1234', '--size', '1', '--uaddr', '1', '--json'], {state: stateIn(t)})
  t.equal(run.code, 0)
  t.match(json(run).warnings, [{code: 'unaligned-iova'}])
  t.match(run.stderr, /^warning: iova 0x1234 is not page-aligned/)
})

t.test('update with a type other than UPDATE/INVALIDATE is EINVAL, exit 1, no change', async (t) => {
  const state = stateIn(t)
  await runCli(['set-fd', '3'], {state})
  const before = fs.readFileSync(state)
  const run = await runCli(['update', '--iova', '0', '--size', '1', '--uaddr', '1', '--type', 'miss', '--json'], {state})
  t.equal(run.code, 1)
  t.same(json(run), {error: {code: 'EINVAL', message: 'VHOST_UPDATE_IOTLB: EINVAL (flags.type 1 is neither UPDATE (2) nor INVALIDATE (3))'}})
  t.same(fs.readFileSync(state), before)
  noStack(t, run)
})

t.test('invalidate: matching and mismatched iova', async (t) => {
  const state = stateIn(t)
  await runCli(['update', '--iova', '0x3000', '--size', '4k', '--uaddr', '0x3000'], {state})
  const miss = await runCli(['invalidate', '--iova', '0x403000', '--json'], {state})
  t.same(json(miss), {slot: 3, invalidated: false})
  const missText = await runCli(['invalidate', '--iova', '0x403000'], {state})
  t.equal(missText.stdout, 'slot 3: unchanged (it does not hold iova 0x403000)\n')
  const hit = await runCli(['invalidate', '--iova', '0x3000'], {state})
  t.equal(hit.stdout, 'slot 3: invalidated 0x3000\n')
  const dump = json(await runCli(['dump', '--slot', '3', '--json'], {state}))
  t.same(dump.entries, [{slot: 3, iova: '0x3000', size: '0x0', userspace_addr: '0x0', perm: 'none', type: 'invalidate', valid: false}])
  const ranged = await runCli(['invalidate', '--iova', '0x3000', '--size', '4k'], {state})
  t.equal(ranged.code, 2, 'the RFC has no ranged invalidate')
})

t.test('set-fd and set-request-entry', async (t) => {
  const state = stateIn(t)
  t.same(json(await runCli(['set-fd', '7', '--json'], {state})), {iotlb_fd: 7})
  t.equal((await runCli(['set-fd', '-1'], {state})).stdout, 'iotlb fd cleared\n')
  t.same(json(await runCli(['set-fd', '--json', '--', '-1'], {state})), {iotlb_fd: null})
  t.same(json(await runCli(['set-request-entry', '0x7fff_ffff_efe0', '--json'], {state})), {request_entry: '0x7fffffffefe0'})
  const before = fs.readFileSync(state)
  const refused = await runCli(['set-request-entry', '0x7fffffffefe1', '--json'], {state})
  t.equal(refused.code, 1)
  t.equal(json(refused).error.code, 'EFAULT')
  t.match(refused.stderr, /VHOST_SET_IOTLB_REQUEST_ENTRY: EFAULT \(access_ok\(\) fails/)
  t.same(fs.readFileSync(state), before)
  const bad = await runCli(['set-fd', '-2'], {state})
  t.equal(bad.code, 2)
  t.equal(bad.stderr, 'vhost-iotlb: FD: "-2" is not an fd (an int from -1 to 2147483647, -1 clears; or auto)\n')
})

t.test('translate: ok, miss (exit 3) and fault (exit 1)', async (t) => {
  const state = stateIn(t)
  const fault = await runCli(['translate', '0x1000', '--json'], {state})
  t.equal(fault.code, 1)
  t.same(json(fault), {status: 'fault', errno: 'EFAULT', reason: 'miss at 0x1000: no eventfd set (VHOST_SET_IOTLB_FD)'})
  t.notOk(fs.existsSync(state), 'a fault on a fresh device writes nothing')
  await runCli(['set-fd', '5'], {state})
  await runCli(['set-request-entry', '0x7f0000000000'], {state})
  const miss = await runCli(['translate', '0x1abc', '--json'], {state})
  t.equal(miss.code, 3)
  t.same(json(miss), {
    status: 'miss',
    iova: '0x1000',
    request: {iova: '0x1000', size: '0x0', userspace_addr: '0x0', perm: 'none', type: 'miss', valid: false},
    request_bytes: '0010000000000000000000000000000000000000000000000001000000000000',
  })
  const busy = await runCli(['translate', '0x2000'], {state})
  t.equal(busy.code, 1)
  t.equal(busy.stdout, 'fault: EFAULT (miss at 0x2000: a miss for 0x1000 is already outstanding)\n')
  await runCli(['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x1000'], {state})
  const ok = await runCli(['translate', '0x1800', '--len', '0x100'], {state})
  t.equal(ok.code, 0)
  t.equal(ok.stdout, '0x1800 len 0x100: 1 iov\n  iov[0] iova 0x1800 -> uaddr 0x1800 len 0x100\n')
})

t.test('translate --len above u32 is a usage error', async (t) => {
  const run = await runCli(['translate', '0', '--len', '0x1_0000_0000'], {state: stateIn(t)})
  t.equal(run.code, 2)
  t.equal(run.stderr, 'vhost-iotlb: --len: "0x1_0000_0000" is out of range for a u32 (0..0xffffffff)\n')
})

t.test('the patch session: update, translate (miss), update, translate (ok), dump', async (t) => {
  const state = stateIn(t)
  const steps: Array<[string[], number]> = [
    [['reset'], 0],
    [['set-fd', '9'], 0],
    [['set-request-entry', '0x7f0000000000'], 0],
    [['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f0000101000', '--perm', 'rw'], 0],
    [['translate', '0x1000', '--len', '0x1000'], 0],
  ]
  for (const [args, code] of steps) t.equal((await runCli(args, {state})).code, code, args.join(' '))
  const miss = await runCli(['translate', '0x2000', '--json'], {state})
  t.equal(miss.code, 3)
  t.equal(json(miss).request.type, 'miss')
  t.match(json(miss).warnings, undefined, 'pending was never completed: no stale fields yet')
  const answer = await runCli(['update', '--iova', '0x2000', '--size', '4k', '--uaddr', '0x7f0000202000', '--perm', 'ro', '--json'], {state})
  t.equal(json(answer).completed_miss, true)
  const ok = await runCli(['translate', '0x1800', '--len', '0x1000', '--json'], {state})
  t.equal(ok.code, 0)
  t.same(json(ok).iov, [{iova: '0x1800', userspace_addr: '0x7f0000101800', len: '0x1000'}], 'rfc: one iovec past the page')
  t.match(json(ok).warnings, [{code: 'size-arithmetic'}])
  const dump = json(await runCli(['dump', '--json'], {state}))
  t.same(
    {fd: dump.iotlb_fd, signals: dump.eventfd_signals, req: dump.request_entry, waiting: dump.waiting, slots: dump.entries.map((e: any) => e.slot)},
    {fd: 9, signals: 1, req: '0x7f0000000000', waiting: false, slots: [1, 2]},
  )
  t.same(dump.pending, {iova: '0x2000', size: '0x1000', userspace_addr: '0x7f0000202000', perm: 'ro', type: 'update', valid: true})
  t.equal(dump.pending_bytes, '0020000000000000' + '0010000000000000' + '0020200000' + '7f0000' + '01020200' + '00000000')
  const next = await runCli(['translate', '0x5000', '--json'], {state})
  t.equal(next.code, 3)
  t.match(json(next).warnings, [{code: 'stale-request-fields'}], 'the next request carries the previous answer')
  t.equal(json(next).request.userspace_addr, '0x7f0000202000')
  t.equal(json(next).request.valid, true)
})

t.test('dump: contract JSON, tables without ANSI in a pipe', async (t) => {
  const state = stateIn(t)
  const fresh = json(await runCli(['dump', '--json'], {state}))
  t.same(fresh, {
    model: 'rfc',
    page_size: 4096,
    slots: 1024,
    iotlb_fd: null,
    eventfd_signals: 0,
    request_entry: null,
    pending: {iova: '0x0', size: '0x0', userspace_addr: '0x0', perm: 'none', type: 'invalidate', valid: false},
    pending_bytes: '0'.repeat(50) + '03' + '0'.repeat(12),
    request_bytes: null,
    waiting: false,
    entries: [],
  })
  const all = json(await runCli(['dump', '--all', '--json'], {state}))
  t.equal(all.entries.length, 1024)
  t.same(all.entries[1023], {slot: 1023, iova: '0x0', size: '0x0', userspace_addr: '0x0', perm: 'none', type: 'none', valid: false})
  await runCli(['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x1000'], {state})
  const table = await runCli(['dump'], {state, env: {TERM: 'xterm-256color', NO_COLOR: undefined}})
  t.equal(table.code, 0)
  t.notMatch(table.stdout, /\u001b\[/, 'no ANSI escapes into a pipe, even with TERM=xterm')
  t.match(table.stdout, /│ 1 +│ 0x1000 +│ 0x1000 +│ 0x1000 +│ rw +│ update │ yes +│/)
  t.match(table.stdout, /1 of 1024 slots written/)
  const one = await runCli(['dump', '--slot', '5'], {state})
  t.match(one.stdout, /│ 5 +│ 0x0 +│ 0x0 +│ 0x0 +│ none +│ none +│ no \(0x1\) │/)
})

t.test('reset picks the model', async (t) => {
  const state = stateIn(t)
  await runCli(['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x1000'], {state})
  t.same(json(await runCli(['reset', '--model', 'fixed', '--json'], {state})), {model: 'fixed'})
  const dump = json(await runCli(['dump', '--json'], {state}))
  t.equal(dump.model, 'fixed')
  t.same(dump.entries, [])
  const bad = await runCli(['reset', '--model', 'v2'], {state})
  t.equal(bad.code, 2)
  t.equal(bad.stderr, 'vhost-iotlb: --model: "v2" is not a model (rfc, fixed)\n')
})

const usage: Array<[string[], RegExp]> = [
  [['update', '--iova', '0x1000', '--size', '4k'], /update: the emulated device needs --uaddr ADDR/],
  [['update', '--size', '4k', '--uaddr', '1'], /update: missing --iova ADDR/],
  [['update', '--iova', '0x', '--size', '1', '--uaddr', '1'], /--iova: "0x" is not a number/],
  [['update', '--iova', '1', '--size', '1', '--uaddr', '1', '--perm', 'x'], /--perm: "x" is not a permission/],
  [['update', '--iova', '1', '--size', '1', '--uaddr', '0x7f00zz'], /--uaddr: "0x7f00zz" is not a number \(decimal or 0x hex, _ separators\), or auto/],
  [['set-request-entry', 'nowhere'], /ADDR: "nowhere" is not a number .*, or auto/],
  [['update', '--iova', '1', '--iova', '2', '--size', '1', '--uaddr', '1'], /--iova given more than once/],
  [['update', '--iovaa', '1'], /unknown flag --iovaa \(did you mean --iova\?\)/],
  [['update', '--json=yes', '--iova', '1', '--size', '1', '--uaddr', '1'], /--json takes no value/],
  [['translate'], /translate: missing IOVA/],
  [['translate', '1', '2'], /unexpected argument "2"/],
  [['translate', '18446744073709551616'], /IOVA: "18446744073709551616" is out of range for a u64/],
  [['dump', '--slot', '-1'], /--slot needs a value|is not a number/],
  [['dump', '-x'], /unknown flag -x/],
  [['dump', '--device', 'bogus'], /--device: "bogus" is not a device/],
  [['frobnicate'], /unknown command "frobnicate"/],
]

t.test('usage errors: exit 2, a clear message, no state change, JSON error with --json', async (t) => {
  const state = stateIn(t)
  await runCli(['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x1000'], {state})
  const before = fs.readFileSync(state)
  for (const [args, message] of usage) {
    const run = await runCli(args, {state})
    t.equal(run.code, 2, args.join(' '))
    t.match(run.stderr, message)
    noStack(t, run)
    t.same(fs.readFileSync(state), before, `${args.join(' ')}: state unchanged`)
  }

  const asJson = await runCli(['update', '--iova', 'zz', '--size', '1', '--uaddr', '1', '--json'], {state})
  t.equal(asJson.code, 2)
  t.same(json(asJson), {error: {code: 'USAGE', message: '--iova: "zz" is not a number (decimal or 0x hex, _ separators)'}})
})

t.test('--device emu:PATH and VHOST_IOTLB_DEVICE pick the state file', async (t) => {
  const dir = t.testdir()
  await runCli(['set-fd', '11', '--device', `emu:${dir}/a.json`], {state: `${dir}/default.json`})
  await runCli(['set-fd', '12'], {state: `${dir}/default.json`, env: {VHOST_IOTLB_DEVICE: `emu:${dir}/b.json`}})
  t.equal(JSON.parse(fs.readFileSync(`${dir}/a.json`, 'utf8')).iotlb_fd, 11)
  t.equal(JSON.parse(fs.readFileSync(`${dir}/b.json`, 'utf8')).iotlb_fd, 12)
  t.notOk(fs.existsSync(`${dir}/default.json`))
  const xdg = await runCli(['set-fd', '13'], {env: {XDG_STATE_HOME: dir, VHOST_IOTLB_STATE: undefined}})
  t.equal(xdg.code, 0)
  t.equal(JSON.parse(fs.readFileSync(`${dir}/vhost-iotlb/emu.json`, 'utf8')).iotlb_fd, 13)
})

t.test('a corrupt state file: exit 1, named error, file untouched', async (t) => {
  const state = stateIn(t)
  fs.writeFileSync(state, '{"format": "something-else"}')
  const run = await runCli(['update', '--iova', '0', '--size', '1', '--uaddr', '1', '--json'], {state})
  t.equal(run.code, 1)
  t.equal(json(run).error.code, 'EBADSTATE')
  t.match(json(run).error.message, /not a vhost-iotlb emulated-device file/)
  t.equal(fs.readFileSync(state, 'utf8'), '{"format": "something-else"}')
})

t.test('concurrent processes lose no update', async (t) => {
  const state = stateIn(t)
  const writers = Array.from({length: 12}, (_, i) =>
    runCli(['update', '--iova', `0x${(i + 1).toString(16)}000`, '--size', '4k', '--uaddr', `${i}`], {state}),
  )
  const runs = await Promise.all(writers)
  t.same(runs.map((r) => r.code), Array.from({length: 12}, () => 0))
  const dump = json(await runCli(['dump', '--json'], {state}))
  t.same(dump.entries.map((e: any) => e.slot), Array.from({length: 12}, (_, i) => i + 1))
})

t.test('every command has --help with examples', async (t) => {
  for (const id of ['set-fd', 'set-request-entry', 'update', 'invalidate', 'translate', 'dump', 'reset']) {
    const help = await runCli([id, '--help'])
    t.equal(help.code, 0, id)
    t.match(help.stdout, /EXAMPLES\n {2}\$ vhost-iotlb /, `${id} shows examples`)
    t.match(help.stdout, /--json/, `${id} documents --json`)
  }
})
