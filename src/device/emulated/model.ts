/**
 * The RFC device, line for line: `vhost_dev_init()`'s IOTLB part, the three IOTLB cases of
 * `vhost_dev_ioctl()`, `vhost_iotlb_miss()` and `translate_iotlb()` from "vhost: basic device
 * IOTLB support". Pure and synchronous: no files, no printing.
 *
 * Two models share the code:
 * - `rfc` reproduces the patch exactly, defects included, and reports each result a known defect
 *   changed as a {@link Warning}.
 * - `fixed` computes the remaining length of the hit entry from its iova (the evident intent),
 *   faults on an IOVA at or past the entry's end, and posts miss requests without stale fields.
 *
 * One departure is forced by running as one-shot commands: the kernel's miss path sleeps in
 * `wait_for_completion_interruptible()`. Here a miss is posted and reported, the walk stops, and
 * the caller may answer it and {@link TranslateWalk.resume} the walk, as the woken waiter would.
 */
import type {IovSegment, TranslateResult, Warning} from '../device.js'
import {
  ENTRY_SIZE,
  type IotlbEntry,
  type ModelName,
  PAGE_MASK,
  PAGE_SIZE,
  USER_ADDR_MAX,
  VHOST_IOTLB_INVALIDATE,
  VHOST_IOTLB_MISS,
  VHOST_IOTLB_SIZE,
  VHOST_IOTLB_UPDATE,
  VHOST_IOTLB_VALID,
  cloneEntry,
  encodeEntry,
  initialSlot,
  iotlbHash,
  u64,
  zeroEntry,
} from '../entry.js'
import {DeviceError} from '../errors.js'

/** `UIO_MAXIOV`: the size of a virtqueue's iovec array, so the most one translation may fill. */
export const UIO_MAXIOV = 1024
/** translate_iotlb() takes `u32 len`. */
export const LEN_MAX = 0xffff_ffffn

/** Everything the patch adds to `struct vhost_dev`, as data. */
export interface ModelState {
  model: ModelName
  /** `iotlb[VHOST_IOTLB_SIZE]` */
  iotlb: IotlbEntry[]
  /** The eventfd number given to VHOST_SET_IOTLB_FD, or null (`iotlb_ctx == NULL`). */
  iotlb_fd: number | null
  /** How many times `eventfd_signal(iotlb_ctx, 1)` ran. */
  eventfd_signals: number
  /** `iotlb_request`: the user address given to VHOST_SET_IOTLB_REQUEST_ENTRY. */
  request_entry: bigint | null
  /** The 32 bytes the last `copy_to_user()` wrote at the request entry. */
  request_bytes: Uint8Array | null
  /** `pending_request` */
  pending: IotlbEntry
}

export function freshState(model: ModelName): ModelState {
  // vhost_dev_init(): pending_request.flags.type = INVALIDATE; every slot flags.valid = INVALID.
  const pending = zeroEntry()
  pending.type = VHOST_IOTLB_INVALIDATE
  return {
    model,
    iotlb: Array.from({length: VHOST_IOTLB_SIZE}, initialSlot),
    iotlb_fd: null,
    eventfd_signals: 0,
    request_entry: null,
    request_bytes: null,
    pending,
  }
}

export type MissOutcome = {posted: true; request: IotlbEntry; warnings: Warning[]} | {posted: false; reason: string}

export class RfcIotlb {
  constructor(readonly state: ModelState) {}

  /** A miss request is outstanding: `pending_request.flags.type == VHOST_IOTLB_MISS`. */
  get waiting(): boolean {
    return this.state.pending.type === VHOST_IOTLB_MISS
  }

  /** VHOST_SET_IOTLB_FD. `eventfd_fget()` cannot be checked against another process's table. */
  setIotlbFd(fd: number): number | null {
    this.state.iotlb_fd = fd === -1 ? null : fd
    return this.state.iotlb_fd
  }

  /** VHOST_SET_IOTLB_REQUEST_ENTRY: `access_ok()` for 32 bytes, else EFAULT and nothing changes. */
  setRequestEntry(address: bigint): bigint {
    if (address + BigInt(ENTRY_SIZE) > USER_ADDR_MAX) {
      throw new DeviceError(
        'VHOST_SET_IOTLB_REQUEST_ENTRY',
        'EFAULT',
        `access_ok() fails: 0x${address.toString(16)} + ${ENTRY_SIZE} passes the user address limit 0x${USER_ADDR_MAX.toString(16)}`,
      )
    }

    this.state.request_entry = address
    return address
  }

  /**
   * VHOST_UPDATE_IOTLB. UPDATE overwrites the slot; INVALIDATE overwrites it only when the slot's
   * iova equals the entry's; any other type is EINVAL. A successful non-INVALIDATE completes the
   * pending miss when the iova matches exactly.
   */
  updateIotlb(entry: IotlbEntry): {slot: number; written: boolean; completed: boolean} {
    const slot = iotlbHash(entry.iova)
    let written = false
    switch (entry.type) {
      case VHOST_IOTLB_UPDATE: {
        this.state.iotlb[slot] = cloneEntry(entry)
        written = true
        break
      }

      case VHOST_IOTLB_INVALIDATE: {
        if (this.state.iotlb[slot]!.iova === entry.iova) {
          this.state.iotlb[slot] = cloneEntry(entry)
          written = true
        }

        break
      }

      default: {
        throw new DeviceError('VHOST_UPDATE_IOTLB', 'EINVAL', `flags.type ${entry.type} is neither UPDATE (2) nor INVALIDATE (3)`)
      }
    }

    let completed = false
    if (entry.type !== VHOST_IOTLB_INVALIDATE && entry.iova === this.state.pending.iova && this.waiting) {
      this.state.pending = cloneEntry(entry)
      completed = true
    }

    return {slot, written, completed}
  }

  /** vhost_iotlb_miss() up to the wait: post a request for the page of `iova`, or say why not. */
  postMiss(iova: bigint): MissOutcome {
    const s = this.state
    if (s.iotlb_fd === null) return {posted: false, reason: 'no eventfd set (VHOST_SET_IOTLB_FD)'}
    if (s.request_entry === null) return {posted: false, reason: 'no request entry set (VHOST_SET_IOTLB_REQUEST_ENTRY)'}
    if (this.waiting) {
      return {posted: false, reason: `a miss for 0x${s.pending.iova.toString(16)} is already outstanding`}
    }

    const warnings: Warning[] = []
    if (s.model === 'fixed') {
      s.pending = {...zeroEntry(), iova: iova & PAGE_MASK, type: VHOST_IOTLB_MISS}
    } else {
      // The patch sets only iova and type: the rest is whatever the last completion left there.
      const previous = s.pending
      s.pending = {...previous, iova: iova & PAGE_MASK, type: VHOST_IOTLB_MISS}
      const stale = staleFields(previous)
      if (stale.length > 0) {
        warnings.push({
          code: 'stale-request-fields',
          message: `the miss request carries stale ${stale.join(', ')} from the previous pending request (vhost_iotlb_miss sets only iova and type)`,
        })
      }
    }

    s.request_bytes = encodeEntry(s.pending)
    s.eventfd_signals += 1
    return {posted: true, request: cloneEntry(s.pending), warnings}
  }

  }

function staleFields(entry: IotlbEntry): string[] {
  const fields: string[] = []
  if (entry.size !== 0n) fields.push(`size 0x${entry.size.toString(16)}`)
  if (entry.userspace_addr !== 0n) fields.push(`userspace_addr 0x${entry.userspace_addr.toString(16)}`)
  if (entry.perm !== 0) fields.push(`perm 0x${entry.perm.toString(16)}`)
  if (entry.valid !== 0) fields.push(`valid 0x${entry.valid.toString(16)}`)
  if (entry.u8_padding !== 0 || entry.padding !== 0) fields.push('padding')
  return fields
}

/**
 * translate_iotlb()'s loop, stoppable where the kernel would sleep. `run()` walks until done, a
 * fault, or a posted miss; after the miss is answered `resume()` continues with the completed
 * `pending_request`, exactly as the woken waiter reads it.
 */
export class TranslateWalk {
  private readonly start: bigint
  private s = 0n
  private ret = 0
  private readonly iov: IovSegment[] = []
  private readonly warnings: Warning[] = []
  private missAt: bigint | undefined

  /** The device in use for this step: a one-shot command reloads it between steps. */
  private dev!: RfcIotlb

  constructor(
    private iova: bigint,
    private readonly len: bigint,
    private readonly iovSize = UIO_MAXIOV,
  ) {
    this.start = iova
  }

  run(dev: RfcIotlb): TranslateResult {
    this.dev = dev
    const {iotlb} = dev.state
    while (this.len > this.s) {
      if (this.ret >= this.iovSize) return this.fault('ENOBUFS', `the ${this.iovSize}-entry iovec array is full`)
      const entry = iotlb[iotlbHash(this.iova)]!
      if (entry.iova !== (this.iova & PAGE_MASK) || entry.valid !== VHOST_IOTLB_VALID) {
        const miss = this.dev.postMiss(this.iova)
        if (!miss.posted) return this.fault('EFAULT', `miss at 0x${this.iova.toString(16)}: ${miss.reason}`)
        this.warnings.push(...miss.warnings)
        this.missAt = this.iova
        return {
          status: 'miss',
          iova: miss.request.iova,
          request: miss.request,
          request_bytes: this.dev.state.request_bytes!,
          ...this.withWarnings(),
        }
      }

      const fault = this.consume(entry)
      if (fault) return fault
    }

    return {status: 'ok', iova: this.start, len: this.len, iov: this.iov, ...this.withWarnings()}
  }

  /** Continues after the posted miss was completed (or not) by an UPDATE. */
  resume(dev: RfcIotlb): TranslateResult {
    if (this.missAt === undefined) throw new Error('resume() without a posted miss')
    this.dev = dev
    const iova = this.missAt
    this.missAt = undefined
    const miss = this.dev.state.pending
    if (miss.valid !== VHOST_IOTLB_VALID || miss.iova !== (iova & PAGE_MASK)) {
      return this.fault('EFAULT', `the answer to the miss at 0x${iova.toString(16)} is not a valid entry for that page`)
    }

    // `entry = &miss`: the completed request itself, not the slot, serves this step.
    const fault = this.consume(cloneEntry(miss))
    return fault ?? this.run(dev)
  }

  /** One hit: the loop body after the lookup. */
  private consume(entry: IotlbEntry): TranslateResult | undefined {
    const iova = this.iova
    const rfcSize = u64(entry.userspace_addr + entry.size - iova)
    const end = entry.iova + entry.size
    let size = rfcSize
    if (this.dev.state.model === 'fixed') {
      if (iova >= end) {
        return this.fault('EFAULT', `0x${iova.toString(16)} is at or past the end 0x${end.toString(16)} of the entry it hits`)
      }

      size = end - iova
    } else {
      this.noteArithmetic(entry, rfcSize, end)
    }

    const remaining = this.len - this.s
    this.iov.push({
      iova,
      userspace_addr: u64(entry.userspace_addr + (iova & (PAGE_SIZE - 1n))),
      len: remaining < size ? remaining : size,
    })
    this.s = u64(this.s + size)
    this.iova = u64(this.iova + size)
    this.ret += 1
    return undefined
  }

  private noteArithmetic(entry: IotlbEntry, rfcSize: bigint, end: bigint): void {
    const iova = this.iova
    const remaining = this.len - this.s
    const got = remaining < rfcSize ? remaining : rfcSize
    if (iova >= end) {
      this.warnings.push({
        code: 'size-arithmetic',
        message: `iov[${this.ret}] at 0x${iova.toString(16)}: the entry ends at 0x${end.toString(16)}, but userspace_addr + size - iova gives 0x${rfcSize.toString(16)} bytes; the fixed model faults`,
      })
      return
    }

    const want = end - iova
    const fixedLen = remaining < want ? remaining : want
    // Equal lengths mean the loop ends alike too: a step of at least `remaining` finishes it.
    if (got !== fixedLen) {
      const wrapped = entry.userspace_addr + entry.size < iova ? ' (wrapped around 2^64)' : ''
      this.warnings.push({
        code: 'size-arithmetic',
        message: `iov[${this.ret}] at 0x${iova.toString(16)}: userspace_addr + size - iova gives 0x${rfcSize.toString(16)}${wrapped} where the entry has 0x${want.toString(16)} bytes left; len 0x${got.toString(16)} instead of 0x${fixedLen.toString(16)}`,
      })
    }
  }

  private fault(errno: string, reason: string): TranslateResult {
    return {status: 'fault', errno, reason, ...this.withWarnings()}
  }

  private withWarnings(): {warnings?: Warning[]} {
    return this.warnings.length > 0 ? {warnings: [...this.warnings]} : {}
  }
}

