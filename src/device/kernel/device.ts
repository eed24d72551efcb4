/**
 * A real vhost character device (`/dev/vhost-net`, `/dev/vhost-vsock`, `/dev/vhost-vdpa-N`) behind
 * {@link IotlbDevice}.
 *
 * The kernel concept: when a vhost device sits behind a virtual IOMMU, the addresses in its rings
 * are IOVAs, and the kernel keeps a *device IOTLB* of IOVA ranges -> user addresses of the process
 * that owns the device. On a miss it asks that process, which answers with an UPDATE. Two
 * protocols exist, and {@link KernelDevice.open} finds out which one the kernel speaks:
 *
 * - the RFC of December 2015 (never merged): `VHOST_SET_IOTLB_FD` (an eventfd signalled on a
 *   miss), `VHOST_SET_IOTLB_REQUEST_ENTRY` (a user buffer the kernel writes the request into) and
 *   `VHOST_UPDATE_IOTLB`. Probed with a zeroed entry: the patch answers EINVAL (type 0), a stock
 *   kernel ENOTTY, and neither changes any state.
 * - upstream (4.8+): negotiate VIRTIO_F_ACCESS_PLATFORM (bit 33; VHOST_F_DEVICE_IOTLB, bit 63,
 *   where an old kernel offers it), then UPDATE / INVALIDATE are 72-byte `vhost_msg` (v1) or
 *   `vhost_msg_v2` writes on the device fd and MISS messages are read from it.
 *
 * The kernel dereferences every user address it is given, possibly long after the call: a ring,
 * a mapping's target, the RFC request buffer. So this backend hands the kernel only memory it
 * allocated itself (`--uaddr auto`, `set-request-entry auto`) unless the user says otherwise in so
 * many words (`--unsafe-uaddr`), and releases that memory only after the kernel let go of it
 * (invalidated, evicted, or the fd closed).
 *
 * The kernel cannot be asked what its IOTLB holds. `dump` and `translate` read a shadow of what
 * this tool wrote (shadow.ts for upstream; the emulated RFC model for the RFC), labelled as such.
 *
 * Every system call goes through sys.ts. The FFI is injected ({@link Sys}) so the protocol logic
 * can be tested without a kernel.
 *
 * @module
 */
import {readFileSync} from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'

import type {
  DeviceInfo,
  DumpOptions,
  DumpResult,
  ExerciseOptions,
  ExerciseResult,
  InvalidateRequest,
  InvalidateResult,
  IotlbDevice,
  IotlbEvent,
  ListenOptions,
  ListenResult,
  MissHandler,
  ProbeResult,
  ResetResult,
  SetFdResult,
  SetRequestEntryResult,
  SlotEntry,
  TranslateResult,
  UpdateRequest,
  UpdateResult,
  Warning,
} from '../device.js'
import {
  ENTRY_SIZE,
  type IotlbEntry,
  PAGE_SIZE,
  VHOST_IOTLB_INVALID,
  VHOST_IOTLB_INVALIDATE,
  VHOST_IOTLB_MISS,
  VHOST_IOTLB_SIZE,
  VHOST_IOTLB_UPDATE,
  VHOST_IOTLB_VALID,
  cloneEntry,
  decodeEntry,
  encodeEntry,
  typeName,
  zeroEntry,
} from '../entry.js'
import {DeviceError, UsageError} from '../errors.js'
import {LEN_MAX, type ModelState, RfcIotlb, TranslateWalk, freshState} from '../emulated/model.js'
import {
  DevicePermissionError,
  NoIotlbError,
  NoRfcIoctlsError,
  NoSuchDeviceError,
  NotVhostError,
  OwnerBusyError,
  SyscallError,
} from './errors.js'
import {ListenTally} from '../listen.js'
import {type Queue, RING, setUpQueue} from './exercise.js'
import {MAX_IOTLB_ENTRIES, type ShadowRange, UpstreamShadow, accessToRfcPerm, rfcPermToAccess} from './shadow.js'
import * as u from './uapi.js'

/** Memory the tool allocated and the kernel may be pointed at: sys.ts's `Mapping`. */
export interface Memory {
  readonly address: bigint
  readonly length: number
  readonly mapped: boolean
  read(offset: number, length: number): Buffer
  write(offset: number, data: Uint8Array): void
  unmap(): void
}

/** The part of sys.ts this backend uses; the real module satisfies it. */
export interface Sys {
  readonly PAGE_SIZE: number
  readonly O_RDWR: number
  readonly O_NONBLOCK: number
  readonly O_CLOEXEC: number
  readonly O_NOCTTY: number
  readonly F_GETFL: number
  readonly F_SETFL: number
  readonly F_DUPFD_CLOEXEC: number
  readonly POLLIN: number
  open(path: string, flags?: number): number
  close(fd: number): void
  ioctl(fd: number, request: number, arg?: Uint8Array | bigint | null, name?: string): number
  fcntl(fd: number, cmd: number, arg?: number, name?: string): number
  read(fd: number, buf: Uint8Array, name?: string): number
  write(fd: number, buf: Uint8Array, name?: string): number
  poll(fds: ReadonlyArray<{fd: number; events: number}>, timeoutMs: number): number[]
  eventfd(initval?: number, flags?: number): number
  eventfdWrite(fd: number, value?: bigint): void
  eventfdRead(fd: number): bigint
  mmapAnonymous(length: number): Memory
}

export interface KernelOpenOptions {
  env?: NodeJS.ProcessEnv
  /** The FFI; sys.ts unless a test gives a fake. */
  sys?: Sys
  /** vhost's max_iotlb_entries; read from sysfs unless given. */
  maxEntries?: number
}

/** How often listen/exercise look at the fd: a message is seen within this many ms. */
const POLL_INTERVAL_MS = 10
/** The first miss after a kick: measured ~8 ms under TCG; a loaded CI host gets far more slack. */
const FIRST_MISS_WAIT_MS = 5000
/** Default silence after an answer before `exercise` says the kernel went quiet. */
export const DEFAULT_QUIET_MS = 500

const bit = (n: number) => 1n << BigInt(n)
const hex = (value: bigint) => `0x${value.toString(16)}`

/** `--device /dev/fd/N` (or /proc/self/fd/N): an fd this process inherited, not a path to open. */
const GRANTED_FD = /^\/(?:dev\/fd|proc\/self\/fd)\/(\d+)$/

/** VHOST_IOTLB_MSG_VERSION: `1` forces vhost_msg (v1) even when MSG_V2 is on offer. */
function forcedVersion(env: NodeJS.ProcessEnv): 1 | 2 | undefined {
  const text = env.VHOST_IOTLB_MSG_VERSION
  if (text === undefined || text === '') return undefined
  if (text === '1' || text === '2') return Number(text) as 1 | 2
  throw new UsageError(`VHOST_IOTLB_MSG_VERSION=${JSON.stringify(text)}: expected 1 (vhost_msg) or 2 (vhost_msg_v2)`)
}

/** vhost's `max_iotlb_entries` module parameter (read-only at runtime), else its default. */
function readMaxEntries(): number {
  try {
    const value = Number(readFileSync('/sys/module/vhost/parameters/max_iotlb_entries', 'utf8').trim())
    return Number.isInteger(value) && value >= 0 ? value : MAX_IOTLB_ENTRIES
  } catch {
    return MAX_IOTLB_ENTRIES
  }
}

function code(error: unknown): string | undefined {
  return error instanceof SyscallError ? error.code : undefined
}

/** What the kernel offered and what this tool settled on, found once at open. */
interface Detected {
  features: bigint
  backend: bigint | null
  rfc: boolean
  /** Features acked with VHOST_SET_FEATURES (upstream with an IOTLB), else null. */
  acked: bigint | null
  /** The envelope UPDATE/INVALIDATE are written in; null: no upstream IOTLB. */
  version: 1 | 2 | null
  notes: string[]
}

/** A MISS this tool read from the fd and has not answered yet: the kernel waits for it. */
interface PendingMiss {
  iova: bigint
  access: number
  raw: Uint8Array
}

export class KernelDevice implements IotlbDevice {
  readonly info: DeviceInfo
  private fd: number
  private readonly detected: Detected
  /** Upstream: ranges this tool wrote, each with the memory behind it when the tool allocated it. */
  private readonly shadow: UpstreamShadow<Memory>
  /** RFC: the patch's table as this tool wrote it, and which slots hold memory the tool allocated. */
  private readonly rfcShadow: RfcIotlb
  private readonly rfcBacking = new Map<number, Memory>()
  private pending: PendingMiss[] = []
  private iotlbFd: number | undefined
  private requestMem: Memory | undefined
  private queue: Queue | undefined
  /** Mappings the kernel may still point at after the fd is gone (granted fds): kept to the end. */
  private readonly retired: Memory[] = []

  private constructor(
    private readonly sys: Sys,
    fd: number,
    readonly path: string,
    spec: string,
    private readonly granted: boolean,
    detected: Detected,
    maxEntries: number,
  ) {
    this.fd = fd
    this.detected = detected
    const model = detected.rfc ? 'rfc' : detected.version === null ? 'upstream (no IOTLB)' : `upstream v${detected.version}`
    this.info = {kind: 'kernel', spec, model}
    this.shadow = new UpstreamShadow<Memory>(maxEntries)
    this.rfcShadow = new RfcIotlb(freshState('rfc'))
  }

  /**
   * Opens the device, takes ownership (VHOST_SET_OWNER), reads its features, probes for the RFC
   * ioctls and, upstream, turns the IOTLB on: acks ACCESS_PLATFORM (with VERSION_1 where offered)
   * and MSG_V2 unless VHOST_IOTLB_MSG_VERSION=1. A device without an IOTLB still opens, so that
   * `probe` can say so; the operations that need one refuse.
   */
  static async open(path: string, spec: string, options: KernelOpenOptions = {}): Promise<KernelDevice> {
    const sys = options.sys ?? ((await import('./sys.js')) as Sys)
    const env = options.env ?? process.env
    const forced = forcedVersion(env)
    const {fd, granted} = openFd(sys, path)
    try {
      const detected = negotiate(sys, fd, path, forced)
      return new KernelDevice(sys, fd, path, spec, granted, detected, options.maxEntries ?? readMaxEntries())
    } catch (error) {
      sys.close(fd)
      throw error
    }
  }

  private get upstream(): boolean {
    return !this.detected.rfc
  }

  /** Refuses operations that need an IOTLB on a device without one. */
  private requireIotlb(): void {
    if (!this.detected.rfc && this.detected.version === null) throw new NoIotlbError(this.path, this.detected.features)
  }

  private requireOpen(): number {
    if (this.fd < 0) throw new DeviceError('vhost', 'EBADF', `${this.path} is closed`)
    return this.fd
  }

  // ---- RFC-only ioctls ----------------------------------------------------------------------

  async setIotlbFd(fd: number | 'auto'): Promise<SetFdResult> {
    if (this.upstream) throw new NoRfcIoctlsError('VHOST_SET_IOTLB_FD', 'miss eventfd')
    if (fd !== 'auto' && fd !== -1) {
      throw new UsageError(
        `set-fd ${fd}: on a real device give auto (an eventfd this tool creates, owns and reads) or -1 to clear; fd ${fd} of this short-lived process is nothing you could read`,
      )
    }

    const created = fd === 'auto' ? this.sys.eventfd() : -1
    const arg = Buffer.alloc(4)
    arg.writeInt32LE(created)
    try {
      // The kernel reads the int through the pointer and keeps its own reference to the eventfd.
      this.sys.ioctl(this.requireOpen(), u.VHOST_SET_IOTLB_FD, arg)
    } catch (error) {
      if (created >= 0) this.sys.close(created)
      throw error
    }

    if (this.iotlbFd !== undefined) this.sys.close(this.iotlbFd)
    this.iotlbFd = created >= 0 ? created : undefined
    const iotlb_fd = this.rfcShadow.setIotlbFd(created)
    return {iotlb_fd}
  }

  async setRequestEntry(address: bigint | 'auto'): Promise<SetRequestEntryResult> {
    if (this.upstream) throw new NoRfcIoctlsError('VHOST_SET_IOTLB_REQUEST_ENTRY', 'request buffer')
    if (address !== 'auto') {
      throw new UsageError(
        `set-request-entry ${hex(address)}: on a real device the kernel writes each miss request into this process's memory at that address; give auto and the tool allocates the ${ENTRY_SIZE}-byte buffer itself`,
      )
    }

    const memory = this.sys.mmapAnonymous(ENTRY_SIZE)
    try {
      // The argument is the address itself: the kernel keeps it and writes requests there later.
      this.sys.ioctl(this.requireOpen(), u.VHOST_SET_IOTLB_REQUEST_ENTRY, memory.address)
    } catch (error) {
      memory.unmap()
      throw error
    }

    if (this.requestMem) this.retire(this.requestMem)
    this.requestMem = memory
    return {request_entry: this.rfcShadow.setRequestEntry(memory.address)}
  }

  // ---- UPDATE / INVALIDATE ------------------------------------------------------------------

  async update(request: UpdateRequest): Promise<UpdateResult> {
    this.requireIotlb()
    if (request.userspace_addr !== 'auto' && !request.unsafe_uaddr) {
      throw new UsageError(
        `update --uaddr ${hex(request.userspace_addr)}: on a real device the kernel reads and writes this process's memory at that address for as long as the mapping lives, so a stray address corrupts the tool or leaks its memory to the device. Leave --uaddr out (auto: memory the tool allocates) or add --unsafe-uaddr to accept the risk`,
      )
    }

    return this.upstream ? this.updateUpstream(request) : this.updateRfc(request)
  }

  /** Memory for `--uaddr auto`: `size` bytes rounded up to whole pages, or none for size 0. */
  private backingFor(request: UpdateRequest): {uaddr: bigint; memory?: Memory} {
    if (request.userspace_addr !== 'auto') return {uaddr: request.userspace_addr}
    // Size 0 is the kernel's to refuse (upstream EINVAL); nothing to back.
    if (request.size === 0n) return {uaddr: 0n}
    if (request.size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new DeviceError('mmap', 'ENOMEM', `--uaddr auto cannot back ${hex(request.size)} bytes; give a smaller --size`)
    }

    try {
      const memory = this.sys.mmapAnonymous(Number(request.size))
      return {uaddr: memory.address, memory}
    } catch (error) {
      const errno = code(error) ?? 'ENOMEM'
      throw new DeviceError('mmap', errno, `cannot allocate ${hex(request.size)} bytes to back the mapping (--uaddr auto)`, {cause: error})
    }
  }

  private async updateUpstream(request: UpdateRequest): Promise<UpdateResult> {
    if (!request.valid) {
      throw new UsageError(
        'update --invalid: upstream IOTLB messages have no valid flag (a range is mapped until it is invalidated); drop --invalid, or use invalidate',
      )
    }

    const access = rfcPermToAccess(request.perm)
    if (access === undefined) throw new UsageError(`update --perm 0x${request.perm.toString(16)}: upstream has no such access bits`)
    const {uaddr, memory} = this.backingFor(request)
    try {
      this.writeMessage({iova: request.iova, size: request.size, uaddr, perm: access, type: request.type})
    } catch (error) {
      memory?.unmap()
      throw error
    }

    const warnings: Warning[] = []
    let slot = 0
    let completed = false
    if (request.type === VHOST_IOTLB_UPDATE) {
      const {range, evicted} = this.shadow.add(request.iova, request.size, uaddr, access, memory)
      slot = range.seq
      for (const old of evicted) {
        this.release(old)
        warnings.push({
          code: 'evicted',
          message: `the kernel holds at most ${this.shadow.limit} ranges (vhost max_iotlb_entries): it dropped the oldest, [${hex(old.start)}, ${hex(old.last)}], to make room, and so did the shadow`,
        })
      }

      completed = this.completePending(request.iova, request.size)
      if (access === 0) {
        warnings.push({
          code: 'no-access',
          message: 'perm none: the kernel accepts the range but refuses every access through it, and posts no new MISS for it',
        })
      }
    } else {
      // `--type invalidate` sent as an UPDATE line: the kernel treats it as INVALIDATE.
      if (request.type === VHOST_IOTLB_INVALIDATE) for (const old of this.shadow.invalidate(request.iova, request.size)) this.release(old)
      memory?.unmap()
    }

    const entry: IotlbEntry = {
      iova: request.iova,
      size: request.size,
      userspace_addr: uaddr,
      perm: request.perm,
      type: request.type,
      valid: VHOST_IOTLB_VALID,
      u8_padding: 0,
      padding: 0,
    }
    return {slot, entry, completed_miss: completed, ...(warnings.length > 0 ? {warnings} : {})}
  }

  /**
   * `vhost_iotlb_notify_vq()`: an UPDATE covering a MISS the kernel is waiting on wakes its
   * virtqueue. Drops those misses from the unanswered list; true if there were any.
   */
  private completePending(iova: bigint, size: bigint): boolean {
    const last = iova + size - 1n
    const before = this.pending.length
    this.pending = this.pending.filter((miss) => !(iova <= miss.iova && miss.iova <= last))
    return this.pending.length < before
  }

  private async updateRfc(request: UpdateRequest): Promise<UpdateResult> {
    const {uaddr, memory} =
      request.userspace_addr === 'auto' && request.size === 0n
        ? // The RFC takes an empty entry; give it a real page all the same, never address 0.
          this.backingFor({...request, size: BigInt(this.sys.PAGE_SIZE)})
        : this.backingFor(request)
    const entry: IotlbEntry = {
      iova: request.iova,
      size: request.size,
      userspace_addr: uaddr,
      perm: request.perm,
      type: request.type,
      valid: request.valid ? VHOST_IOTLB_VALID : VHOST_IOTLB_INVALID,
      u8_padding: 0,
      padding: 0,
    }
    let result: {slot: number; written: boolean; completed: boolean}
    try {
      // copy_from_user() of the 32 bytes during the call: a Buffer is enough here.
      this.sys.ioctl(this.requireOpen(), u.VHOST_UPDATE_IOTLB, encodeEntry(entry))
      result = this.rfcShadow.updateIotlb(entry)
    } catch (error) {
      memory?.unmap()
      throw error
    }

    this.replaceRfcSlot(result.slot, result.written, memory)
    return {slot: result.slot, entry, completed_miss: result.completed}
  }

  /** The slot was overwritten: the memory behind its old entry is no longer the kernel's. */
  private replaceRfcSlot(slot: number, written: boolean, memory: Memory | undefined): void {
    if (!written) {
      memory?.unmap()
      return
    }

    const old = this.rfcBacking.get(slot)
    if (old) this.retire(old)
    if (memory) this.rfcBacking.set(slot, memory)
    else this.rfcBacking.delete(slot)
  }

  async invalidate(request: InvalidateRequest): Promise<InvalidateResult> {
    this.requireIotlb()
    if (!this.upstream) {
      if (request.size !== undefined && request.size !== 0n) {
        throw new UsageError('invalidate --size: the RFC invalidates one slot by exact iova and has no range')
      }

      const entry: IotlbEntry = {...zeroEntry(), iova: request.iova, type: VHOST_IOTLB_INVALIDATE, valid: VHOST_IOTLB_INVALID}
      this.sys.ioctl(this.requireOpen(), u.VHOST_UPDATE_IOTLB, encodeEntry(entry))
      const {slot, written} = this.rfcShadow.updateIotlb(entry)
      this.replaceRfcSlot(slot, written, undefined)
      return {slot, invalidated: written}
    }

    // Without --size, one page: the RFC's unit, and what a user pointing at one IOVA means.
    const size = request.size ?? PAGE_SIZE
    this.writeMessage({iova: request.iova, size, uaddr: 0n, perm: 0, type: VHOST_IOTLB_INVALIDATE})
    const removed = this.shadow.invalidate(request.iova, size)
    for (const range of removed) this.release(range)
    const warnings: Warning[] = []
    if (request.iova === 0n && size === 0n) {
      warnings.push({code: 'flush', message: 'iova 0 size 0: the range end wraps to 2^64 - 1, so the kernel drops every range'})
    }

    return {
      slot: removed[0]?.seq ?? -1,
      invalidated: removed.length > 0,
      removed: removed.length,
      ...(warnings.length > 0 ? {warnings} : {}),
    }
  }

  /**
   * One UPDATE / INVALIDATE as a 72-byte vhost_msg(_v2) write. The kernel reports 72 for any
   * write of at least 40 bytes (measured), so the length is this tool's to get right; every
   * error of the message handler comes back as EFAULT, so the message says what EFAULT covers.
   */
  private writeMessage(msg: u.VhostIotlbMsg): void {
    const fd = this.requireOpen()
    const v2 = this.detected.version === 2
    const bytes = v2 ? u.encodeVhostMsgV2(msg) : u.encodeVhostMsg(msg)
    const call = `write ${v2 ? 'vhost_msg_v2' : 'vhost_msg'} ${typeName(msg.type).toUpperCase()}`
    let written: number
    try {
      written = this.sys.write(fd, bytes, call)
    } catch (error) {
      throw explainWriteError(error, call, msg)
    }

    if (written !== bytes.length) {
      throw new DeviceError(call, 'EIO', `the kernel took ${written} of ${bytes.length} bytes`)
    }
  }

  // ---- the shadow ---------------------------------------------------------------------------

  async translate(iova: bigint, len: bigint): Promise<TranslateResult> {
    if (len > LEN_MAX) throw new DeviceError('translate', 'EINVAL', `len ${hex(len)} does not fit a u32`)
    if (!this.upstream) {
      // The patch's own walk on a copy: a miss there must not look posted in the shadow.
      const copy = new RfcIotlb(structuredClone(this.rfcShadow.state))
      return {...new TranslateWalk(iova, len).run(copy), shadow: true}
    }

    const walk = this.shadow.translate(iova, len)
    switch (walk.status) {
      case 'ok': {
        return {status: 'ok', iova, len, iov: walk.iov, shadow: true}
      }

      case 'miss': {
        // What the kernel's vhost_iotlb_miss() would queue: type, iova and access only.
        const message = {iova: walk.iova, size: 0n, uaddr: 0n, perm: 0, type: VHOST_IOTLB_MISS}
        const request: IotlbEntry = {...zeroEntry(), iova: walk.iova, type: VHOST_IOTLB_MISS}
        const bytes = this.detected.version === 1 ? u.encodeVhostMsg(message) : u.encodeVhostMsgV2(message)
        return {status: 'miss', iova: walk.iova, request, request_bytes: Uint8Array.from(bytes), shadow: true}
      }

      case 'fault': {
        return {status: 'fault', errno: walk.errno, reason: walk.reason, shadow: true}
      }
    }
  }

  async dump(options: DumpOptions): Promise<DumpResult> {
    if (!this.upstream) return this.dumpRfc(options)
    const entries: SlotEntry[] = this.shadow
      .ranges()
      .filter((range) => options.slot === undefined || range.seq === options.slot)
      .map((range) => ({slot: range.seq, ...rangeEntry(range)}))
    const oldest = this.pending[0]
    return {
      model: this.info.model,
      shadow: true,
      page_size: Number(PAGE_SIZE),
      slots: this.shadow.limit,
      iotlb_fd: null,
      eventfd_signals: 0,
      request_entry: null,
      pending: oldest ? {...zeroEntry(), iova: oldest.iova, perm: accessToRfcPerm(oldest.access), type: VHOST_IOTLB_MISS} : zeroEntry(),
      request_bytes: null,
      waiting: this.pending.length > 0,
      entries,
    }
  }

  private dumpRfc(options: DumpOptions): DumpResult {
    const state = this.rfcShadow.state
    const entries: SlotEntry[] = []
    for (let slot = 0; slot < VHOST_IOTLB_SIZE; slot++) {
      const entry = state.iotlb[slot]!
      const shown = options.slot === undefined ? options.all || entry.type !== 0 : slot === options.slot
      if (shown) entries.push({slot, ...entry})
    }

    return {
      model: this.info.model,
      shadow: true,
      page_size: Number(PAGE_SIZE),
      slots: VHOST_IOTLB_SIZE,
      iotlb_fd: state.iotlb_fd,
      eventfd_signals: state.eventfd_signals,
      request_entry: state.request_entry,
      pending: cloneEntry(state.pending),
      request_bytes: state.request_bytes ? Uint8Array.from(state.request_bytes) : null,
      waiting: this.rfcShadow.waiting,
      entries,
    }
  }

  /** A real device cannot be reset from here: invalidate everything this tool mapped instead. */
  async reset(): Promise<ResetResult> {
    let invalidated = 0
    if (this.upstream) {
      if (this.detected.version !== null) {
        // One INVALIDATE per range, oldest first: works on every kernel, unlike the size-0 flush.
        for (const range of [...this.shadow.ranges()]) {
          if (!this.shadow.bySeq(range.seq)) continue
          const size = range.last - range.start + 1n
          this.writeMessage({iova: range.start, size, uaddr: 0n, perm: 0, type: VHOST_IOTLB_INVALIDATE})
          for (const gone of this.shadow.invalidate(range.start, size)) {
            this.release(gone)
            invalidated += 1
          }
        }
      }
    } else {
      for (const [slot, entry] of this.rfcShadow.state.iotlb.entries()) {
        if (entry.type !== VHOST_IOTLB_UPDATE) continue
        const invalid: IotlbEntry = {...zeroEntry(), iova: entry.iova, type: VHOST_IOTLB_INVALIDATE, valid: VHOST_IOTLB_INVALID}
        this.sys.ioctl(this.requireOpen(), u.VHOST_UPDATE_IOTLB, encodeEntry(invalid))
        this.rfcShadow.updateIotlb(invalid)
        this.replaceRfcSlot(slot, true, undefined)
        invalidated += 1
      }
    }

    return {model: this.info.model, invalidated}
  }

  async probe(): Promise<ProbeResult> {
    const {features, backend, rfc, version} = this.detected
    const backendBit = (n: number) => backend !== null && (backend & bit(n)) !== 0n
    return {
      spec: this.info.spec,
      kind: 'kernel',
      protocol: rfc ? 'rfc' : 'upstream',
      rfc_ioctls: rfc,
      features,
      backend_features: backend,
      access_platform: (features & bit(u.VIRTIO_F_ACCESS_PLATFORM)) !== 0n,
      device_iotlb: (features & bit(u.VHOST_F_DEVICE_IOTLB)) !== 0n,
      // Every upstream kernel with an IOTLB reads v1 envelopes, MSG_V2 acked or not (measured).
      msg_v1: !rfc && ((features & (bit(u.VIRTIO_F_ACCESS_PLATFORM) | bit(u.VHOST_F_DEVICE_IOTLB))) !== 0n),
      msg_v2: backendBit(u.VHOST_BACKEND_F_IOTLB_MSG_V2),
      batch: backendBit(u.VHOST_BACKEND_F_IOTLB_BATCH),
      asid: backendBit(u.VHOST_BACKEND_F_IOTLB_ASID),
      msg_version: version,
      notes: [...this.detected.notes],
    }
  }

  // ---- misses -------------------------------------------------------------------------------

  async listen(options: ListenOptions): Promise<ListenResult> {
    this.requireIotlb()
    if (!this.upstream) return this.listenRfc(options)
    const tally = new ListenTally(options)
    // Misses read earlier (an exercise left unanswered) first: the kernel will not post them again.
    const replay = this.pending.map((miss) => this.missEvent(miss))
    for (;;) {
      const event = replay.shift() ?? this.readEvent()
      if (event) {
        if (await tally.deliver(event)) return tally.result('count')
        continue
      }

      if (!(await this.idle(options.signal))) return tally.result('signal')
    }
  }

  /** Waits a little for the fd without blocking the event loop; false once the signal fired. */
  private async idle(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return false
    try {
      await sleep(POLL_INTERVAL_MS, undefined, {signal})
      return true
    } catch {
      return false
    }
  }

  /**
   * The next message the kernel queued on the fd, as an event; undefined when there is none
   * (poll says not readable, or the non-blocking read says EAGAIN). A MISS is remembered as
   * unanswered until an UPDATE covers it.
   */
  private readEvent(): IotlbEvent | undefined {
    const fd = this.requireOpen()
    const [revents = 0] = this.sys.poll([{fd, events: this.sys.POLLIN}], 0)
    if ((revents & this.sys.POLLIN) === 0) return undefined
    const buf = Buffer.alloc(u.SIZEOF_VHOST_MSG_V2)
    let n: number
    try {
      n = this.sys.read(fd, buf, 'read vhost_msg')
    } catch (error) {
      if (code(error) === 'EAGAIN') return undefined
      throw error
    }

    if (n < u.SIZEOF_VHOST_MSG) throw new DeviceError('read vhost_msg', 'EIO', `the kernel handed out ${n} bytes, expected ${u.SIZEOF_VHOST_MSG}`)
    const raw = Uint8Array.from(buf.subarray(0, n))
    const msg = u.decodeVhostMsg(raw)
    const {iova, perm, type} = msg.iotlb
    if (type === u.VHOST_IOTLB_MISS) {
      const miss: PendingMiss = {iova, access: perm, raw}
      this.pending.push(miss)
      return {...this.missEvent(miss), ...(msg.version === u.VHOST_IOTLB_MSG_V2 ? {asid: msg.asid} : {})}
    }

    if (type === u.VHOST_IOTLB_ACCESS_FAIL) {
      return {type: 'access_fail', iova, perm: accessToRfcPerm(perm), raw, ...(msg.version === u.VHOST_IOTLB_MSG_V2 ? {asid: msg.asid} : {})}
    }

    // Nothing else is posted by any kernel we know of; skip it rather than stop listening.
    return undefined
  }

  private missEvent(miss: PendingMiss): IotlbEvent {
    return {type: 'miss', iova: miss.iova, perm: accessToRfcPerm(miss.access), raw: miss.raw}
  }

  /**
   * The RFC side: the kernel signals the tool's eventfd after writing the request into the
   * tool's buffer. Both must have been set up with `auto`.
   */
  private async listenRfc(options: ListenOptions): Promise<ListenResult> {
    const efd = this.iotlbFd
    const memory = this.requestMem
    if (efd === undefined || memory === undefined) {
      throw new DeviceError(
        'listen',
        'EINVAL',
        'the RFC kernel reports a miss by writing the request into a buffer and signalling an eventfd: run `set-fd auto` and `set-request-entry auto` in this session first',
      )
    }

    const tally = new ListenTally(options)
    for (;;) {
      const [revents = 0] = this.sys.poll([{fd: efd, events: this.sys.POLLIN}], 0)
      if ((revents & this.sys.POLLIN) !== 0) {
        const count = this.sys.eventfdRead(efd)
        const raw = Uint8Array.from(memory.read(0, ENTRY_SIZE))
        const request = decodeEntry(raw)
        // Mirror the kernel's pending_request, so that an UPDATE of this iova completes it here too.
        const state: ModelState = this.rfcShadow.state
        state.pending = cloneEntry(request)
        state.request_bytes = raw
        state.eventfd_signals += Number(count)
        const event: IotlbEvent = {type: 'miss', iova: request.iova, perm: request.perm, raw}
        if (await tally.deliver(event)) return tally.result('count')
        continue
      }

      if (!(await this.idle(options.signal))) return tally.result('signal')
    }
  }

  /**
   * `vhost-iotlb exercise`: makes a real vhost-net device miss (see exercise.ts for the setup)
   * and walks the misses it posts, each answered from `answer` (a map), by `onMiss` (a person in
   * the REPL), or not at all, which ends the run: the kernel then waits for that answer.
   */
  async exercise(options: ExerciseOptions): Promise<ExerciseResult> {
    this.requireIotlb()
    if (!this.upstream) {
      throw new DeviceError('exercise', 'EOPNOTSUPP', 'exercise drives the upstream miss protocol; this kernel speaks the RFC (use translate on a virtqueue instead)')
    }

    if ((this.detected.features & bit(u.VHOST_NET_F_VIRTIO_NET_HDR)) === 0n) {
      throw new DeviceError(
        'exercise',
        'EOPNOTSUPP',
        `exercise needs vhost-net (it attaches a tap backend to a virtqueue); ${this.path} does not offer VHOST_NET_F_VIRTIO_NET_HDR`,
      )
    }

    const fd = this.requireOpen()
    // A second run on the same device starts over: detach, forget the rings' translations.
    if (this.queue?.attached) {
      this.sys.ioctl(fd, u.VHOST_NET_SET_BACKEND, u.encodeVringFile(0, -1))
      this.queue.attached = false
      await this.invalidate({iova: RING.desc, size: RING.span})
      while (this.readEvent()) {
        // Stale messages from the last kick: their answers would land on the old rings.
      }

      this.pending = this.pending.filter((miss) => miss.iova < RING.desc || miss.iova >= RING.desc + RING.span)
    }

    const {queue, setup} = await setUpQueue({
      sys: this.sys,
      fd,
      queue: this.queue,
      mapUsed: (iova, size) => this.update({iova, size, userspace_addr: 'auto', perm: 0x11, type: VHOST_IOTLB_UPDATE, valid: true}),
    })
    this.queue = queue
    await options.onSetup?.(setup)
    const count = options.count
    if (count === 0) return {setup, events: 0, answered: 0, stopped: 'count'}
    const quietMs = options.quietMs ?? DEFAULT_QUIET_MS
    let events = 0
    let answered = 0
    let waitMs = FIRST_MISS_WAIT_MS
    let silentSince = Date.now()
    for (;;) {
      const event = this.readEvent()
      if (!event) {
        const silent = Date.now() - silentSince
        if (silent >= waitMs) return {setup, events, answered, stopped: 'quiet', quiet_ms: silent}
        if (!(await this.idle(options.signal))) return {setup, events, answered, stopped: 'signal'}
        continue
      }

      events += 1
      let answer: UpdateResult | undefined
      let done = false
      if (options.answer) {
        answer = await options.answer(event)
        done = answer !== undefined
      } else if (options.onMiss && event.type === 'miss') {
        done = await askPerson(options.onMiss, event)
      }

      await options.onEvent(event, answer)
      if (done) answered += 1
      if (count !== undefined && events >= count) return {setup, events, answered, stopped: 'count'}
      if (event.type === 'miss' && !done) return {setup, events, answered, stopped: 'unanswered'}
      waitMs = quietMs
      silentSince = Date.now()
    }
  }

  // ---- memory and teardown ------------------------------------------------------------------

  /** The kernel dropped this range: its memory is the tool's again. */
  private release(range: ShadowRange<Memory>): void {
    if (range.backing) this.retire(range.backing)
  }

  /**
   * Unmaps memory the kernel no longer refers to. With a granted fd the device outlives this
   * process's use of it, so memory is only unmapped once the kernel has been told to drop it;
   * here that is already the case, so both paths unmap now.
   */
  private retire(memory: Memory): void {
    memory.unmap()
  }

  async flush(): Promise<void> {
    // Every operation is already in the kernel; nothing to save.
  }

  /**
   * Closes the device. The vhost fd goes first: releasing it stops the worker and frees the
   * IOTLB, after which no kernel path can touch the tool's memory, and only then is it unmapped.
   * A granted fd outlives this process's copy, so everything this tool mapped is invalidated
   * before its memory goes.
   */
  async close(): Promise<void> {
    if (this.fd < 0) return
    const fd = this.fd
    let failure: unknown
    if (this.granted) {
      try {
        if (this.queue?.attached) this.sys.ioctl(fd, u.VHOST_NET_SET_BACKEND, u.encodeVringFile(0, -1))
        await this.reset()
      } catch (error) {
        // The device refused: keep the memory mapped, since the kernel may still point at it.
        failure = error
        this.retired.push(...this.shadow.clear().flatMap((range) => (range.backing ? [range.backing] : [])))
      }
    }

    this.fd = -1
    for (const other of [fd, this.queue?.kick, this.queue?.call, this.queue?.tap, this.iotlbFd]) {
      if (other === undefined) continue
      try {
        this.sys.close(other)
      } catch (error) {
        failure ??= error
      }
    }

    if (!(this.granted && failure)) {
      for (const range of this.shadow.clear()) this.release(range)
      for (const memory of this.rfcBacking.values()) memory.unmap()
      this.requestMem?.unmap()
    }

    this.rfcBacking.clear()
    if (failure) throw failure
  }
}

/** The REPL answers a miss by running an `update` line; true once that UPDATE completed it. */
function askPerson(onMiss: MissHandler, event: IotlbEvent): Promise<boolean> {
  return onMiss({...zeroEntry(), iova: event.iova, perm: event.perm, type: VHOST_IOTLB_MISS})
}

/** A shadow range as the RFC entry the rest of the tool prints. */
function rangeEntry(range: ShadowRange): IotlbEntry {
  return {
    iova: range.start,
    size: range.last - range.start + 1n,
    userspace_addr: range.uaddr,
    perm: accessToRfcPerm(range.perm),
    type: VHOST_IOTLB_UPDATE,
    valid: VHOST_IOTLB_VALID,
    u8_padding: 0,
    padding: 0,
  }
}

/** The fd for `path`: opened O_RDWR | O_NONBLOCK, or a duplicate of a granted one. */
function openFd(sys: Sys, path: string): {fd: number; granted: boolean} {
  const granted = GRANTED_FD.exec(path)
  if (granted) {
    const number = Number(granted[1])
    if (!Number.isSafeInteger(number) || number > 0x7fff_ffff) throw new UsageError(`--device ${path}: ${granted[1]} is not a file descriptor number`)
    let fd: number
    try {
      // Our own copy, so closing the device never closes the descriptor the caller handed over.
      fd = sys.fcntl(number, sys.F_DUPFD_CLOEXEC, 0, `fcntl ${path}`)
    } catch (error) {
      if (code(error) === 'EBADF') {
        throw new DeviceError(`fcntl ${path}`, 'EBADF', `file descriptor ${number} is not open in this process: a granted fd must be inherited, e.g. \`vhost-iotlb ... 3<>/dev/vhost-net\``, {cause: error})
      }

      throw error
    }

    try {
      // Misses are read until EAGAIN, which needs a non-blocking fd (this also sets it for the
      // process that granted the fd: they share the open file).
      const flags = sys.fcntl(fd, sys.F_GETFL, 0, `fcntl ${path}`)
      sys.fcntl(fd, sys.F_SETFL, flags | sys.O_NONBLOCK, `fcntl ${path}`)
    } catch (error) {
      sys.close(fd)
      throw error
    }

    return {fd, granted: true}
  }

  try {
    // O_NOCTTY: a mistaken path to a terminal must not become this process's controlling tty.
    return {fd: sys.open(path, sys.O_RDWR | sys.O_NONBLOCK | sys.O_CLOEXEC | sys.O_NOCTTY), granted: false}
  } catch (error) {
    const errno = code(error)
    if (errno === 'ENOENT' || errno === 'ENXIO' || errno === 'ENODEV') throw new NoSuchDeviceError(path, errno, {cause: error})
    if (errno === 'EACCES' || errno === 'EPERM') throw new DevicePermissionError(path, errno, {cause: error})
    if (errno === 'EISDIR') throw new NotVhostError(path, `open ${path}`, errno, {cause: error})
    throw error
  }
}

function getU64(sys: Sys, fd: number, request: number): bigint {
  const buf = Buffer.alloc(8)
  sys.ioctl(fd, request, buf)
  return buf.readBigUInt64LE()
}

function setU64(sys: Sys, fd: number, request: number, value: bigint): void {
  const buf = Buffer.alloc(8)
  buf.writeBigUInt64LE(value)
  sys.ioctl(fd, request, buf)
}

/** Takes ownership, reads what the device offers and settles the protocol (see the module header). */
function negotiate(sys: Sys, fd: number, path: string, forced: 1 | 2 | undefined): Detected {
  try {
    sys.ioctl(fd, u.VHOST_SET_OWNER)
  } catch (error) {
    const errno = code(error)
    // Drivers answer an ioctl they do not know with ENOTTY (most) or EINVAL (some).
    if (errno === 'ENOTTY' || errno === 'EINVAL') throw new NotVhostError(path, 'VHOST_SET_OWNER', errno, {cause: error})
    if (errno === 'EBUSY') throw new OwnerBusyError(path, {cause: error})
    throw error
  }

  let features: bigint
  try {
    features = getU64(sys, fd, u.VHOST_GET_FEATURES)
  } catch (error) {
    if (code(error) === 'ENOTTY') throw new NotVhostError(path, 'VHOST_GET_FEATURES', 'ENOTTY', {cause: error})
    throw error
  }

  const notes: string[] = [`this process owns ${path} (VHOST_SET_OWNER); its IOTLB lives as long as this process keeps the fd open`]
  let backend: bigint | null = null
  try {
    backend = getU64(sys, fd, u.VHOST_GET_BACKEND_FEATURES)
  } catch (error) {
    if (code(error) !== 'ENOTTY') throw error
    notes.push('VHOST_GET_BACKEND_FEATURES: ENOTTY (no backend features: messages are v1 only)')
  }

  // A zeroed entry: type 0 is EINVAL in the patch and changes nothing; its first u32 (the iova)
  // is 0, so a stock kernel's per-ring fallback sees ring 0 and answers ENOTTY, not ENOBUFS.
  let rfc = false
  try {
    sys.ioctl(fd, u.VHOST_UPDATE_IOTLB, Buffer.alloc(u.SIZEOF_VHOST_IOTLB_ENTRY))
    rfc = true
  } catch (error) {
    const errno = code(error)
    if (errno === 'EINVAL') rfc = true
    else if (errno === 'ENOTTY') notes.push('kernel does not implement the RFC ioctls (VHOST_UPDATE_IOTLB with a zeroed entry: ENOTTY)')
    else if (errno !== undefined) notes.push(`RFC ioctls: VHOST_UPDATE_IOTLB with a zeroed entry gave ${errno}; taken as absent`)
    else throw error
  }

  if (rfc) {
    notes.push('kernel implements the RFC ioctls (VHOST_UPDATE_IOTLB rejected a zeroed entry with EINVAL, as the patch does); no feature negotiation')
    return {features, backend, rfc, acked: null, version: null, notes}
  }

  const iotlbBits = features & (bit(u.VIRTIO_F_ACCESS_PLATFORM) | bit(u.VHOST_F_DEVICE_IOTLB))
  if (iotlbBits === 0n) {
    notes.push(
      `no device IOTLB: features 0x${features.toString(16)} have neither VIRTIO_F_ACCESS_PLATFORM (bit 33) nor VHOST_F_DEVICE_IOTLB (bit 63); update, invalidate, listen and exercise will refuse`,
    )
    return {features, backend, rfc, acked: null, version: null, notes}
  }

  const acked = iotlbBits | (features & bit(u.VIRTIO_F_VERSION_1))
  setU64(sys, fd, u.VHOST_SET_FEATURES, acked)
  notes.push(`acked features 0x${acked.toString(16)} (VHOST_SET_FEATURES): the device IOTLB is on`)
  const v2 = backend !== null && (backend & bit(u.VHOST_BACKEND_F_IOTLB_MSG_V2)) !== 0n
  if (forced === 2 && !v2) throw new UsageError(`VHOST_IOTLB_MSG_VERSION=2: ${path} does not offer VHOST_BACKEND_F_IOTLB_MSG_V2`)
  let version: 1 | 2 = 1
  if (v2 && forced !== 1) {
    setU64(sys, fd, u.VHOST_SET_BACKEND_FEATURES, bit(u.VHOST_BACKEND_F_IOTLB_MSG_V2))
    version = 2
    notes.push('acked VHOST_BACKEND_F_IOTLB_MSG_V2: messages are vhost_msg_v2 both ways (VHOST_IOTLB_MSG_VERSION=1 forces v1)')
  } else {
    notes.push(v2 ? 'MSG_V2 on offer but not acked (VHOST_IOTLB_MSG_VERSION=1): messages are vhost_msg (v1)' : 'messages are vhost_msg (v1)')
  }

  notes.push('the kernel cannot be asked what its IOTLB holds: dump and translate show a shadow of what this tool wrote')
  return {features, backend, rfc, acked, version, notes}
}

/** EFAULT and EINVAL from a message write, with what the kernel folds into them. */
function explainWriteError(error: unknown, call: string, msg: u.VhostIotlbMsg): unknown {
  if (!(error instanceof SyscallError)) return error
  if (error.code === 'EFAULT') {
    return new DeviceError(
      call,
      'EFAULT',
      `Bad address: the kernel rejected [${hex(msg.iova)}, +${hex(msg.size)}) -> ${hex(msg.uaddr)}; its message handler reports every refusal as EFAULT (a range that wraps, a uaddr outside user memory, a type it does not take, no IOTLB)`,
      {cause: error},
    )
  }

  if (error.code === 'EINVAL' && msg.size === 0n) {
    return new DeviceError(call, 'EINVAL', 'Invalid argument: the kernel refuses a message with size 0', {cause: error})
  }

  return error
}
