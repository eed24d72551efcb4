// Fuzzing the command line. Generated argv vectors (random tokens, boundary numbers, hostile
// strings, wrong flag combinations; see fixtures/robustness/gen.ts) run in-process through
// dispatch() and render(), the path every entry point shares, for volume; a few hundred more
// run through the real binary. Every input must end with exit 0 or 2, or 1 or 3 where the
// device says so; no output may hold a stack trace; a rejected input (exit 1 or 2) must leave
// the state files byte-identical and no lock behind.
//
// The seed is printed; replay a failure with VHOST_IOTLB_FUZZ_SEED=<seed> (and
// VHOST_IOTLB_FUZZ_COUNT to change the number of in-process vectors, 10,000 by default).
import * as fs from 'node:fs'

import t from 'tap'

import {dispatch} from '../../src/cli/dispatch.js'
import {render} from '../../src/cli/render.js'
import {reportError} from '../../src/cli/outcome.js'
import {loadCommand} from '../../src/cli/registry.js'
import {Session} from '../../src/cli/session.js'
import type {CommandSpec} from '../../src/cli/spec.js'
import {parseStateText} from '../../src/device/emulated/state.js'
import {FUZZ_COMMANDS, Random, type Safe, argvVector, deviceSpecs} from '../fixtures/robustness/gen.js'
import {STACK_LINE, pool, run, sameBytes, seedFrom, snapshot} from '../fixtures/robustness/proc.js'

// Generated device specs include relative paths (emu:\\0 and the like): keep what they create
// out of the checkout by working in this test's own directory.
process.chdir(t.testdir())

const SEED = seedFrom()
const COUNT = Number(process.env.VHOST_IOTLB_FUZZ_COUNT || 10_000)
const SPAWNED = Number(process.env.VHOST_IOTLB_FUZZ_SPAWNED || 200)

const specs = new Map<string, CommandSpec<any, any>>()
for (const id of FUZZ_COMMANDS) specs.set(id, await loadCommand(id))

interface Observed {
  argv: string[]
  env: NodeJS.ProcessEnv
  exit: number
  stdout: string
  stderr: string
  /** What the dispatcher said, in-process only. */
  errorCode?: string
  status?: unknown
  json: boolean
}

/** The checks every run must pass, whichever way it ran. Returns what is wrong, if anything. */
function judge(o: Observed, before: Array<Buffer | null>, after: Array<Buffer | null>, lockLeft: boolean): string[] {
  const problems: string[] = []
  if (![0, 1, 2, 3].includes(o.exit)) problems.push(`exit ${o.exit}`)
  if (o.errorCode === 'INTERNAL') problems.push('internal error')
  if (o.errorCode !== undefined || o.status !== undefined) {
    // In-process we know why: each exit code must have its reason.
    if (o.exit === 0 && o.errorCode !== undefined) problems.push(`exit 0 with error ${o.errorCode}`)
    if (o.exit === 2 && o.errorCode !== 'USAGE') problems.push(`exit 2 with ${o.errorCode ?? 'no error'}`)
    if (o.exit === 1 && (o.errorCode === 'USAGE' || (o.errorCode === undefined && o.status !== 'fault'))) {
      problems.push(`exit 1 with ${o.errorCode ?? `status ${String(o.status)}`}`)
    }

    if (o.exit === 3 && o.status !== 'miss') problems.push(`exit 3 with status ${String(o.status)}`)
  }

  if (STACK_LINE.test(o.stdout) || STACK_LINE.test(o.stderr)) problems.push('stack trace in the output')
  if (o.stdout.includes('[object Object]') || o.stderr.includes('[object Object]')) problems.push('[object Object] in the output')
  if (o.errorCode !== undefined && !/^vhost-iotlb: /m.test(o.stderr)) problems.push('an error without its message on stderr')
  if (o.json && o.stdout !== '') {
    try {
      JSON.parse(o.stdout)
    } catch {
      problems.push('--json output is not one JSON document')
    }
  }

  if (o.exit === 1 || o.exit === 2) {
    if (!before.every((bytes, i) => sameBytes(bytes, after[i]!))) problems.push('a rejected input changed a state file')
  }

  if (lockLeft) problems.push('a lock file was left behind')
  return problems
}

function describe(o: Observed): string {
  const env = o.env.VHOST_IOTLB_DEVICE === undefined ? '' : `VHOST_IOTLB_DEVICE=${JSON.stringify(o.env.VHOST_IOTLB_DEVICE)} `
  return `${env}${JSON.stringify(o.argv)} -> exit ${o.exit}\nstdout: ${o.stdout.slice(0, 400)}\nstderr: ${o.stderr.slice(0, 400)}`
}

/** A device spec in the environment now and then; otherwise the default. */
function environment(r: Random, safe: Safe): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {VHOST_IOTLB_STATE: safe.state, HOME: safe.dir, XDG_STATE_HOME: safe.dir}
  if (r.chance(0.05)) env.VHOST_IOTLB_DEVICE = r.pick(deviceSpecs(safe))
  return env
}

/**
 * A text table of all 1024 slots takes cli-table3 about half a second to draw and tells the fuzz
 * nothing new after the first; most such vectors ask for JSON instead, to keep the run bounded.
 */
function boundTables(r: Random, argv: string[]): string[] {
  const all = argv[0] === 'dump' && argv.some((token) => token === '--all' || token === '-a')
  return all && !argv.includes('--json') && r.chance(0.9) ? [...argv, '--json'] : argv
}

/** The generator must never hand out a path outside the test directory (see gen.ts). */
function assertSafe(argv: string[], safe: Safe): void {
  for (const token of argv) {
    const path = token.replace(/^(?:--device=|-d=?|emu:|unix:)+/, '')
    if (path.includes('/') && !path.startsWith(safe.dir)) throw new Error(`generator produced a path outside the test dir: ${token}`)
  }
}

t.test(`in-process: ${COUNT} argv vectors through dispatch and render`, async (t) => {
  t.comment(`fuzz seed ${SEED} (replay: VHOST_IOTLB_FUZZ_SEED=${SEED})`)
  const dir = t.testdir()
  const safe: Safe = {state: `${dir}/emu.json`, dir}
  const files = [safe.state, `${dir}/other.json`]
  const r = new Random(SEED)
  const failures: string[] = []
  const exits = new Map<number, number>()
  for (let i = 0; i < COUNT && failures.length < 10; i++) {
    const argv = boundTables(r, argvVector(r, specs, safe))
    assertSafe(argv, safe)
    const env = environment(r, safe)
    const before = files.map(snapshot)
    let stdout = ''
    let stderr = ''
    const io = {out: (text: string) => void (stdout += text), err: (text: string) => void (stderr += text), color: false}
    // What runOnce does, with the session's environment and streams in our hands.
    const session = new Session({io, env})
    const outcome = await dispatch(argv, session)
    await render(outcome, io)
    let exit = outcome.exitCode
    try {
      await session.close()
    } catch (error) {
      const report = reportError(error, env)
      io.err(`vhost-iotlb: ${report.message}\n`)
      if (exit === 0) exit = report.exitCode
    }

    const after = files.map(snapshot)
    const json = outcome.result?.json as {status?: unknown} | undefined
    const observed: Observed = {
      argv,
      env,
      exit,
      stdout,
      stderr,
      errorCode: outcome.error?.code,
      status: json && typeof json === 'object' ? json.status : undefined,
      json: outcome.json,
    }
    exits.set(exit, (exits.get(exit) ?? 0) + 1)
    const problems = judge(observed, before, after, files.some((file) => fs.existsSync(`${file}.lock`)))
    // Whatever happened, what is on disk must still load.
    if (i % 25 === 0 || exit !== 0) {
      for (const [k, bytes] of after.entries()) {
        if (bytes === null) continue
        try {
          parseStateText(bytes.toString('utf8'))
        } catch (error) {
          problems.push(`${files[k]} no longer loads: ${(error as Error).message}`)
        }
      }
    }

    if (problems.length > 0) failures.push(`vector ${i} (seed ${SEED}): ${problems.join('; ')}\n${describe(observed)}`)
  }

  t.comment(`exit codes: ${[...exits].sort().map(([code, n]) => `${code}: ${n}`).join(', ')}`)
  t.same(failures, [], 'every vector ends as the contract says')
  // A fuzz run that never succeeds or never reaches the device tests only the parser.
  t.ok((exits.get(0) ?? 0) > COUNT / 20, 'some vectors succeed')
  t.ok((exits.get(1) ?? 0) > 0 && (exits.get(2) ?? 0) > COUNT / 4, 'device refusals and usage errors both occur')
  t.same(
    fs.readdirSync(dir).filter((name) => !/^(?:emu|other)\.json$/.test(name)),
    [],
    'no temporary or lock files left in the state directory',
  )
})

t.test(`the binary: ${SPAWNED} argv vectors`, async (t) => {
  const seed = (SEED ^ 0x5bd1e995) >>> 0
  t.comment(`fuzz seed ${SEED} (spawned vectors use ${seed})`)
  const dir = t.testdir()
  const r = new Random(seed)
  const lanes = 4
  const vectors: Array<{argv: string[]; env: NodeJS.ProcessEnv; lane: number}> = []
  for (let i = 0; i < SPAWNED; i++) {
    const lane = i % lanes
    const safe: Safe = {state: `${dir}/lane${lane}/emu.json`, dir: `${dir}/lane${lane}`}
    // argv and the environment of a real process cannot hold NUL.
    const argv = boundTables(r, argvVector(r, specs, safe)).map((token) => token.replaceAll('\0', '\\0'))
    assertSafe(argv, safe)
    const env = environment(r, safe)
    if (env.VHOST_IOTLB_DEVICE?.includes('\0')) delete env.VHOST_IOTLB_DEVICE
    vectors.push({argv, env, lane})
  }

  for (let lane = 0; lane < lanes; lane++) fs.mkdirSync(`${dir}/lane${lane}`)
  const failures: string[] = []
  // One lane per state directory, so a lane's before and after are its own.
  await pool([0, 1, 2, 3], lanes, async (lane) => {
    const files = [`${dir}/lane${lane}/emu.json`, `${dir}/lane${lane}/other.json`]
    for (const [i, {argv, env}] of vectors.entries()) {
      if (vectors[i]!.lane !== lane) continue
      const before = files.map(snapshot)
      const ran = await run(argv, {env, timeoutMs: 20_000})
      const after = files.map(snapshot)
      const known = (FUZZ_COMMANDS as readonly string[]).includes(argv[0] ?? '')
      const observed: Observed = {argv, env, exit: ran.code ?? -1, stdout: ran.stdout, stderr: ran.stderr, json: known && argv.includes('--json')}
      const problems = judge(observed, before, after, files.some((file) => fs.existsSync(`${file}.lock`)))
      if (ran.signal) problems.push(`killed by ${ran.signal} (hung?)`)
      if (problems.length > 0) failures.push(`spawned vector ${i} (seed ${SEED}): ${problems.join('; ')}\n${describe(observed)}`)
    }
  })
  t.same(failures.slice(0, 10), [], 'every spawned vector ends as the contract says')
})
