/**
 * Named errors. Each carries the code a script sees in `{"error": {"code": ...}}`; the command
 * line maps the class to an exit code in one place (src/cli/outcome.ts).
 */

/** Base of every error the tool reports on purpose; anything else is a bug. */
export class IotlbError extends Error {
  readonly code: string

  constructor(code: string, message: string, options?: {cause?: unknown}) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** Bad input: a flag, an argument, a REPL or batch line. Exit code 2. */
export class UsageError extends IotlbError {
  constructor(message: string, options?: {cause?: unknown}) {
    super('USAGE', message, options)
  }
}

/**
 * The device refused or failed, with the errno the kernel (or the patch, for the emulated
 * device) would return. Exit code 1.
 */
export class DeviceError extends IotlbError {
  /** The operation that failed, in the kernel's words (`VHOST_UPDATE_IOTLB`). */
  readonly call: string

  constructor(call: string, errno: string, reason: string, options?: {cause?: unknown}) {
    super(errno, `${call}: ${errno} (${reason})`, options)
    this.call = call
  }
}

/**
 * The emulated device's state file could not be used: unreadable, not a file, not ours, or
 * corrupt. The file is never overwritten after this. Exit code 1.
 */
export class StateFileError extends IotlbError {
  readonly path: string

  constructor(code: string, path: string, message: string, options?: {cause?: unknown}) {
    super(code, `state file ${path}: ${message}`, options)
    this.path = path
  }
}

/** Another process held the state file's lock for longer than we wait. Exit code 1. */
export class LockTimeoutError extends IotlbError {
  constructor(path: string, holder: string, waitedMs: number) {
    super('EBUSY', `state file ${path} is locked by ${holder}; gave up after ${waitedMs} ms`)
  }
}
