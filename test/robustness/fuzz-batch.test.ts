// Fuzzing batch lines. A seeded script of generated lines (argv vectors quoted as a shell would,
// and lines only a script can hold: broken quoting, comments, CR, NUL, BOM, nested batch, huge
// lines) runs twice:
//
// - line by line through runLine() on a session bound to the device as batch binds it, one
//   lock-load-save per line: each line must end as the contract says (exit 0 or 2, 1 or 3 with
//   the device's reason), and a rejected line must leave the state file byte-identical;
// - as one `batch FILE --force --json` (held device, saved at the end), in-process.
//
// The two must agree line for line (the NDJSON records) and end with the same state file:
// holding the device changes when the state is saved, never what it is.
//
// Replay with VHOST_IOTLB_FUZZ_SEED=<seed>; VHOST_IOTLB_FUZZ_LINES sets the number of lines.
import * as fs from 'node:fs'

import t from 'tap'

import {runLine} from '../../src/cli/batch.js'
import {dispatch} from '../../src/cli/dispatch.js'
import {loadCommand} from '../../src/cli/registry.js'
import {Session} from '../../src/cli/session.js'
import type {CommandSpec} from '../../src/cli/spec.js'
import {freshState} from '../../src/device/emulated/model.js'
import {parseStateText, serializeState} from '../../src/device/emulated/state.js'
import {FUZZ_COMMANDS, Random, type Safe, batchLine} from '../fixtures/robustness/gen.js'
import {STACK_LINE, sameBytes, seedFrom, snapshot} from '../fixtures/robustness/proc.js'

// Generated device specs include relative paths (emu:\\0 and the like): keep what they create
// out of the checkout by working in this test's own directory.
process.chdir(t.testdir())

const SEED = seedFrom()
const LINES = Number(process.env.VHOST_IOTLB_FUZZ_LINES || 10_000)

const specs = new Map<string, CommandSpec<any, any>>()
for (const id of FUZZ_COMMANDS) specs.set(id, await loadCommand(id))

interface LineEnd {
  line: number
  exit: number
  code?: string
}

t.test(`${LINES} batch lines: line by line, then as one batch`, async (t) => {
  t.comment(`fuzz seed ${SEED} (replay: VHOST_IOTLB_FUZZ_SEED=${SEED})`)
  const dir = t.testdir()
  const r = new Random(SEED)
  // The lines name the state files of the line-by-line run; the batch run is bound to its own
  // file, so lines that name another device are refused in both runs alike.
  const safe: Safe = {state: `${dir}/lines.json`, dir}
  const generated: string[] = []
  for (let i = 0; i < LINES; i++) {
    // A BOM counts only at the start of the file, and the batch reader drops it there.
    const line = batchLine(r, specs, safe)
    generated.push(i === 0 ? line.replace(/^\uFEFF/, '') : line)
  }

  const text = `${generated.join('\n')}\n`
  const script = `${dir}/script.txt`
  fs.writeFileSync(script, text)
  // What the batch reader sees: quoted newlines in tokens split lines too.
  const lines = text.slice(0, -1).split('\n')

  // 1. Line by line.
  const failures: string[] = []
  const ends: LineEnd[] = []
  const files = [safe.state, `${dir}/other.json`]
  const env = {VHOST_IOTLB_STATE: safe.state, HOME: dir, XDG_STATE_HOME: dir}
  let stdout = ''
  let stderr = ''
  const io = {out: (s: string) => void (stdout += s), err: (s: string) => void (stderr += s), color: false}
  for (const [index, line] of lines.entries()) {
    const before = files.map(snapshot)
    const session = new Session({io, env, device: 'emu'})
    stdout = ''
    stderr = ''
    const outcome = await runLine(line, session)
    await session.close()
    const after = files.map(snapshot)
    if (outcome === undefined || outcome === 'exit') {
      if (outcome === 'exit') failures.push(`line ${index + 1}: exit without a builtin`)
      if (!before.every((bytes, i) => sameBytes(bytes, after[i]!))) failures.push(`line ${index + 1}: a blank line or comment changed state`)
      continue
    }

    const code = outcome.error?.code
    const status = (outcome.result?.json as {status?: string} | null | undefined)?.status
    const problems: string[] = []
    if (code === 'INTERNAL') problems.push('internal error')
    if (outcome.exitCode === 0 && code !== undefined) problems.push(`exit 0 with ${code}`)
    if (outcome.exitCode === 2 && code !== 'USAGE') problems.push(`exit 2 with ${code}`)
    if (outcome.exitCode === 1 && (code === 'USAGE' || (code === undefined && status !== 'fault'))) problems.push(`exit 1 with ${code ?? status}`)
    if (outcome.exitCode === 3 && status !== 'miss') problems.push(`exit 3 with ${status}`)
    if (![0, 1, 2, 3].includes(outcome.exitCode)) problems.push(`exit ${outcome.exitCode}`)
    if (outcome.error?.stack || STACK_LINE.test(outcome.error?.message ?? '')) problems.push('a stack trace')
    if ((outcome.exitCode === 1 || outcome.exitCode === 2) && !before.every((bytes, i) => sameBytes(bytes, after[i]!))) {
      problems.push('a rejected line changed a state file')
    }

    if (problems.length > 0) failures.push(`line ${index + 1} (seed ${SEED}): ${problems.join('; ')}: ${JSON.stringify(line.slice(0, 300))}`)
    ends.push({line: index + 1, exit: outcome.exitCode, ...(code ? {code} : {})})
  }

  t.same(failures.slice(0, 10), [], 'every line ends as the contract says')
  const tally = new Map<number, number>()
  for (const end of ends) tally.set(end.exit, (tally.get(end.exit) ?? 0) + 1)
  t.comment(`line exits: ${[...tally].sort().map(([code, n]) => `${code}: ${n}`).join(', ')}`)
  t.ok((tally.get(0) ?? 0) > LINES / 20, 'some lines succeed')

  // 2. The same script as one batch, held device, in-process through the dispatcher.
  const batchState = `${dir}/batch.json`
  let batchOut = ''
  let batchErr = ''
  const batchIo = {out: (s: string) => void (batchOut += s), err: (s: string) => void (batchErr += s), color: false}
  const session = new Session({io: batchIo, env: {...env, VHOST_IOTLB_STATE: batchState}})
  const outcome = await dispatch(['batch', script, '--force', '--json'], session)
  await session.close()
  t.equal(outcome.error, undefined, 'the batch itself ran')
  t.equal(outcome.exitCode, ends.some((end) => end.exit !== 0 && end.exit !== 3) ? 1 : 0, 'batch --force exits 1 when a line failed')
  t.notMatch(batchErr, STACK_LINE, 'no stack trace on stderr')
  const records = batchOut
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as {line: number; exit: number; error?: {code: string}})
  const batchEnds: LineEnd[] = records.map((record) => ({line: record.line, exit: record.exit, ...(record.error ? {code: record.error.code} : {})}))
  // Compare in slices so that a difference is shown where it starts, not as a 10,000-line diff.
  const firstDiff = batchEnds.findIndex((end, i) => JSON.stringify(end) !== JSON.stringify(ends[i]))
  t.equal(batchEnds.length, ends.length, 'one NDJSON record per line that is not blank or a comment')
  t.equal(firstDiff, -1, `each line ends the same way in both runs${firstDiff === -1 ? '' : `; first difference: batch ${JSON.stringify(batchEnds[firstDiff])} vs line by line ${JSON.stringify(ends[firstDiff])}: ${JSON.stringify(lines[(ends[firstDiff]?.line ?? 1) - 1]?.slice(0, 200))}`}`)
  // No file is a fresh device: a held device ending fresh need not create one.
  const normal = (bytes: Buffer | null) => serializeState(bytes === null ? freshState('rfc') : parseStateText(bytes.toString('utf8')))
  const lineState = normal(snapshot(safe.state))
  const heldState = normal(snapshot(batchState))
  if (lineState === heldState) t.pass('both runs end with the same device state')
  else t.same(JSON.parse(heldState), JSON.parse(lineState), 'both runs end with the same device state')
})
