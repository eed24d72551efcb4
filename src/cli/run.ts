/**
 * A one-shot run: a session of one command on this process's stdio. Both entry points use it: the
 * fast path in bin/run.js and the oclif commands, so their output is the same by construction.
 */
import {dispatch} from './dispatch.js'
import {reportError} from './outcome.js'
import {render} from './render.js'
import {type Io, Session, processIo} from './session.js'

export async function runOnce(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const session = new Session({io})
  const outcome = await dispatch(argv, session)
  await render(outcome, io)
  try {
    await session.close()
  } catch (error) {
    const report = reportError(error)
    io.err(`vhost-iotlb: ${report.message}\n`)
    return outcome.exitCode === 0 ? report.exitCode : outcome.exitCode
  }

  return outcome.exitCode
}
