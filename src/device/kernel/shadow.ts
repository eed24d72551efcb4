/**
 * The tool's record of what it wrote to a real device's IOTLB: a *shadow*, because no vhost
 * kernel can be asked what its IOTLB holds. `dump` and `translate` on a real device read this.
 *
 * Upstream vhost (drivers/vhost/iotlb.c, vhost.c; checked against 6.1) keeps the device IOTLB as
 * an interval tree of ranges `[start, last]`, each mapping to a user address with an access
 * permission, and a list of the same ranges in insertion order:
 *
 * - UPDATE adds `[iova, iova + size - 1]` with no overlap check. When the tree already holds
 *   `max_iotlb_entries` ranges (module parameter of vhost, default 2048) the oldest is dropped
 *   first (VHOST_IOTLB_FLAG_RETIRE).
 * - INVALIDATE removes every range that overlaps `[iova, iova + size - 1]`, computed in u64, and
 *   splits none. With iova 0 and size 0 the end wraps to 2^64 - 1: everything goes. (6.1 takes
 *   size 0 for INVALIDATE; kernels from 5.17 until the 2023 fix refused it with EINVAL.)
 * - A lookup takes the overlapping range with the lowest start (the oldest, on a tie, since equal
 *   keys go right in the tree); if it starts after the address, that is a miss.
 *
 * Only what the kernel accepted is recorded here, so the rejections (size 0, a range that wraps,
 * a bad uaddr) never reach the shadow. The kernel's own split of `[0, 2^64 - 1]` into two ranges
 * cannot happen through a message: it needs size 2^64, and UPDATE with size 0 is refused first.
 *
 * Pure: no FFI. Each range can carry the memory backing it, so the caller can release that memory
 * exactly when the kernel stops referring to it (invalidated or evicted).
 *
 * @module
 */
import type {IovSegment} from '../device.js'
import {U64_MAX, VHOST_IOTLB_PERM_READ, VHOST_IOTLB_PERM_WRITE, u64} from '../entry.js'

/** vhost's `max_iotlb_entries` default, used when the module parameter cannot be read. */
export const MAX_IOTLB_ENTRIES = 2048
/** `UIO_MAXIOV`: a virtqueue's iovec array, the most segments one translation may produce. */
export const UIO_MAXIOV = 1024

/** Upstream access bits (`VHOST_ACCESS_RO/WO/RW`, the same values as `VHOST_MAP_*`). */
export const ACCESS_RO = 0x1
export const ACCESS_WO = 0x2

/**
 * The RFC's perm bits (READ 0x1, WRITE 0x10), which the command line speaks, as an upstream
 * access value (RO 1, WO 2, RW 3). Undefined for bits outside the RFC's two.
 */
export function rfcPermToAccess(perm: number): number | undefined {
  if ((perm & ~(VHOST_IOTLB_PERM_READ | VHOST_IOTLB_PERM_WRITE)) !== 0) return undefined
  return (perm & VHOST_IOTLB_PERM_READ ? ACCESS_RO : 0) | (perm & VHOST_IOTLB_PERM_WRITE ? ACCESS_WO : 0)
}

/** An upstream access value as the RFC's perm bits, so results print the same names everywhere. */
export function accessToRfcPerm(access: number): number {
  return (access & ACCESS_RO ? VHOST_IOTLB_PERM_READ : 0) | (access & ACCESS_WO ? VHOST_IOTLB_PERM_WRITE : 0)
}

/** One range as the kernel holds it (`struct vhost_iotlb_map`), plus the tool's bookkeeping. */
export interface ShadowRange<B = unknown> {
  /** The nth range this tool added: a stable name for it (shown as `slot`). */
  seq: number
  start: bigint
  last: bigint
  uaddr: bigint
  /** Upstream access bits. */
  perm: number
  /** What backs the range in this process, if the tool allocated it. */
  backing?: B
}

export type ShadowTranslation =
  | {status: 'ok'; iov: IovSegment[]}
  | {status: 'miss'; iova: bigint}
  | {status: 'fault'; errno: string; reason: string}

const hex = (value: bigint) => `0x${value.toString(16)}`

/** Do `[a.start, a.last]` and `[start, last]` overlap, as the interval tree's search tests it. */
function overlaps(range: ShadowRange, start: bigint, last: bigint): boolean {
  return range.start <= last && range.last >= start
}

export class UpstreamShadow<B = unknown> {
  /** Insertion order: the kernel's retire list, oldest first. */
  private list: Array<ShadowRange<B>> = []
  private nextSeq = 1

  /** `limit` 0 means unlimited, as the kernel treats it. */
  constructor(readonly limit: number = MAX_IOTLB_ENTRIES) {}

  get size(): number {
    return this.list.length
  }

  /** Every range, oldest first. */
  ranges(): ReadonlyArray<ShadowRange<B>> {
    return this.list
  }

  bySeq(seq: number): ShadowRange<B> | undefined {
    return this.list.find((range) => range.seq === seq)
  }

  /**
   * Records an UPDATE the kernel accepted: `size` > 0 and `iova + size` within 2^64. Returns the
   * new range and the ones retired to make room for it.
   */
  add(iova: bigint, size: bigint, uaddr: bigint, perm: number, backing?: B): {range: ShadowRange<B>; evicted: Array<ShadowRange<B>>} {
    if (size === 0n || iova + size - 1n > U64_MAX) {
      throw new RangeError(`the kernel refuses [${hex(iova)}, +${hex(size)}): it cannot be in the shadow`)
    }

    const evicted: Array<ShadowRange<B>> = []
    // vhost_iotlb_add_range_ctx(): retire the oldest when full, then insert.
    if (this.limit > 0 && this.list.length >= this.limit) evicted.push(this.list.shift()!)
    const range: ShadowRange<B> = {seq: this.nextSeq++, start: iova, last: iova + size - 1n, uaddr, perm, backing}
    this.list.push(range)
    return {range, evicted}
  }

  /** Records an INVALIDATE the kernel accepted; returns the ranges it removed, oldest first. */
  invalidate(iova: bigint, size: bigint): Array<ShadowRange<B>> {
    const last = u64(iova + size - 1n)
    const removed = this.list.filter((range) => overlaps(range, iova, last))
    if (removed.length > 0) this.list = this.list.filter((range) => !overlaps(range, iova, last))
    return removed
  }

  /** Forgets everything (the device was closed or reset). Returns what was there. */
  clear(): Array<ShadowRange<B>> {
    const all = this.list
    this.list = []
    return all
  }

  /** `vhost_iotlb_itree_first(start, last)`: the overlapping range with the lowest start. */
  first(start: bigint, last: bigint): ShadowRange<B> | undefined {
    let best: ShadowRange<B> | undefined
    for (const range of this.list) {
      // Strictly lower only: on equal starts the older range, met first here, stays.
      if (overlaps(range, start, last) && (best === undefined || range.start < best.start)) best = range
    }

    return best
  }

  /**
   * `translate_desc()` over the shadow for `len` bytes at `iova`: the iovecs the kernel would
   * build, or where it would ask for a translation (a MISS at that exact address, not its page).
   * A range without any access bit faults as the kernel's permission check would (EPERM).
   */
  translate(iova: bigint, len: bigint, maxIov = UIO_MAXIOV): ShadowTranslation {
    const iov: IovSegment[] = []
    const last = u64(iova + len - 1n)
    let addr = iova
    let s = 0n
    while (len > s) {
      if (iov.length >= maxIov) return {status: 'fault', errno: 'ENOBUFS', reason: `the ${maxIov}-entry iovec array is full`}
      const range = this.first(addr, last)
      if (range === undefined || range.start > addr) return {status: 'miss', iova: addr}
      if (range.perm === 0) {
        return {
          status: 'fault',
          errno: 'EPERM',
          reason: `the range [${hex(range.start)}, ${hex(range.last)}] has no access bits: the kernel refuses every access through it`,
        }
      }

      // What is left of the range from addr; the kernel's `map->size - addr + map->start`.
      const size = range.last - addr + 1n
      const remaining = len - s
      iov.push({iova: addr, userspace_addr: u64(range.uaddr + (addr - range.start)), len: remaining < size ? remaining : size})
      s += size
      addr = u64(addr + size)
    }

    return {status: 'ok', iov}
  }
}
