// kill -9 writers at random moments, 50 times: the state file must always load and hold either
// the state before the interrupted update or the state after it, never a mix or a rollback,
// and the next command must not be blocked by what the dead writer left (its lock).
//
// Half the kills hit a process updating in a loop (so most land mid-update: lock, load, write,
// fsync, rename); the other half hit the real binary at a random point of its whole run.
import type {ChildProcess} from 'node:child_process'
import * as fs from 'node:fs'
import {fileURLToPath} from 'node:url'

import t from 'tap'

import type {IotlbEntry} from '../../src/device/entry.js'
import {parseStateText} from '../../src/device/emulated/state.js'
import {Random} from '../fixtures/robustness/gen.js'
import {childEnv, run, seedFrom, spawnNode} from '../fixtures/robustness/proc.js'

const WRITER = fileURLToPath(new URL('../fixtures/robustness/writer.mjs', import.meta.url))
const BASE = 0x7f00_0000_0000n
const SEED = seedFrom()
const r = new Random(SEED)

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('close', () => resolve())))
}

/** The sequence number k of each written slot (the writer maps k to uaddr BASE + k pages). */
function sequence(text: string): Map<number, bigint> {
  const state = parseStateText(text)
  const ks = new Map<number, bigint>()
  for (const [slot, entry] of state.iotlb.entries()) if (entry.type !== 0) ks.set(slot, (entry.userspace_addr - BASE) >> 12n)
  return ks
}

t.test('kill -9 a looping writer 25 times', async (t) => {
  t.comment(`seed ${SEED} (replay: VHOST_IOTLB_FUZZ_SEED=${SEED})`)
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  let last = -1n
  const problems: string[] = []
  for (let round = 0; round < 25; round++) {
    const child = spawnNode([WRITER, 'sequence', String(last + 1n)], {
      env: childEnv({VHOST_IOTLB_STATE: state}),
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`round ${round}: the writer never got ready: ${stderr}`)), 60_000)
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk
        if (stderr.includes('ready\n')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    // Let it run a little (it may first have to break the lock the last one died holding).
    await sleep(5 + r.int(80))
    child.kill('SIGKILL')
    await exited(child)
    if (stderr.replace('ready\n', '') !== '') problems.push(`round ${round}: the writer failed: ${stderr}`)

    let ks: Map<number, bigint>
    try {
      ks = fs.existsSync(state) ? sequence(fs.readFileSync(state, 'utf8')) : new Map()
    } catch (error) {
      problems.push(`round ${round}: the state file does not load: ${(error as Error).message}`)
      break
    }

    // Consistent with "updates 0..K done, nothing after": every slot holds the latest k for it.
    const k = [...ks.values()].reduce((max, value) => (value > max ? value : max), -1n)
    if (k < last) problems.push(`round ${round}: went back from update ${last} to ${k}`)
    for (let j = k; j >= 0n && j > k - 1024n; j--) {
      if (ks.get(Number(j % 1024n)) !== j) {
        problems.push(`round ${round}: slot ${j % 1024n} holds ${ks.get(Number(j % 1024n))}, not update ${j} (last done: ${k})`)
        break
      }
    }

    last = k
  }

  t.same(problems, [], 'every kill left the old state or the new one')
  t.ok(last > 0n, `the writers made progress (${last + 1n} updates)`)
  const dump = await run(['dump', '--json'], {env: {VHOST_IOTLB_STATE: state}})
  t.equal(dump.code, 0, 'the binary reads the file afterwards')
  const after = await run(['set-fd', '9'], {env: {VHOST_IOTLB_STATE: state}, timeoutMs: 15_000})
  t.equal(after.code, 0, `and can write it (any stale lock is broken): ${after.stderr}`)
  t.comment(`left behind by the kills: ${fs.readdirSync(dir).filter((name) => name !== 'emu.json').length} temporary file(s)`)
})

function entryOf(slot: number, round: number): {argv: string[]; iova: bigint; uaddr: bigint} {
  const iova = BigInt(slot) << 12n
  const uaddr = BASE + (BigInt(round + 1) << 24n) + iova
  return {argv: ['update', '--iova', `0x${iova.toString(16)}`, '--size', '4k', '--uaddr', `0x${uaddr.toString(16)}`], iova, uaddr}
}

function sameEntry(a: IotlbEntry, b: IotlbEntry): boolean {
  return JSON.stringify(a, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) === JSON.stringify(b, (_, v) => (typeof v === 'bigint' ? v.toString() : v))
}

t.test('kill -9 the binary at a random point of an update, 25 times', async (t) => {
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  const env = {VHOST_IOTLB_STATE: state}
  t.equal((await run(['set-fd', '5'], {env})).code, 0)
  // How long an update takes here, to spread the kills over the whole run.
  const probe = await run(entryOf(1000, 1000).argv, {env})
  t.equal(probe.code, 0)
  const span = Math.max(probe.ms, 50)
  const problems: string[] = []
  let completed = 0
  for (let round = 0; round < 25; round++) {
    const before = fs.readFileSync(state, 'utf8')
    const old = parseStateText(before)
    const {argv, iova, uaddr} = entryOf(round, round)
    // Most of a run is start-up; lean the kills towards its end, where the state file is written.
    const killAt = Math.round(span * (0.3 + 0.9 * r.int(1000) / 1000))
    const ran = await run(argv, {
      env,
      timeoutMs: 30_000,
      started: (child) => void setTimeout(() => child.kill('SIGKILL'), killAt),
    })
    let now
    try {
      now = parseStateText(fs.readFileSync(state, 'utf8'))
    } catch (error) {
      problems.push(`round ${round} (killed at ${killAt} ms): the state file does not load: ${(error as Error).message}`)
      break
    }

    const slot = now.iotlb[round]!
    const updated = slot.iova === iova && slot.userspace_addr === uaddr
    if (updated) completed++
    else if (!sameEntry(slot, old.iotlb[round]!)) problems.push(`round ${round}: slot ${round} holds neither the old entry nor the new one`)
    const others = now.iotlb.every((entry, i) => i === round || sameEntry(entry, old.iotlb[i]!))
    if (!others || now.iotlb_fd !== old.iotlb_fd || now.model !== old.model) problems.push(`round ${round}: something besides slot ${round} changed`)
    if (ran.code === 0 && !updated) problems.push(`round ${round}: exit 0 but the update is missing`)
  }

  t.same(problems, [], 'every kill left the old state or the new one')
  t.comment(`${completed} of 25 updates completed before the kill (kills between ${Math.round(span * 0.3)} and ${Math.round(span * 1.2)} ms)`)
  const after = await run(['set-fd', '7', '--json'], {env, timeoutMs: 15_000})
  t.equal(after.code, 0, `the next command runs (any stale lock is broken): ${after.stderr}`)
})
