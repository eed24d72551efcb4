/**
 * The emulated device's state file: its JSON shape, checked with zod on every load, and the
 * conversion to and from the model's {@link ModelState}. Entries are stored as their 32 struct
 * bytes in hex, so what is saved is bit-exact and cannot hold a value the struct cannot.
 */
import * as z from 'zod/mini'

import {
  MODELS,
  VHOST_IOTLB_SIZE,
  encodeEntry,
  entriesEqual,
  entryFromHex,
  entryToHex,
  initialSlot,
} from '../entry.js'
import {type ModelState, freshState} from './model.js'

export const STATE_FORMAT = 'vhost-iotlb/emulated-device'
export const STATE_VERSION = 1

const entryHex = z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be 32 struct bytes as 64 lower-case hex digits'))
const u64Hex = z.string().check(z.regex(/^0x[0-9a-f]{1,16}$/, 'must be a u64 as "0x..." hex'))

const slotKey = z.string().check(
  z.refine((key) => /^(?:0|[1-9][0-9]*)$/.test(key) && Number(key) < VHOST_IOTLB_SIZE, {
    error: `slot numbers run from 0 to ${VHOST_IOTLB_SIZE - 1}`,
  }),
)

export const stateFileSchema = z.strictObject({
  format: z.literal(STATE_FORMAT),
  version: z.literal(STATE_VERSION),
  model: z.enum(MODELS),
  iotlb_fd: z.nullable(z.int().check(z.gte(0), z.lte(0x7fff_ffff))),
  eventfd_signals: z.int().check(z.gte(0)),
  request_entry: z.nullable(u64Hex),
  request_bytes: z.nullable(entryHex),
  pending: entryHex,
  slots: z.record(slotKey, entryHex),
})

export type StateFile = z.infer<typeof stateFileSchema>

/** Slots still as `vhost_dev_init()` left them are not stored. */
export function toStateFile(state: ModelState): StateFile {
  const slots: Record<string, string> = {}
  const initial = initialSlot()
  for (const [index, entry] of state.iotlb.entries()) {
    if (!entriesEqual(entry, initial)) slots[index] = entryToHex(entry)
  }

  return {
    format: STATE_FORMAT,
    version: STATE_VERSION,
    model: state.model,
    iotlb_fd: state.iotlb_fd,
    eventfd_signals: state.eventfd_signals,
    request_entry: state.request_entry === null ? null : `0x${state.request_entry.toString(16)}`,
    request_bytes: state.request_bytes === null ? null : Buffer.from(state.request_bytes).toString('hex'),
    pending: entryToHex(state.pending),
    slots,
  }
}

export function fromStateFile(file: StateFile): ModelState {
  const state = freshState(file.model)
  for (const [key, hex] of Object.entries(file.slots)) state.iotlb[Number(key)] = entryFromHex(hex)
  state.iotlb_fd = file.iotlb_fd
  state.eventfd_signals = file.eventfd_signals
  state.request_entry = file.request_entry === null ? null : BigInt(file.request_entry)
  state.request_bytes = file.request_bytes === null ? null : encodeEntry(entryFromHex(file.request_bytes))
  state.pending = entryFromHex(file.pending)
  return state
}

/** Serialises as the file is written: stable key order, one trailing newline. */
export function serializeState(state: ModelState): string {
  return `${JSON.stringify(toStateFile(state), null, 1)}\n`
}

/**
 * Parses and validates file text. Throws a message naming what is wrong (not a zod dump) so the
 * caller can wrap it in a StateFileError.
 */
export function parseStateText(text: string): ModelState {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw new Error(`not JSON (${(error as Error).message})`)
  }

  const parsed = stateFileSchema.safeParse(json)
  if (!parsed.success) {
    const first = parsed.error.issues[0]!
    const where = first.path.length > 0 ? first.path.join('.') : 'top level'
    const foreign = first.path[0] === 'format' || first.path.length === 0
    throw new Error(`${foreign ? 'not a vhost-iotlb emulated-device file' : 'invalid'}: ${where}: ${first.message}`)
  }

  return fromStateFile(parsed.data)
}

