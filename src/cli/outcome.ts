/**
 * The one place errors become exit codes and `{"error": ...}` objects. No stack trace reaches a
 * user: anything that is not one of our named errors is reported as an internal error with its
 * message, and the stack only with VHOST_IOTLB_DEBUG=1.
 */
import {IotlbError, UsageError} from '../device/errors.js'

/** The contract's exit codes. */
/** The contract's exit codes, and 130 for a run stopped by SIGINT (128 + 2, as shells report it). */
export const EXIT = {ok: 0, failed: 1, usage: 2, miss: 3, interrupted: 130} as const

export interface ErrorReport {
  code: string
  message: string
  exitCode: number
  /** Only with VHOST_IOTLB_DEBUG=1. */
  stack?: string
}

export function reportError(error: unknown, env: NodeJS.ProcessEnv = process.env): ErrorReport {
  const debug = env.VHOST_IOTLB_DEBUG === '1' && error instanceof Error ? {stack: error.stack} : {}
  if (error instanceof UsageError) return {code: error.code, message: error.message, exitCode: EXIT.usage, ...debug}
  if (error instanceof IotlbError) return {code: error.code, message: error.message, exitCode: EXIT.failed, ...debug}
  const message = error instanceof Error ? error.message : String(error)
  return {code: 'INTERNAL', message: `internal error: ${message}`, exitCode: EXIT.failed, ...debug}
}
