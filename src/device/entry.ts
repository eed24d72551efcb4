/**
 * The RFC's `struct vhost_iotlb_entry` (include/uapi/linux/vhost.h in the patch) and the
 * number syntax every edge of the tool accepts.
 *
 * ```c
 * struct vhost_iotlb_entry {
 *     __u64 iova; __u64 size; __u64 userspace_addr;
 *     struct { __u8 perm; __u8 type; __u8 valid; __u8 u8_padding; __u32 padding; } flags;
 * };  // 32 bytes, little-endian on x86-64
 * ```
 *
 * Entries are kept raw (u8 flag bytes, bigint u64s) so that what the tool stores, prints and
 * hands to a kernel is exactly what the patch would hold; names are a presentation concern.
 *
 * Only `zod/mini` is used here: this module is on every command's start-up path, and the full
 * zod build costs more to load than the rest of a one-shot command put together.
 */
import * as z from 'zod/mini'

export const PAGE_SHIFT = 12n
export const PAGE_SIZE = 1n << PAGE_SHIFT
export const U64_MAX = (1n << 64n) - 1n
/** `PAGE_MASK` as a u64: clears the offset within a page. */
export const PAGE_MASK = U64_MAX ^ (PAGE_SIZE - 1n)
/** `VHOST_IOTLB_SIZE`: slots in the device's hash array. */
export const VHOST_IOTLB_SIZE = 1024
/** `sizeof(struct vhost_iotlb_entry)`. */
export const ENTRY_SIZE = 32
/** x86-64 `TASK_SIZE_MAX` with 4-level paging, the limit `access_ok()` checks against. */
export const USER_ADDR_MAX = 0x7ffffffff000n

export const VHOST_IOTLB_PERM_READ = 0x1
export const VHOST_IOTLB_PERM_WRITE = 0x10
export const VHOST_IOTLB_MISS = 1
export const VHOST_IOTLB_UPDATE = 2
export const VHOST_IOTLB_INVALIDATE = 3
export const VHOST_IOTLB_INVALID = 0x1
export const VHOST_IOTLB_VALID = 0x2

/** One `struct vhost_iotlb_entry`, field for field. */
export interface IotlbEntry {
  iova: bigint
  size: bigint
  userspace_addr: bigint
  perm: number
  type: number
  valid: number
  u8_padding: number
  padding: number
}

/** `vhost_iotlb_hash()`: the slot an IOVA lands in. */
export function iotlbHash(iova: bigint): number {
  return Number((iova >> PAGE_SHIFT) & BigInt(VHOST_IOTLB_SIZE - 1))
}

/** Arithmetic on `u64` as C does it: modulo 2^64. */
export function u64(value: bigint): bigint {
  return value & U64_MAX
}

export function zeroEntry(): IotlbEntry {
  return {iova: 0n, size: 0n, userspace_addr: 0n, perm: 0, type: 0, valid: 0, u8_padding: 0, padding: 0}
}

/** A slot as `vhost_dev_init()` leaves it: zeroed, `flags.valid = VHOST_IOTLB_INVALID`. */
export function initialSlot(): IotlbEntry {
  return {...zeroEntry(), valid: VHOST_IOTLB_INVALID}
}

export function cloneEntry(entry: IotlbEntry): IotlbEntry {
  return {...entry}
}

export function entriesEqual(a: IotlbEntry, b: IotlbEntry): boolean {
  return (
    a.iova === b.iova &&
    a.size === b.size &&
    a.userspace_addr === b.userspace_addr &&
    a.perm === b.perm &&
    a.type === b.type &&
    a.valid === b.valid &&
    a.u8_padding === b.u8_padding &&
    a.padding === b.padding
  )
}

/** Encodes the entry exactly as the kernel's `copy_from_user`/`copy_to_user` would see it. */
export function encodeEntry(entry: IotlbEntry, out = new Uint8Array(ENTRY_SIZE), offset = 0): Uint8Array {
  const view = new DataView(out.buffer, out.byteOffset + offset, ENTRY_SIZE)
  view.setBigUint64(0, entry.iova, true)
  view.setBigUint64(8, entry.size, true)
  view.setBigUint64(16, entry.userspace_addr, true)
  view.setUint8(24, entry.perm)
  view.setUint8(25, entry.type)
  view.setUint8(26, entry.valid)
  view.setUint8(27, entry.u8_padding)
  view.setUint32(28, entry.padding, true)
  return out
}

export function decodeEntry(bytes: Uint8Array, offset = 0): IotlbEntry {
  if (bytes.length - offset < ENTRY_SIZE) {
    throw new RangeError(`struct vhost_iotlb_entry needs ${ENTRY_SIZE} bytes, got ${bytes.length - offset}`)
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, ENTRY_SIZE)
  return {
    iova: view.getBigUint64(0, true),
    size: view.getBigUint64(8, true),
    userspace_addr: view.getBigUint64(16, true),
    perm: view.getUint8(24),
    type: view.getUint8(25),
    valid: view.getUint8(26),
    u8_padding: view.getUint8(27),
    padding: view.getUint32(28, true),
  }
}

export function entryToHex(entry: IotlbEntry): string {
  return Buffer.from(encodeEntry(entry)).toString('hex')
}

export function entryFromHex(hex: string): IotlbEntry {
  return decodeEntry(Buffer.from(hex, 'hex'))
}

// ---- names ---------------------------------------------------------------------------------

export type PermName = 'none' | 'ro' | 'wo' | 'rw'
export type TypeName = 'none' | 'miss' | 'update' | 'invalidate'

export const PERM_BITS: Readonly<Record<PermName, number>> = {
  none: 0,
  ro: VHOST_IOTLB_PERM_READ,
  wo: VHOST_IOTLB_PERM_WRITE,
  rw: VHOST_IOTLB_PERM_READ | VHOST_IOTLB_PERM_WRITE,
}

export const TYPE_CODES: Readonly<Record<Exclude<TypeName, 'none'>, number>> = {
  miss: VHOST_IOTLB_MISS,
  update: VHOST_IOTLB_UPDATE,
  invalidate: VHOST_IOTLB_INVALIDATE,
}

export function hexByte(value: number): string {
  return `0x${value.toString(16)}`
}

// Names for all 256 byte values, built once: dump and batch name millions of flag bytes.
const PERM_NAMES = Array.from({length: 256}, (_, byte) => Object.entries(PERM_BITS).find(([, bits]) => bits === byte)?.[0] ?? hexByte(byte))
const TYPE_NAMES = Array.from({length: 256}, (_, byte) =>
  byte === 0 ? 'none' : (Object.entries(TYPE_CODES).find(([, code]) => code === byte)?.[0] ?? hexByte(byte)),
)

/** The perm byte's name, or its hex value when it holds bits the RFC does not define. */
export function permName(perm: number): string {
  return PERM_NAMES[perm & 0xff]!
}

/** The type byte's name: `none` for a zeroed field, hex for values the RFC does not define. */
export function typeName(type: number): string {
  return TYPE_NAMES[type & 0xff]!
}

// ---- number syntax and the schemas for every field -------------------------------------------

const DEC = '[0-9]+(?:_[0-9]+)*'
const HEX = '0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*'
const U64_RE = new RegExp(`^(?:${HEX}|${DEC})$`)
const SIZED_RE = new RegExp(`^(${HEX}|${DEC})([kKmMgG]?)$`)
const SCALE: Readonly<Record<string, bigint>> = {'': 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n}

/** Quotes user text for an error message: escaped, and cut short so a huge input stays readable. */
export function showInput(text: unknown): string {
  const raw = typeof text === 'string' ? text : String(text)
  const cut = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw
  return JSON.stringify(cut)
}

/**
 * Parses a number as the contract spells it. Returns undefined when the text is malformed; the
 * caller (a zod schema) names the field. The regex runs first because `BigInt('')` is 0n and
 * `BigInt` rejects `_` separators.
 */
export function parseNumberText(text: string, units: boolean): bigint | undefined {
  if (!units) return U64_RE.test(text) ? BigInt(text.replaceAll('_', '')) : undefined
  const match = SIZED_RE.exec(text)
  if (!match) return undefined
  const [, digits = '', unit = ''] = match
  return BigInt(digits.replaceAll('_', '')) * (SCALE[unit.toLowerCase()] ?? 1n)
}

interface NumberOptions {
  /** Accept k/m/g suffixes (powers of 1024). */
  units?: boolean
  min?: bigint
  max?: bigint
  /** What the field holds, for messages: "a u64", "a u32". */
  what?: string
}

/**
 * A schema from user text to a bigint in [min, max], with messages that name the field. The text
 * is parsed once: batch replays validate millions of numbers.
 */
export function numberSchema(field: string, options: NumberOptions = {}) {
  const {units = false, min = 0n, max = U64_MAX, what = 'a u64'} = options
  const syntax = units ? 'decimal or 0x hex, _ separators, k/m/g suffix' : 'decimal or 0x hex, _ separators'
  return z.pipe(
    z.string(),
    z.transform((text: string, context): bigint => {
      const value = parseNumberText(text, units)
      if (value === undefined) {
        context.issues.push({code: 'custom', input: text, message: `${field}: ${showInput(text)} is not a number (${syntax})`})
        return z.NEVER
      }

      if (value < min || value > max) {
        context.issues.push({code: 'custom', input: text, message: `${field}: ${showInput(text)} is out of range for ${what} (${rangeText(min, max)})`})
        return z.NEVER
      }

      return value
    }),
  )
}

function rangeText(min: bigint, max: bigint): string {
  const show = (value: bigint) => (value > 0xffffn ? `0x${value.toString(16)}` : value.toString())
  return `${show(min)}..${show(max)}`
}

export const u64Schema = (field: string) => numberSchema(field)

/**
 * `auto` (memory the tool allocates, on real devices) or a u64. Not a zod union: a union reports
 * "Invalid input" instead of the number's own message.
 */
export function u64OrAutoSchema(field: string) {
  const number = numberSchema(field)
  return z.pipe(
    z.string(),
    z.transform((text: string, context): bigint | 'auto' => {
      if (text === 'auto') return 'auto'
      const parsed = number.safeParse(text)
      if (parsed.success) return parsed.data
      context.issues.push({code: 'custom', input: text, message: `${parsed.error.issues[0]!.message}, or auto`})
      return z.NEVER
    }),
  )
}
export const sizeSchema = (field: string) => numberSchema(field, {units: true})

/** Input spellings of a permission (the contract's list), to the RFC bits. */
const PERM_INPUT: Readonly<Record<string, number>> = {
  none: 0,
  ro: 0x1,
  r: 0x1,
  read: 0x1,
  wo: 0x10,
  w: 0x10,
  write: 0x10,
  rw: 0x11,
  '0x0': 0,
  '0x1': 0x1,
  '0x10': 0x10,
  '0x11': 0x11,
}
export const PERM_CHOICES = Object.keys(PERM_INPUT)

export const permSchema = (field: string) =>
  z.pipe(
    z.string().check(
      z.refine((text) => Object.hasOwn(PERM_INPUT, text.toLowerCase()), {
        error: (issue) => `${field}: ${showInput(issue.input)} is not a permission (none, ro, wo, rw, r, w, read, write, 0x0, 0x1, 0x10, 0x11)`,
      }),
    ),
    z.transform((text: string) => PERM_INPUT[text.toLowerCase()] as number),
  )

/** A raw type byte for VHOST_UPDATE_IOTLB: a name or any u8, so that EINVAL can be provoked. */
export const typeSchema = (field: string) =>
  z.pipe(
    z.string().check(
      z.refine((text) => Object.hasOwn(TYPE_CODES, text.toLowerCase()) || isByte(text), {
        error: (issue) => `${field}: ${showInput(issue.input)} is not a type (miss, update, invalidate, or a byte 0..0xff)`,
      }),
    ),
    z.transform((text: string) => {
      const named = TYPE_CODES[text.toLowerCase() as keyof typeof TYPE_CODES]
      return named ?? Number(parseNumberText(text, false))
    }),
  )

function isByte(text: string): boolean {
  const value = parseNumberText(text, false)
  return value !== undefined && value <= 0xffn
}

export const MODELS = ['rfc', 'fixed'] as const
export type ModelName = (typeof MODELS)[number]
