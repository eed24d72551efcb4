/**
 * Errors from system calls on a real device. Pure (no FFI), so code that only needs to
 * recognise a {@link SyscallError} (exit codes, JSON error output) never loads koffi.
 *
 * @module
 */
import {constants} from 'node:os'

import {DeviceError} from '../errors.js'

/**
 * Linux descriptions (as glibc's strerror words them) for the errnos the vhost and tun paths
 * produce. Numbers come from `os.constants.errno`, so only the names live here.
 */
const DESCRIPTIONS: ReadonlyArray<readonly [keyof typeof constants.errno, string]> = [
  ['EPERM', 'Operation not permitted'],
  ['ENOENT', 'No such file or directory'],
  ['ESRCH', 'No such process'],
  ['EINTR', 'Interrupted system call'],
  ['EIO', 'Input/output error'],
  ['ENXIO', 'No such device or address'],
  ['E2BIG', 'Argument list too long'],
  ['EBADF', 'Bad file descriptor'],
  ['EAGAIN', 'Resource temporarily unavailable'],
  ['ENOMEM', 'Cannot allocate memory'],
  ['EACCES', 'Permission denied'],
  ['EFAULT', 'Bad address'],
  ['EBUSY', 'Device or resource busy'],
  ['EEXIST', 'File exists'],
  ['ENODEV', 'No such device'],
  ['ENOTDIR', 'Not a directory'],
  ['EISDIR', 'Is a directory'],
  ['EINVAL', 'Invalid argument'],
  ['ENFILE', 'Too many open files in system'],
  ['EMFILE', 'Too many open files'],
  ['ENOTTY', 'Inappropriate ioctl for device'],
  ['ENOSPC', 'No space left on device'],
  ['EROFS', 'Read-only file system'],
  ['ERANGE', 'Numerical result out of range'],
  ['ENOSYS', 'Function not implemented'],
  ['ENOBUFS', 'No buffer space available'],
  ['EOPNOTSUPP', 'Operation not supported'],
  ['ETIMEDOUT', 'Connection timed out'],
]

/** errno number -> [name, description] for the table above. */
const KNOWN = new Map<number, readonly [string, string]>()
for (const [name, text] of DESCRIPTIONS) {
  const n = constants.errno[name]
  // Linux aliases share numbers (EWOULDBLOCK = EAGAIN, ENOTSUP = EOPNOTSUPP): the table's name wins.
  if (n !== undefined && !KNOWN.has(n)) KNOWN.set(n, [name, text])
}

/** The symbolic name of an errno number (`95` -> `EOPNOTSUPP`), or `E<n>` if unknown. */
export function errnoName(errno: number): string {
  const known = KNOWN.get(errno)
  if (known) return known[0]
  for (const [name, n] of Object.entries(constants.errno)) if (n === errno) return name
  return `E${errno}`
}

/** The description of an errno number, or `errno <n>` if it is not in the table. */
export function errnoDescription(errno: number): string {
  return KNOWN.get(errno)?.[1] ?? `errno ${errno}`
}

/**
 * A system call returned -1. The message names the operation and the errno, e.g.
 * `VHOST_SET_FEATURES: EOPNOTSUPP (Operation not supported)`. A {@link DeviceError}, so the
 * command line reports it like any other refusal (exit code 1, `code` = the errno name).
 */
export class SyscallError extends DeviceError {
  /** The positive errno number as the kernel returned it (Node's own errors use negative ones). */
  readonly errno: number
  /** The C function: `ioctl`, `open`, `write`, ... */
  readonly syscall: string

  constructor(syscall: string, call: string, errno: number, options?: {cause?: unknown}) {
    super(call, errnoName(errno), errnoDescription(errno), options)
    this.errno = errno
    this.syscall = syscall
  }
}

/** True when `err` is a {@link SyscallError} with the given errno name. */
export function isErrno(err: unknown, code: string): err is SyscallError {
  return err instanceof SyscallError && err.code === code
}
