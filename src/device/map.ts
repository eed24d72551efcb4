/**
 * A map file: the IOVA ranges a listener answers misses from, the way QEMU answers from its
 * vIOMMU. One range per line, `#` comments:
 *
 * ```
 * # iova      size   perm   [userspace_addr]
 * 0x100000    64k    rw
 * 0x200000    2m     ro     0x7f0000200000
 * ```
 *
 * Without a userspace_addr a real device backs the answer with memory the tool allocates; the
 * emulated device needs the address the kernel would use.
 */
import * as z from 'zod/mini'

import {PAGE_MASK, PAGE_SIZE, permSchema, sizeSchema, u64Schema} from './entry.js'
import {UsageError} from './errors.js'

export interface MapRange {
  iova: bigint
  size: bigint
  perm: number
  userspace_addr?: bigint
  line: number
}

const lineSchema = z.tuple([u64Schema('iova'), sizeSchema('size'), permSchema('perm')], u64Schema('userspace_addr'))

export function parseMap(text: string, name: string): MapRange[] {
  const ranges: MapRange[] = []
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') continue
    const fields = line.split(/\s+/)
    const where = `${name}:${index + 1}`
    if (fields.length < 3 || fields.length > 4) {
      throw new UsageError(`${where}: expected IOVA SIZE PERM [USERSPACE_ADDR], got ${fields.length} field${fields.length === 1 ? '' : 's'}`)
    }

    const parsed = lineSchema.safeParse(fields)
    if (!parsed.success) throw new UsageError(`${where}: ${parsed.error.issues[0]!.message}`)
    const [iova, size, perm, userspace_addr] = parsed.data
    if (size === 0n) throw new UsageError(`${where}: size: a range cannot be empty`)
    if (iova + size > 1n << 64n) throw new UsageError(`${where}: the range passes the end of the 64-bit IOVA space`)
    ranges.push({iova, size, perm, userspace_addr, line: index + 1})
  }

  return ranges
}

export interface Answer {
  iova: bigint
  size: bigint
  userspace_addr: bigint | 'auto'
  perm: number
  range: MapRange
}

/**
 * The UPDATE that answers a miss at `iova`: its page, clipped to the range, with the address at
 * the same offset into the range. Undefined when no range covers the IOVA.
 */
export function answerFor(ranges: readonly MapRange[], iova: bigint): Answer | undefined {
  const range = ranges.find((r) => iova >= r.iova && iova < r.iova + r.size)
  if (!range) return undefined
  const start = (iova & PAGE_MASK) < range.iova ? range.iova : iova & PAGE_MASK
  const pageEnd = (iova & PAGE_MASK) + PAGE_SIZE
  const end = pageEnd < range.iova + range.size ? pageEnd : range.iova + range.size
  const userspace_addr = range.userspace_addr === undefined ? 'auto' : range.userspace_addr + (start - range.iova)
  return {iova: start, size: end - start, userspace_addr, perm: range.perm, range}
}
