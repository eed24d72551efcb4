/**
 * Prints an outcome the way a one-shot command does: JSON or text on stdout, warnings and errors
 * on stderr (and, with --json, the error object on stdout as well).
 */
import {stringify} from '../format/json.js'
import {warningLines} from '../format/text.js'
import type {Outcome} from './dispatch.js'
import type {Io} from './session.js'

export async function render(outcome: Outcome, io: Io): Promise<void> {
  const {result, error} = outcome
  if (error) {
    if (outcome.json) io.out(`${stringify({error: {code: error.code, message: error.message}})}\n`)
    io.err(`vhost-iotlb: ${error.message}\n`)
    if (error.stack) io.err(`${error.stack}\n`)
    return
  }

  if (!result || result.streamed) return
  for (const line of warningLines(result.warnings)) io.err(`${line}\n`)
  if (outcome.json) {
    io.out(`${stringify(result.json)}\n`)
    return
  }

  const lines = await result.text()
  if (lines.length > 0) io.out(`${lines.join('\n')}\n`)
}
