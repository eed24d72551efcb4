/**
 * Runs a script of commands, one per line, through the same {@link dispatch} as the command line,
 * in one {@link Session}: `vhost-iotlb batch FILE|-` and the REPL fed from a pipe both come here.
 * Lines are split as a shell would (shellwords.ts); `#` comments and blank lines are skipped but
 * still counted, so `FILE:LINE` points at the right line.
 *
 * A translate that misses is a result, not a failure: the request stays pending as it would in
 * the kernel. The first failure stops the script (its exit code is the script's) unless `force`,
 * which goes on and ends with 1 if anything failed.
 *
 * Throughput matters (traces of a million lines): input is streamed in 64 KiB chunks and split
 * by hand, stdout is written in 64 KiB blocks, and each line is parsed exactly once.
 */
import * as fs from 'node:fs'

import {IotlbError, UsageError} from '../device/errors.js'
import {stringify} from '../format/json.js'
import {type Outcome, dispatch} from './dispatch.js'
import {EXIT, reportError} from './outcome.js'
import {render} from './render.js'
import {type Io, Session} from './session.js'
import {splitWords} from './shellwords.js'
import type {Context, Result} from './spec.js'

/** How each line's outcome is printed. */
export type OutputMode =
  /** NDJSON, one object per line (batch --json). */
  | 'ndjson'
  /** Text output whatever the line says (batch without --json). */
  | 'text'
  /** As the one-shot command would print it, the line's own --json included (piped REPL). */
  | 'oneshot'

/** Commands that run scripts themselves, or serve until a signal, and cannot be a line of one. */
const NESTED = new Set(['batch', 'repl', 'hold'])

/** stdout in blocks: one write per 64 KiB instead of one per line. Errors flush it first to keep order. */
export class BufferedIo implements Io {
  private pending = ''

  constructor(
    private readonly target: Io,
    private readonly limit = 1 << 16,
  ) {}

  get color(): boolean {
    return this.target.color
  }

  out(text: string): void {
    this.pending += text
    if (this.pending.length >= this.limit) this.flush()
  }

  err(text: string): void {
    this.flush()
    this.target.err(text)
  }

  flush(): void {
    if (this.pending === '') return
    const text = this.pending
    this.pending = ''
    this.target.out(text)
  }
}

/** A line the script runner does itself instead of dispatching (the REPL's help and exit). */
export type Builtin = (argv: string[]) => Promise<'exit' | 'done' | undefined>

export interface ScriptOptions {
  /** For messages: the file name, or `<stdin>`. */
  name: string
  /** The script's text in chunks, any split. */
  input: AsyncIterable<string>
  session: Session
  io: BufferedIo
  mode: OutputMode
  force: boolean
  builtin?: Builtin
  /** Set by a signal handler: stop before the next line. */
  stop?: {requested: boolean}
}

export interface ScriptEnd {
  exitCode: number
  failures: number
  /** The last line read. */
  line: number
  interrupted: boolean
}

function errorOutcome(argv: readonly string[], error: unknown, env: NodeJS.ProcessEnv): Outcome {
  const report = reportError(error, env)
  return {command: argv[0] ?? '', argv, json: false, error: report, exitCode: report.exitCode}
}

/** A miss is a result the script goes on from; any other non-zero exit is a failure. */
export function failed(outcome: Outcome): boolean {
  return outcome.exitCode !== EXIT.ok && !(outcome.exitCode === EXIT.miss && outcome.result !== undefined)
}

/** What a failure says after `FILE:LINE: `. */
function failureMessage(outcome: Outcome): string {
  if (outcome.error) return outcome.error.message
  const json = outcome.result?.json
  if (json && typeof json === 'object' && !Array.isArray(json) && typeof json.errno === 'string') {
    return `${outcome.command}: ${json.errno} (${String(json.reason)})`
  }

  return `${outcome.command}: exit ${outcome.exitCode}`
}

function show(outcome: Outcome, line: number, options: ScriptOptions): Promise<void> | void {
  const {io, mode} = options
  const {result, error} = outcome
  if (error) {
    if (mode === 'ndjson') {
      const body = {code: error.code, message: error.message}
      io.out(`${JSON.stringify({line, command: outcome.argv, error: body, exit: outcome.exitCode})}\n`)
    } else if (mode === 'oneshot' && outcome.json) {
      io.out(`${stringify({error: {code: error.code, message: error.message}})}\n`)
    }

    return finish(outcome, line, options)
  }

  if (mode === 'oneshot') return render(outcome, io).then(() => finish(outcome, line, options))
  // listen and exercise printed their events (and summary) as they ran.
  if (result?.streamed && mode === 'text') return finish(outcome, line, options)
  if (result?.warnings) for (const w of result.warnings) io.err(`${options.name}:${line}: warning: ${w.message} [${w.code}]\n`)
  if (mode === 'ndjson') {
    io.out(`${JSON.stringify({line, command: outcome.argv, result: result?.json ?? null, exit: outcome.exitCode})}\n`)
    return finish(outcome, line, options)
  }

  const lines = result?.text() ?? []
  if (Array.isArray(lines)) return printText(lines, outcome, line, options)
  return lines.then((text) => printText(text, outcome, line, options))
}

function printText(lines: string[], outcome: Outcome, line: number, options: ScriptOptions): void {
  if (lines.length > 0) options.io.out(`${lines.join('\n')}\n`)
  finish(outcome, line, options)
}

/** The diagnostic that locates a failure. */
function finish(outcome: Outcome, line: number, options: ScriptOptions): void {
  if (failed(outcome)) options.io.err(`${options.name}:${line}: ${failureMessage(outcome)}\n`)
  if (outcome.error?.stack) options.io.err(`${outcome.error.stack}\n`)
}

/**
 * Runs one line of a script or the REPL: split, then a builtin or the dispatcher. Returns the
 * outcome, `exit`, or undefined for a blank line, a comment or a builtin that printed itself.
 */
export async function runLine(text: string, session: Session, builtin?: Builtin, json = false): Promise<Outcome | 'exit' | undefined> {
  let argv: string[]
  try {
    argv = splitWords(text)
  } catch (error) {
    return errorOutcome([], error, session.env)
  }

  if (argv.length === 0) return undefined
  if (builtin) {
    const done = await builtin(argv)
    if (done === 'exit') return 'exit'
    if (done) return undefined
  }

  if (NESTED.has(argv[0]!)) {
    return errorOutcome(argv, new UsageError(`${argv[0]}: cannot run inside batch or the REPL; run its lines here instead`), session.env)
  }

  // In NDJSON mode a command that streams (listen, exercise) must stream JSON too; the record
  // still shows the line as written.
  if (json && !argv.includes('--json')) return {...(await dispatch([argv[0]!, '--json', ...argv.slice(1)], session)), argv}
  return dispatch(argv, session)
}

/** Runs every line of the script, in order, until the end, `exit`, a failure (unless force) or a stop. */
export async function runScript(options: ScriptOptions): Promise<ScriptEnd> {
  const {stop} = options
  let lineNo = 0
  let failures = 0
  let firstFailure = EXIT.ok as number
  let carry = ''

  // Returns true when the script must stop after this line.
  const step = async (text: string): Promise<boolean> => {
    lineNo++
    const outcome = await runLine(text, options.session, options.builtin, options.mode === 'ndjson')
    if (outcome === 'exit') return true
    if (outcome === undefined) return false
    const printing = show(outcome, lineNo, options)
    if (printing) await printing
    if (failed(outcome)) {
      failures++
      if (firstFailure === EXIT.ok) firstFailure = outcome.exitCode
      if (!options.force) return true
    }

    return false
  }

  let ended = false
  try {
    outer: for await (const chunk of options.input) {
      let text = carry === '' ? chunk : carry + chunk
      if (lineNo === 0 && carry === '' && text.charCodeAt(0) === 0xfeff) text = text.slice(1)
      let start = 0
      for (let nl = text.indexOf('\n', start); nl !== -1; nl = text.indexOf('\n', start)) {
        if (stop?.requested) break outer
        const line = text.slice(start, nl)
        start = nl + 1
        if (await step(line)) {
          ended = true
          break outer
        }
      }

      carry = start === 0 ? text : text.slice(start)
    }
  } catch (error) {
    // A stop while waiting for input destroys the input (runBatch): an end, not a failure.
    if (!stop?.requested || (error as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw error
  }

  // A last line without a newline is still a line.
  if (!ended && !stop?.requested && carry !== '') await step(carry)
  options.io.flush()
  const exitCode = failures === 0 ? EXIT.ok : options.force ? EXIT.failed : firstFailure
  return {exitCode, failures, line: lineNo, interrupted: Boolean(stop?.requested)}
}

/** A file or `-` (stdin) as UTF-8 chunks. Opened now, so a missing file is reported before anything runs. */
export function openScript(file: string): {name: string; input: AsyncIterable<string>} {
  if (file === '-') {
    process.stdin.setEncoding('utf8')
    return {name: '<stdin>', input: process.stdin as AsyncIterable<string>}
  }

  let fd: number
  try {
    fd = fs.openSync(file, 'r')
    if (fs.fstatSync(fd).isDirectory()) {
      fs.closeSync(fd)
      throw Object.assign(new Error('is a directory'), {code: 'EISDIR'})
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO'
    throw new IotlbError(code, `cannot read script ${file}: ${(error as Error).message.replace(/^[A-Z]+: /, '')}`)
  }

  return {name: file, input: fs.createReadStream(file, {fd, encoding: 'utf8', highWaterMark: 1 << 16})}
}

export interface BatchInput {
  file: string
  device: string
  json: boolean
  force: boolean
}

/** The batch stdout feeds, and whether its reader went away. */
const stdoutState: {watched: boolean; broken: boolean; stop?: {requested: boolean}} = {watched: false, broken: false}

/**
 * A reader that goes away (`batch ... | head`) makes stdout fail with EPIPE, asynchronously.
 * Stop as a process killed by SIGPIPE would, but keep the state of the lines that ran. The
 * listener stays for the life of the process: the error can arrive after the batch returned.
 */
function watchStdout(stop: {requested: boolean}): void {
  stdoutState.broken = false
  stdoutState.stop = stop
  if (stdoutState.watched) return
  stdoutState.watched = true
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error
    stdoutState.broken = true
    if (stdoutState.stop) stdoutState.stop.requested = true
  })
}

/** `vhost-iotlb batch`: one held session, saved at the end whatever happened. */
export async function runBatch(input: BatchInput, context: Context): Promise<Result> {
  const script = openScript(input.file)
  const io = new BufferedIo(context.io)
  const session = new Session({io, hold: true, device: input.device, env: context.env})
  const stop = {requested: false}
  watchStdout(stop)
  // Ctrl-C: finish the line, save, leave. A second Ctrl-C does not wait (saves are atomic anyway).
  const onSigint = () => {
    if (stop.requested) process.exit(130)
    stop.requested = true
    // A script waiting for input (a pipe, a FIFO) would otherwise see the stop only when another line came.
    ;(script.input as {destroy?: () => void}).destroy?.()
  }

  process.on('SIGINT', onSigint)
  let end: ScriptEnd
  try {
    // Open (and lock) the device once, before the first line, so a busy state file fails the whole run up front.
    await session.device(input.device)
    end = await runScript({name: script.name, input: script.input, session, io, mode: input.json ? 'ndjson' : 'text', force: input.force, stop})
  } finally {
    process.off('SIGINT', onSigint)
    io.flush()
    await session.close()
  }

  let exitCode = end.exitCode
  if (stdoutState.broken) {
    exitCode = 128 + 13 // as a shell reports a process killed by SIGPIPE
  } else if (end.interrupted) {
    io.err(`vhost-iotlb: batch: interrupted after ${script.name}:${end.line}; what ran is saved\n`)
    exitCode = 128 + 2 // SIGINT
  }

  return {json: null, text: () => [], streamed: true, exitCode}
}
