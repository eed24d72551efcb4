// SIGINT during batch and listen: the run must end promptly with exit 130 and a clear message,
// and the state file must hold exactly what the completed lines (or answered misses) did.
//
// listen here runs on the emulated device, whose misses come from `translate` in another
// process; SIGINT during listen on a real /dev/vhost-* device needs a kernel and belongs to
// the kernel suite (test/kernel).
import type {ChildProcess} from 'node:child_process'
import * as fs from 'node:fs'

import t from 'tap'

import {parseStateText} from '../../src/device/emulated/state.js'
import {Random} from '../fixtures/robustness/gen.js'
import {BIN, childEnv, run, seedFrom, spawnNode} from '../fixtures/robustness/proc.js'

const SEED = seedFrom()
const r = new Random(SEED)
const BASE = 0x7f00_0000_0000n
/** Generous: the machines are loaded; a stop that waits for input or the script's end takes seconds. */
const PROMPT_MS = 3000

/** Line i (1-based) of the script: an update of k = i - 1, or a comment every 50th line. */
function scriptLine(i: number): string {
  if (i % 50 === 0) return `# line ${i}`
  const k = BigInt(i - 1)
  return `update --iova 0x${((k % 1024n) << 12n).toString(16)} --size 4k --uaddr 0x${(BASE + (k << 12n)).toString(16)}`
}

/** The slots after lines 1..last: each holds the last update of k that landed in it. */
function expectedSlots(last: number): Map<number, bigint> {
  const slots = new Map<number, bigint>()
  for (let i = 1; i <= last; i++) if (i % 50 !== 0) slots.set((i - 1) % 1024, BASE + (BigInt(i - 1) << 12n))
  return slots
}

function slotsIn(path: string): Map<number, bigint> {
  const state = parseStateText(fs.readFileSync(path, 'utf8'))
  const slots = new Map<number, bigint>()
  for (const [slot, entry] of state.iotlb.entries()) if (entry.type !== 0) slots.set(slot, entry.userspace_addr)
  return slots
}

interface Watched {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Resolves on exit with the code and how long after `interrupt()` it came. */
  closed: Promise<{code: number | null; signal: NodeJS.Signals | null; afterMs: number}>
  /** Resolves once stdout has `n` bytes or more. */
  output(n: number): Promise<void>
  interrupt(): void
}

function watch(args: string[], env: NodeJS.ProcessEnv): Watched {
  const child = spawnNode([BIN, ...args], {env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  let sentAt = 0
  const waiters: Array<{n: number; resolve: () => void}> = []
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
    for (const w of waiters.splice(0)) if (stdout.length >= w.n) w.resolve()
    else waiters.push(w)
  })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  child.stdin!.on('error', () => {})
  const closed = new Promise<{code: number | null; signal: NodeJS.Signals | null; afterMs: number}>((resolve) =>
    child.on('close', (code, signal) => resolve({code, signal, afterMs: sentAt === 0 ? -1 : Date.now() - sentAt})),
  )
  // Never leave a child behind a failed assertion.
  const guard = setTimeout(() => child.kill('SIGKILL'), 120_000)
  void closed.then(() => clearTimeout(guard))
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    closed,
    output: (n) => (stdout.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({n, resolve}))),
    interrupt() {
      sentAt = Date.now()
      child.kill('SIGINT')
    },
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('SIGINT during batch FILE: exit 130 promptly, state saved up to the last completed line', async (t) => {
  t.comment(`seed ${SEED} (replay: VHOST_IOTLB_FUZZ_SEED=${SEED})`)
  const dir = t.testdir()
  const script = `${dir}/script.txt`
  const LINES = 200_000
  fs.writeFileSync(script, `${Array.from({length: LINES}, (_, i) => scriptLine(i + 1)).join('\n')}\n`)
  for (const [round, json] of [true, true, true, false].entries()) {
    const state = `${dir}/emu-${round}.json`
    const batch = watch(['batch', script, ...(json ? ['--json'] : [])], {VHOST_IOTLB_STATE: state})
    // Output comes in 64 KiB blocks: the first one means lines are running.
    await batch.output(1)
    await sleep(r.int(600))
    batch.interrupt()
    const {code, afterMs} = await batch.closed
    const label = `round ${round}${json ? ' (--json)' : ' (text)'}`
    const stopped = /^vhost-iotlb: batch: interrupted after (.+):(\d+); what ran is saved$/m.exec(batch.stderr())
    if (code === 0 && !stopped) {
      t.comment(`${label}: the batch finished before the signal; nothing to check`)
      continue
    }

    t.equal(code, 130, `${label}: exit 130`)
    t.ok(afterMs >= 0 && afterMs < PROMPT_MS, `${label}: exited ${afterMs} ms after SIGINT`)
    t.ok(stopped && stopped[1] === script, `${label}: says where it stopped: ${batch.stderr().trim()}`)
    const last = Number(stopped?.[2] ?? -1)
    t.ok(last > 0 && last < LINES, `${label}: stopped mid-script, after line ${last}`)
    if (json) {
      const records = batch
        .stdout()
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as {line: number; exit: number})
      t.equal(records.at(-1)?.line, last % 50 === 0 ? last - 1 : last, `${label}: the output ends with the last completed line`)
      t.ok(records.every((record) => record.exit === 0), `${label}: every line printed succeeded`)
    }

    t.same(slotsIn(state), expectedSlots(last), `${label}: the state holds exactly lines 1..${last}`)
  }
})

t.test('SIGINT while batch - waits for input: exit 130 at once, the lines so far saved', async (t) => {
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  const batch = watch(['batch', '-', '--json'], {VHOST_IOTLB_STATE: state})
  batch.child.stdin!.write(`${scriptLine(1)}\n${scriptLine(2)}\n`)
  // The pipe stays open: the batch is waiting for a third line when the signal comes.
  await sleep(1500)
  batch.interrupt()
  const {code, afterMs} = await batch.closed
  batch.child.stdin!.end()
  t.equal(code, 130, 'exit 130')
  t.ok(afterMs >= 0 && afterMs < PROMPT_MS, `exited ${afterMs} ms after SIGINT, without more input`)
  t.match(batch.stderr(), /^vhost-iotlb: batch: interrupted after <stdin>:2; what ran is saved$/m)
  t.same(slotsIn(state), expectedSlots(2), 'both lines saved')
})

t.test('SIGINT during listen on the emulated device: exit 130 promptly, answers saved', async (t) => {
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  const env = {VHOST_IOTLB_STATE: state}
  const map = `${dir}/map.txt`
  fs.writeFileSync(map, '0x10000 64k rw 0x7f0000010000\n')
  for (const argv of [['set-fd', '5'], ['set-request-entry', '0x7f0000000000']]) t.equal((await run(argv, {env})).code, 0)
  const listen = watch(['listen', '--map', map, '--json'], env)
  // Give the listener time to start, then post a miss it answers.
  await sleep(1000)
  const miss = await run(['translate', '0x12000', '--json'], {env})
  t.equal(miss.code, 3, 'translate posts a miss')
  await Promise.race([listen.output(1), sleep(10_000)])
  t.match(listen.stdout(), /"iova":\s*"0x12000"/, 'listen saw the miss')
  listen.interrupt()
  const {code, afterMs} = await listen.closed
  t.equal(code, 130, `exit 130: ${listen.stderr()}`)
  t.ok(afterMs >= 0 && afterMs < PROMPT_MS, `exited ${afterMs} ms after SIGINT`)
  const dump = JSON.parse((await run(['dump', '--json'], {env})).stdout)
  t.match(dump.entries, [{slot: 0x12, iova: '0x12000', userspace_addr: '0x7f0000012000', valid: true}], 'the answer is saved')
  t.equal(dump.waiting, false, 'the miss was completed')
})
