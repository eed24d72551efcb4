/**
 * The raw system calls the kernel backend needs, through koffi. This is the only module in the
 * project that imports koffi: load it with `await import()` on the paths that touch a real device,
 * so commands on the emulated device never pay for the FFI.
 *
 * Every call goes through {@link syscall}, which reads errno right after the C function returns
 * and turns -1 into a {@link SyscallError} naming the operation. All calls are synchronous and
 * block the event loop for their duration; open devices with O_NONBLOCK and give `poll` short
 * timeouts.
 *
 * Linux x86-64 only (flag values and struct layouts below are that ABI's).
 *
 * @module
 */
import koffi from 'koffi'
import {SyscallError} from './errors.js'
import {ioctlName} from './uapi.js'

export {SyscallError} from './errors.js'

// Flag values from the Linux UAPI headers (generic + x86-64); Node's fs.constants lacks O_CLOEXEC.
export const O_RDONLY = 0o0
export const O_WRONLY = 0o1
export const O_RDWR = 0o2
export const O_NOCTTY = 0o400
export const O_NONBLOCK = 0o4000
export const O_CLOEXEC = 0o2000000

/** fcntl(2) commands (x86-64). */
export const F_GETFL = 3
export const F_SETFL = 4
export const F_DUPFD_CLOEXEC = 1030

export const POLLIN = 0x001
export const POLLPRI = 0x002
export const POLLOUT = 0x004
export const POLLERR = 0x008
export const POLLHUP = 0x010
export const POLLNVAL = 0x020

export const EFD_SEMAPHORE = 0o1
export const EFD_NONBLOCK = 0o4000
export const EFD_CLOEXEC = 0o2000000

const PROT_READ = 0x1
const PROT_WRITE = 0x2
const MAP_PRIVATE = 0x02
const MAP_ANONYMOUS = 0x20

const libc = koffi.load('libc.so.6')

// ssize_t and void* results are declared as intptr_t so that failure is always the number -1
// (mmap's MAP_FAILED included) and one check covers every call.
const c = {
  open: libc.func('int open(const char *path, int flags, ...)'),
  close: libc.func('int close(int fd)'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, ...)'),
  read: libc.func('intptr_t read(int fd, void *buf, size_t count)'),
  write: libc.func('intptr_t write(int fd, void *buf, size_t count)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  mmap: libc.func('intptr_t mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
  munmap: libc.func('int munmap(uintptr_t addr, size_t length)'),
  getpagesize: libc.func('int getpagesize(void)'),
}

/**
 * The one chokepoint: run a libc call and, if it returned -1, throw a {@link SyscallError}
 * built from the errno koffi saved for that call. Nothing may run between `invoke` and
 * `koffi.errno()`: the next FFI call would overwrite it.
 */
function syscall(name: string, call: string, invoke: () => number | bigint): number {
  const result = invoke()
  if (result === -1 || result === -1n) {
    const errno = koffi.errno()
    throw new SyscallError(name, call, errno)
  }
  return Number(result)
}

function checkFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) throw new RangeError(`invalid file descriptor ${fd}`)
}

/** The kernel's page size (4096 on x86-64). */
export const PAGE_SIZE: number = c.getpagesize() as number

/** open(2). Defaults to O_RDWR | O_NONBLOCK | O_CLOEXEC, which is what a vhost device wants. */
export function open(path: string, flags: number = O_RDWR | O_NONBLOCK | O_CLOEXEC): number {
  return syscall('open', `open ${path}`, () => c.open(path, flags) as number)
}

/** close(2). */
export function close(fd: number): void {
  checkFd(fd)
  syscall('close', 'close', () => c.close(fd) as number)
}

/**
 * ioctl(2) with a pointer argument: a Buffer the kernel reads and/or writes during the call, a raw
 * address (bigint; for memory that must outlive the call, e.g. from {@link mmapAnonymous}), or
 * nothing (passes 0). `name` defaults to the request's kernel name.
 */
export function ioctl(fd: number, request: number, arg?: Uint8Array | bigint | null, name: string = ioctlName(request)): number {
  checkFd(fd)
  if (arg instanceof Uint8Array) return syscall('ioctl', name, () => c.ioctl(fd, request, 'void *', arg) as number)
  const address = arg ?? 0n
  return syscall('ioctl', name, () => c.ioctl(fd, request, 'uintptr_t', address) as number)
}

/**
 * ioctl(2) whose argument is an integer value rather than a pointer. Passed as a full 64-bit
 * long so the kernel's `unsigned long arg` has defined upper bits (-1 arrives as all ones).
 */
export function ioctlInt(fd: number, request: number, value: number, name: string = ioctlName(request)): number {
  checkFd(fd)
  if (!Number.isSafeInteger(value)) throw new RangeError(`ioctl integer argument ${value} is not a safe integer`)
  return syscall('ioctl', name, () => c.ioctl(fd, request, 'intptr_t', value) as number)
}

/**
 * fcntl(2) with an int argument (F_GETFL, F_SETFL, F_DUPFD_CLOEXEC). Used on file descriptors
 * another process granted: duplicated so the tool owns its copy, and switched to O_NONBLOCK.
 */
export function fcntl(fd: number, cmd: number, arg = 0, name = 'fcntl'): number {
  checkFd(fd)
  return syscall('fcntl', name, () => c.fcntl(fd, cmd, 'int', arg) as number)
}

/** read(2) into `buf`; returns the byte count. A non-blocking fd with nothing to read throws EAGAIN. */
export function read(fd: number, buf: Uint8Array, name = 'read'): number {
  checkFd(fd)
  return syscall('read', name, () => c.read(fd, buf, buf.byteLength) as number)
}

/** write(2) of all of `buf`; returns the byte count the kernel accepted. */
export function write(fd: number, buf: Uint8Array, name = 'write'): number {
  checkFd(fd)
  return syscall('write', name, () => c.write(fd, buf, buf.byteLength) as number)
}

/** One entry of a poll set. */
export interface PollFd {
  fd: number
  /** POLLIN, POLLOUT, ... */
  events: number
}

/**
 * poll(2). Returns the `revents` of each entry in order (0 for entries with nothing to report,
 * all zeros on timeout). Blocks the event loop for up to `timeoutMs` (-1: forever).
 */
export function poll(fds: readonly PollFd[], timeoutMs: number): number[] {
  // struct pollfd { int fd; short events; short revents; }
  const buf = Buffer.alloc(8 * fds.length)
  fds.forEach((p, i) => {
    checkFd(p.fd)
    buf.writeInt32LE(p.fd, i * 8)
    buf.writeInt16LE(p.events, i * 8 + 4)
  })
  syscall('poll', 'poll', () => c.poll(buf, fds.length, timeoutMs) as number)
  return fds.map((_, i) => buf.readUInt16LE(i * 8 + 6))
}

/** eventfd(2). Defaults to non-blocking and close-on-exec. */
export function eventfd(initval = 0, flags: number = EFD_NONBLOCK | EFD_CLOEXEC): number {
  return syscall('eventfd', 'eventfd', () => c.eventfd(initval, flags) as number)
}

/** Add `value` to an eventfd counter (an 8-byte write). */
export function eventfdWrite(fd: number, value = 1n): void {
  const buf = Buffer.alloc(8)
  buf.writeBigUInt64LE(value)
  write(fd, buf, 'eventfd write')
}

/** Read and reset an eventfd counter (an 8-byte read); EAGAIN when it is 0 on a non-blocking fd. */
export function eventfdRead(fd: number): bigint {
  const buf = Buffer.alloc(8)
  read(fd, buf, 'eventfd read')
  return buf.readBigUInt64LE()
}

/**
 * Anonymous, private, read-write memory the tool owns, at an address that never moves. Use it
 * for anything the kernel keeps a pointer to after the call returns (IOTLB targets, rings, the
 * RFC request entry): Node Buffers may live on the V8 heap, which the GC moves.
 */
export class Mapping {
  readonly address: bigint
  readonly length: number
  #bytes: Buffer | null

  /** @internal use {@link mmapAnonymous} */
  constructor(address: bigint, length: number) {
    this.address = address
    this.length = length
    this.#bytes = Buffer.from(koffi.view(address, length))
  }

  /** False once {@link unmap} ran; every accessor throws then (touching it would crash Node). */
  get mapped(): boolean {
    return this.#bytes !== null
  }

  /** A live Buffer over the whole mapping (no copy). Do not keep it past {@link unmap}. */
  get bytes(): Buffer {
    if (this.#bytes === null) throw new Error(`mapping at 0x${this.address.toString(16)} is unmapped`)
    return this.#bytes
  }

  /** Copy `length` bytes out, starting `offset` bytes into the mapping. */
  read(offset: number, length: number): Buffer {
    this.#check(offset, length)
    return Buffer.from(this.bytes.subarray(offset, offset + length))
  }

  /** Copy `data` in at `offset`. */
  write(offset: number, data: Uint8Array): void {
    this.#check(offset, data.byteLength)
    this.bytes.set(data, offset)
  }

  /** munmap(2). Idempotent. */
  unmap(): void {
    if (this.#bytes === null) return
    this.#bytes = null
    syscall('munmap', 'munmap', () => c.munmap(this.address, this.length) as number)
  }

  #check(offset: number, length: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      throw new RangeError(`range [${offset}, ${offset + length}) is outside the ${this.length}-byte mapping`)
    }
  }
}

/** mmap(2) `length` bytes (rounded up to whole pages) of zeroed anonymous memory. */
export function mmapAnonymous(length: number): Mapping {
  if (!Number.isSafeInteger(length) || length <= 0) throw new RangeError(`mapping length ${length} must be positive`)
  const rounded = Math.ceil(length / PAGE_SIZE) * PAGE_SIZE
  const address = syscall('mmap', 'mmap', () =>
    c.mmap(0, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) as number,
  )
  return new Mapping(BigInt(address), rounded)
}
