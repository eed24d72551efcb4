/**
 * oclif's command_not_found hook: an unknown command is reported by the dispatcher, so the
 * message, the JSON error and the exit code are the same whether oclif or the fast path ran.
 */
import type {Hook} from '@oclif/core'

import {runOnce} from './run.js'

const hook: Hook<'command_not_found'> = async function ({id, argv}) {
  process.exitCode = await runOnce([id, ...(argv ?? [])])
}

export default hook
