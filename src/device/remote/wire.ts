/**
 * The protocol between `vhost-iotlb hold` and the one-off commands that reach its device through
 * `--device unix:PATH`.
 *
 * Why a holder at all: a real vhost device keeps its IOTLB only as long as its fd is open, so a
 * one-off command that opens, updates and closes leaves nothing behind. The holder keeps the fd
 * and runs each command's device operation for it.
 *
 * The format: one JSON message per line (NDJSON) on a unix stream socket. JSON has no u64 and
 * no bytes, so values go through a small codec first: a bigint becomes `{"$u64": "0x.."}`, a
 * Uint8Array `{"$bytes": "hex"}`, and a plain object whose own keys start with `$` is wrapped as
 * `{"$obj": {...}}` so that it cannot be mistaken for a tag. Nothing is lost either way.
 *
 * A conversation: the server says `hello` (its protocol version, pid and device) as soon as a
 * client connects; the client says `hello` with its version and then sends `call`s, each with an
 * id of its choosing. Every call ends in one `result` or one `error` with that id. Before that a
 * `translate` may send `miss` (the client's miss handler answers with `miss-answer`) and a
 * `listen` or `exercise` sends `event`s (each acknowledged by `event-answer`, which carries the
 * client's UPDATE if it answered; `exercise` sends its `setup` first). `cancel` stops either. Errors travel as `{class, code, message, call?, path?}`
 * and are rebuilt as the same classes from ../errors.ts, so a command run through the holder
 * prints what it would have printed on the device itself and exits with the same code.
 *
 * Every incoming line is decoded and then checked with zod before anything acts on it.
 */
import * as z from 'zod/mini'

import type {
  DeviceInfo,
  DumpResult,
  ExerciseResult,
  ExerciseSetup,
  InvalidateResult,
  IotlbEvent,
  ListenResult,
  ProbeResult,
  ResetResult,
  SetFdResult,
  SetRequestEntryResult,
  TranslateResult,
  UpdateResult,
} from '../device.js'
import {type IotlbEntry, MODELS, U64_MAX} from '../entry.js'
import {DeviceError, IotlbError, LockTimeoutError, StateFileError, UsageError} from '../errors.js'

/** Bumped whenever a message or a method changes shape; both ends must agree exactly. */
export const PROTOCOL_VERSION = 1

/** A line longer than this is refused: a request is a few hundred bytes. */
export const MAX_REQUEST_LINE = 1 << 20
/** Replies are bigger (`dump --all` is about 200 KiB); this only stops a runaway peer. */
export const MAX_REPLY_LINE = 64 << 20
/** Nesting deeper than any message has: keeps the decoder's recursion bounded. */
const MAX_DEPTH = 32

/**
 * The other end broke the protocol: a malformed or unexpected message, or a different protocol
 * version. Exit code 1, code `EPROTO`.
 */
export class ProtocolError extends IotlbError {
  constructor(message: string, options?: {cause?: unknown}) {
    super('EPROTO', message, options)
  }
}

// ---- the value codec ----------------------------------------------------------------------------

/** JSON as it goes on the wire. */
export type WireJson = null | boolean | number | string | WireJson[] | {[key: string]: WireJson}

const U64_TEXT = /^0x(?:0|[1-9a-f][0-9a-f]{0,15})$/
const HEX_BYTES = /^(?:[0-9a-f]{2})*$/

/**
 * Turns a value made of JSON types, bigints (u64) and Uint8Arrays into plain JSON. Throws
 * RangeError for a bigint outside u64 and TypeError for anything JSON cannot carry without loss
 * (NaN, a Map, a function): those would be bugs in the caller, not data.
 */
export function encodeValue(value: unknown, depth = 0): WireJson {
  if (depth > MAX_DEPTH) throw new RangeError(`value nested deeper than ${MAX_DEPTH} levels`)
  if (value === null || value === undefined) return null
  switch (typeof value) {
    case 'boolean':
    case 'string': {
      return value
    }

    case 'number': {
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`)
      return value
    }

    case 'bigint': {
      if (value < 0n || value > U64_MAX) throw new RangeError(`${value} is not a u64`)
      return {$u64: `0x${value.toString(16)}`}
    }

    case 'object': {
      if (value instanceof Uint8Array) return {$bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}
      if (Array.isArray(value)) return value.map((item) => encodeValue(item, depth + 1))
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) throw new TypeError(`a ${proto?.constructor?.name ?? 'value'} has no wire form`)
      const out: {[key: string]: WireJson} = {}
      let tagged = false
      for (const [key, item] of Object.entries(value)) {
        // An absent optional field and an undefined one mean the same to every reader here.
        if (item === undefined) continue
        if (key.startsWith('$')) tagged = true
        out[key] = encodeValue(item, depth + 1)
      }

      return tagged ? {$obj: out} : out
    }

    default: {
      throw new TypeError(`a ${typeof value} has no wire form`)
    }
  }
}

/** The inverse of {@link encodeValue}. Throws {@link ProtocolError} on a malformed tag. */
export function decodeValue(json: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) throw new ProtocolError(`message nested deeper than ${MAX_DEPTH} levels`)
  if (json === null || typeof json !== 'object') return json
  if (Array.isArray(json)) return json.map((item) => decodeValue(item, depth + 1))
  const keys = Object.keys(json)
  const record = json as Record<string, unknown>
  if (keys.length === 1 && keys[0]!.startsWith('$')) {
    const [tag] = keys as [string]
    const body = record[tag]
    switch (tag) {
      case '$u64': {
        if (typeof body !== 'string' || !U64_TEXT.test(body)) throw new ProtocolError(`{"$u64": ${showJson(body)}} is not a u64 (lower-case "0x" hex, no leading zeros)`)
        return BigInt(body)
      }

      case '$bytes': {
        if (typeof body !== 'string' || !HEX_BYTES.test(body)) throw new ProtocolError(`{"$bytes": ${showJson(body)}} is not lower-case hex bytes`)
        return Uint8Array.from(Buffer.from(body, 'hex'))
      }

      case '$obj': {
        if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ProtocolError('"$obj" must wrap an object')
        return decodeObject(body as Record<string, unknown>, depth)
      }

      default: {
        throw new ProtocolError(`unknown tag ${showJson(tag)}`)
      }
    }
  }

  if (keys.some((key) => key.startsWith('$'))) throw new ProtocolError(`an object with "$" keys must be wrapped in "$obj" (${showJson(keys)})`)
  return decodeObject(record, depth)
}

function decodeObject(record: Record<string, unknown>, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(record)) {
    // defineProperty: a "__proto__" key is data here, not a prototype to adopt.
    Object.defineProperty(out, key, {value: decodeValue(item, depth + 1), enumerable: true, writable: true, configurable: true})
  }

  return out
}

function showJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 60 ? `${text.slice(0, 60)}…` : text
}

// ---- errors -------------------------------------------------------------------------------------

/** An error as it crosses the socket. */
export interface WireError {
  class: string
  code: string
  message: string
  call?: string
  path?: string
}

/** The classes a client can rebuild; anything else is reported as an internal error, as locally. */
const ERROR_CLASSES = [ProtocolError, LockTimeoutError, StateFileError, DeviceError, UsageError, IotlbError] as const

/**
 * What a thrown value looks like on the wire. A subclass the client may not know (the kernel
 * backend's SyscallError) travels as its nearest class in ../errors.ts: that decides the exit code
 * and keeps the code and message.
 */
export function errorToWire(error: unknown): WireError {
  if (error instanceof IotlbError) {
    const known = ERROR_CLASSES.find((cls) => error instanceof cls)!
    const wire: WireError = {class: known.name, code: error.code, message: error.message}
    if (error instanceof DeviceError) wire.call = error.call
    if (error instanceof StateFileError) wire.path = error.path
    return wire
  }

  // Not one of ours: a bug on the holder's side, which the client reports as `internal error`.
  return {class: 'Error', code: 'INTERNAL', message: error instanceof Error ? error.message : String(error)}
}

/** Rebuilds the error the holder threw, with its class, code and exact message. */
export function errorFromWire(wire: WireError): Error {
  let error: Error
  switch (wire.class) {
    case 'UsageError': {
      error = new UsageError(wire.message)
      break
    }

    case 'DeviceError': {
      error = new DeviceError(wire.call ?? '', wire.code, '')
      break
    }

    case 'StateFileError': {
      error = new StateFileError(wire.code, wire.path ?? '', '')
      break
    }

    case 'LockTimeoutError': {
      error = new LockTimeoutError(wire.path ?? '', '', 0)
      break
    }

    case 'ProtocolError': {
      error = new ProtocolError(wire.message)
      break
    }

    case 'IotlbError': {
      error = new IotlbError(wire.code, wire.message)
      break
    }

    default: {
      error = new Error(wire.message)
    }
  }

  // The constructors compose their own messages; the holder's text is the one to print.
  error.message = wire.message
  return error
}

// ---- schemas of the values methods take and return ----------------------------------------------

const u64 = z.bigint().check(z.gte(0n), z.lte(U64_MAX))
const u8 = z.int().check(z.gte(0), z.lte(0xff))
const u32 = z.int().check(z.gte(0), z.lte(0xffff_ffff))
const count = z.int().check(z.gte(0))
const bytes = z.instanceof(Uint8Array)
const warnings = z.optional(z.array(z.object({code: z.string(), message: z.string()})))
const shadow = z.optional(z.boolean())

const entryFields = {iova: u64, size: u64, userspace_addr: u64, perm: u8, type: u8, valid: u8, u8_padding: u8, padding: u32}
const entry: z.ZodMiniType<IotlbEntry> = z.object(entryFields)

const setFdResult: z.ZodMiniType<SetFdResult> = z.object({iotlb_fd: z.nullable(z.int()), warnings})
const setRequestEntryResult: z.ZodMiniType<SetRequestEntryResult> = z.object({request_entry: u64, warnings})
const updateResult: z.ZodMiniType<UpdateResult> = z.object({slot: count, entry, completed_miss: z.boolean(), warnings})
const invalidateResult: z.ZodMiniType<InvalidateResult> = z.object({
  slot: count,
  invalidated: z.boolean(),
  removed: z.optional(count),
  warnings,
})
const translateResult: z.ZodMiniType<TranslateResult> = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('ok'),
    iova: u64,
    len: u64,
    iov: z.array(z.object({iova: u64, userspace_addr: u64, len: u64})),
    shadow,
    warnings,
  }),
  z.object({status: z.literal('miss'), iova: u64, request: entry, request_bytes: bytes, shadow, warnings}),
  z.object({status: z.literal('fault'), errno: z.string(), reason: z.string(), shadow, warnings}),
])
const dumpResult: z.ZodMiniType<DumpResult> = z.object({
  model: z.string(),
  shadow: z.boolean(),
  page_size: count,
  slots: count,
  iotlb_fd: z.nullable(z.int()),
  eventfd_signals: count,
  request_entry: z.nullable(u64),
  pending: entry,
  request_bytes: z.nullable(bytes),
  waiting: z.boolean(),
  entries: z.array(z.object({slot: count, ...entryFields})),
  warnings,
})
const model = z.enum(MODELS)
// Real devices answer a reset with their protocol, which a reset cannot change.
const resetResult: z.ZodMiniType<ResetResult> = z.object({model: z.string(), invalidated: z.optional(count), warnings})
const deviceKind = z.enum(['emulated', 'kernel', 'remote'])
const probeResult: z.ZodMiniType<ProbeResult> = z.object({
  spec: z.string(),
  kind: deviceKind,
  protocol: z.enum(['rfc', 'upstream']),
  rfc_ioctls: z.boolean(),
  features: z.nullable(u64),
  backend_features: z.nullable(u64),
  access_platform: z.boolean(),
  device_iotlb: z.boolean(),
  msg_v1: z.boolean(),
  msg_v2: z.boolean(),
  batch: z.boolean(),
  asid: z.boolean(),
  msg_version: z.nullable(z.union([z.literal(1), z.literal(2)])),
  notes: z.array(z.string()),
})
const listenResult: z.ZodMiniType<ListenResult> = z.object({events: count, answered: count, stopped: z.enum(['count', 'signal'])})

/** What `exercise` set up on the held device, sent before its first event. */
export const setupSchema: z.ZodMiniType<ExerciseSetup> = z.object({
  queue: count,
  num: count,
  desc: u64,
  avail: u64,
  used: u64,
  tap: z.string(),
  used_mapped: updateResult,
})
const exerciseResult: z.ZodMiniType<ExerciseResult> = z.object({
  setup: setupSchema,
  events: count,
  answered: count,
  stopped: z.enum(['quiet', 'count', 'unanswered', 'signal']),
  quiet_ms: z.optional(count),
})

/** The part of {@link IotlbEvent} that crosses the socket: all of it. */
export const eventSchema: z.ZodMiniType<IotlbEvent> = z.object({
  type: z.enum(['miss', 'access_fail']),
  iova: u64,
  perm: u8,
  asid: z.optional(count),
  raw: bytes,
})

/**
 * Every method the holder serves: what its parameters and its result look like once decoded.
 * `close` is absent on purpose: a client closes its connection, never the held device.
 */
export const METHODS = {
  setIotlbFd: {
    params: z.tuple([z.union([z.literal('auto'), z.int().check(z.gte(-1), z.lte(0x7fff_ffff))])]),
    result: setFdResult,
  },
  setRequestEntry: {params: z.tuple([z.union([z.literal('auto'), u64])]), result: setRequestEntryResult},
  update: {
    params: z.tuple([
      z.object({
        iova: u64,
        size: u64,
        userspace_addr: z.union([z.literal('auto'), u64]),
        perm: u8,
        type: u8,
        valid: z.boolean(),
        unsafe_uaddr: z.optional(z.boolean()),
      }),
    ]),
    result: updateResult,
  },
  invalidate: {params: z.tuple([z.object({iova: u64, size: z.optional(u64)})]), result: invalidateResult},
  /** The third parameter says whether the client has a miss handler to forward misses to. */
  translate: {params: z.tuple([u64, u64, z.object({onMiss: z.boolean()})]), result: translateResult},
  dump: {params: z.tuple([z.object({all: z.optional(z.boolean()), slot: z.optional(count)})]), result: dumpResult},
  reset: {params: z.tuple([model]), result: resetResult},
  probe: {params: z.tuple([]), result: probeResult},
  /** `answer`: the client answers events itself and sends its UPDATE back in `event-answer`. */
  listen: {params: z.tuple([z.object({count: z.optional(z.int().check(z.gte(1))), answer: z.boolean()})]), result: listenResult},
  /**
   * Streams like listen, with a `setup` message first. `answer`: as for listen; `onMiss`: misses
   * go to the client's miss handler (the REPL's person) as a translate's do.
   */
  exercise: {
    params: z.tuple([
      z.object({count: z.optional(count), quietMs: z.optional(z.int().check(z.gte(1))), answer: z.boolean(), onMiss: z.boolean()}),
    ]),
    result: exerciseResult,
  },
  flush: {params: z.tuple([]), result: z.null()},
} as const

export type MethodName = keyof typeof METHODS
export type MethodParams<M extends MethodName> = z.infer<(typeof METHODS)[M]['params']>
export type MethodResult<M extends MethodName> = z.infer<(typeof METHODS)[M]['result']>

export function isMethod(name: string): name is MethodName {
  return Object.hasOwn(METHODS, name)
}

// ---- messages -----------------------------------------------------------------------------------

const id = z.int().check(z.gte(1), z.lte(Number.MAX_SAFE_INTEGER))
const wireError: z.ZodMiniType<WireError> = z.object({
  class: z.string(),
  code: z.string(),
  message: z.string(),
  call: z.optional(z.string()),
  path: z.optional(z.string()),
})

const clientMessage = z.discriminatedUnion('type', [
  z.object({type: z.literal('hello'), version: z.int()}),
  z.object({type: z.literal('call'), id, method: z.string(), params: z.array(z.unknown())}),
  z.object({type: z.literal('cancel'), id}),
  z.object({type: z.literal('miss-answer'), id, answered: z.boolean()}),
  z.object({type: z.literal('event-answer'), id, seq: count, result: z.nullable(updateResult)}),
])

const serverMessage = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    version: z.int(),
    pid: z.int(),
    device: z.object({kind: deviceKind, spec: z.string(), model: z.string()}),
  }),
  z.object({type: z.literal('result'), id, result: z.unknown(), model: z.string()}),
  z.object({type: z.literal('error'), id: z.nullable(id), error: wireError}),
  z.object({type: z.literal('miss'), id, request: entry}),
  z.object({type: z.literal('event'), id, seq: count, event: eventSchema}),
  z.object({type: z.literal('setup'), id, setup: setupSchema}),
])

/** A message from a client, checked. */
export type ClientMessage = z.infer<typeof clientMessage>
/** A message from the holder, checked. */
export type ServerMessage = z.infer<typeof serverMessage>
/** What the holder says it holds. */
export type HelloDevice = Pick<DeviceInfo, 'kind' | 'spec' | 'model'>

function parseLine<T>(line: string, schema: z.ZodMiniType<T>): T {
  let json: unknown
  try {
    json = JSON.parse(line)
  } catch {
    throw new ProtocolError(`malformed message: not JSON: ${showJson(line)}`)
  }

  const parsed = schema.safeParse(decodeValue(json))
  if (!parsed.success) throw new ProtocolError(`malformed message: ${issueText(parsed.error.issues)}`)
  return parsed.data
}

/** The first issue, with where it is: `params.0.iova: expected bigint`. */
export function issueText(issues: ReadonlyArray<{path: ReadonlyArray<PropertyKey>; message: string}>): string {
  const issue = issues[0]
  if (!issue) return 'invalid'
  const where = issue.path.map(String).join('.')
  return where === '' ? issue.message : `${where}: ${issue.message}`
}

/** Decodes and checks one line a client sent. Throws {@link ProtocolError}. */
export function parseClientLine(line: string): ClientMessage {
  return parseLine(line, clientMessage)
}

/** Decodes and checks one line the holder sent. Throws {@link ProtocolError}. */
export function parseServerLine(line: string): ServerMessage {
  return parseLine(line, serverMessage)
}

/** The id a malformed line meant to use, if it can be read, so its caller gets the error. */
export function salvageId(line: string): number | null {
  try {
    const json = JSON.parse(line) as {id?: unknown}
    return typeof json.id === 'number' && Number.isSafeInteger(json.id) && json.id >= 1 ? json.id : null
  } catch {
    return null
  }
}

/** One message as a line. */
export function encodeLine(message: Record<string, unknown>): string {
  return `${JSON.stringify(encodeValue(message))}\n`
}

/**
 * Cuts a byte stream into lines. A line longer than `limit` is an error: without the limit a peer
 * that never sends a newline would grow the buffer until the holder runs out of memory.
 */
export class LineSplitter {
  private buffer = ''

  constructor(private readonly limit: number) {}

  /** The complete lines in `chunk` (with what was left over before it). Throws {@link ProtocolError}. */
  push(chunk: string): string[] {
    this.buffer += chunk
    const lines = this.buffer.split('\n')
    this.buffer = lines.pop()!
    if (this.buffer.length > this.limit || lines.some((line) => line.length > this.limit)) {
      this.buffer = ''
      throw new ProtocolError(`message longer than ${this.limit} characters`)
    }

    return lines
  }
}
