/**
 * The dispatcher: argv in, outcome out. The one-shot command line (fast path and oclif alike),
 * `batch` and the REPL all call {@link dispatch}; none of them parses or runs a command another way.
 */
import {UsageError} from '../device/errors.js'
import {parseArgv} from './argv.js'
import {type ErrorReport, reportError} from './outcome.js'
import {isCommand, loadCommand} from './registry.js'
import type {Session} from './session.js'
import type {Result} from './spec.js'

export interface Outcome {
  command: string
  argv: readonly string[]
  /** The line asked for JSON (`--json`). */
  json: boolean
  result?: Result
  error?: ErrorReport
  exitCode: number
}

/** Runs `argv` (command id first) in `session`. Never throws: failures come back as outcomes. */
export async function dispatch(argv: readonly string[], session: Session): Promise<Outcome> {
  const [id = '', ...rest] = argv
  const json = rest.includes('--json')
  try {
    if (!isCommand(id)) {
      throw new UsageError(id === '' ? 'no command given; see: vhost-iotlb --help' : `unknown command ${JSON.stringify(id)}; see: vhost-iotlb --help`)
    }

    const spec = await loadCommand(id)
    const askMissing = session.interaction?.askMissing
    const asking = askMissing !== undefined && !json
    const input = await parseArgv(spec, rest, {
      env: session.env,
      fillMissing: asking ? (missing) => askMissing(id, missing) : undefined,
      askAlso: asking ? session.interaction?.askAlso?.(id) : undefined,
    })
    const result = await spec.run(input, session)
    return {command: id, argv, json, result, exitCode: result.exitCode ?? 0}
  } catch (error) {
    const report = reportError(error, session.env)
    return {command: id, argv, json, error: report, exitCode: report.exitCode}
  }
}
