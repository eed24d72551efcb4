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

// ---------------------------------------------------------------------------------------------
// What opening a real device can run into, each with its own name so scripts and tests can tell
// them apart by class as well as by code. All are DeviceErrors: exit code 1, no stack trace.
// ---------------------------------------------------------------------------------------------

/** open() said ENOENT (or ENXIO/ENODEV: a node whose driver is gone): no device there. */
export class NoSuchDeviceError extends DeviceError {
  constructor(path: string, errno = 'ENOENT', options?: {cause?: unknown}) {
    super(
      `open ${path}`,
      errno,
      'no such device: nothing answers at this path; vhost devices appear once their module is loaded: modprobe vhost_net, vhost_vsock or vhost_vdpa',
      options,
    )
  }
}

/** open() said EACCES or EPERM: vhost devices are root's (mode 0600) unless an fd is handed over. */
export class DevicePermissionError extends DeviceError {
  constructor(path: string, errno: string, options?: {cause?: unknown}) {
    super(
      `open ${path}`,
      errno,
      'permission denied: vhost devices need root, or a file descriptor granted by a process that may open them, passed as --device /dev/fd/N',
      options,
    )
  }
}

/** VHOST_SET_OWNER or VHOST_GET_FEATURES said ENOTTY (or the path is not a device at all). */
export class NotVhostError extends DeviceError {
  constructor(path: string, call: string, errno = 'ENOTTY', options?: {cause?: unknown}) {
    super(call, errno, `${path} is not a vhost device: it does not answer the vhost ioctls`, options)
  }
}

/** VHOST_SET_OWNER said EBUSY: this open file already has an owner. */
export class OwnerBusyError extends DeviceError {
  constructor(path: string, options?: {cause?: unknown}) {
    super(
      'VHOST_SET_OWNER',
      'EBUSY',
      `owner already set: another process (or an earlier command) took ownership of ${path} through this open file; a vhost device has one owner per open, so open the device afresh or run the commands in one repl or batch session`,
      options,
    )
  }
}

/** The device offers neither VIRTIO_F_ACCESS_PLATFORM nor VHOST_F_DEVICE_IOTLB and has no RFC ioctls. */
export class NoIotlbError extends DeviceError {
  constructor(path: string, features: bigint, options?: {cause?: unknown}) {
    super(
      'VHOST_SET_FEATURES',
      'EOPNOTSUPP',
      `no device IOTLB: ${path} offers features 0x${features.toString(16)}, with neither VIRTIO_F_ACCESS_PLATFORM (bit 33) nor VHOST_F_DEVICE_IOTLB (bit 63), and the kernel has no RFC ioctls`,
      options,
    )
  }
}

/** An RFC ioctl asked of a kernel that speaks only the upstream message protocol. */
export class NoRfcIoctlsError extends DeviceError {
  constructor(call: string, what: string) {
    super(
      call,
      'ENOTTY',
      `this kernel does not implement the RFC ioctls; upstream vhost has no ${what}: it queues each miss as a message that userspace read()s from the device fd itself. Use \`vhost-iotlb listen\` (or \`exercise\`) on this device to see and answer misses`,
    )
  }
}
