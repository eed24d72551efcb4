/**
 * Results to the JSON the contract promises: every u64 as a lower-case "0x" string (JSON numbers
 * lose precision above 2^53), counts and slot numbers as numbers. Pure: nothing here prints.
 */
import type {
  DumpResult,
  InvalidateResult,
  IotlbEvent,
  ListenResult,
  ProbeResult,
  SetFdResult,
  SetRequestEntryResult,
  TranslateResult,
  UpdateResult,
  Warning,
} from '../device/device.js'
import {type IotlbEntry, VHOST_IOTLB_VALID, encodeEntry, permName, typeName} from '../device/entry.js'

export type Json = null | boolean | number | string | Json[] | {[key: string]: Json}

export function hex(value: bigint): string {
  return `0x${value.toString(16)}`
}

export function bytesHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

export interface EntryJson {
  [key: string]: Json
  iova: string
  size: string
  userspace_addr: string
  perm: string
  type: string
  valid: boolean
}

export function entryJson(entry: IotlbEntry): EntryJson {
  return {
    iova: hex(entry.iova),
    size: hex(entry.size),
    userspace_addr: hex(entry.userspace_addr),
    perm: permName(entry.perm),
    type: typeName(entry.type),
    valid: entry.valid === VHOST_IOTLB_VALID,
  }
}

function withWarnings<T extends {[key: string]: Json}>(body: T, warnings: Warning[] | undefined): T {
  if (!warnings || warnings.length === 0) return body
  return {...body, warnings: warnings.map((w) => ({code: w.code, message: w.message}))}
}

export function setFdJson(result: SetFdResult) {
  return withWarnings({iotlb_fd: result.iotlb_fd}, result.warnings)
}

export function setRequestEntryJson(result: SetRequestEntryResult) {
  return withWarnings({request_entry: hex(result.request_entry)}, result.warnings)
}

export function updateJson(result: UpdateResult) {
  return withWarnings({slot: result.slot, entry: entryJson(result.entry), completed_miss: result.completed_miss}, result.warnings)
}

export function invalidateJson(result: InvalidateResult) {
  const body: {[key: string]: Json} = {slot: result.slot, invalidated: result.invalidated}
  if (result.removed !== undefined) body.removed = result.removed
  return withWarnings(body, result.warnings)
}

export function translateJson(result: TranslateResult) {
  const body = translateBody(result)
  // A real device's translation comes from the tool's shadow, never from the kernel.
  return result.shadow ? {...body, shadow: true} : body
}

function translateBody(result: TranslateResult) {
  switch (result.status) {
    case 'ok': {
      return withWarnings(
        {
          status: 'ok',
          iova: hex(result.iova),
          len: hex(result.len),
          iov: result.iov.map((seg) => ({iova: hex(seg.iova), userspace_addr: hex(seg.userspace_addr), len: hex(seg.len)})),
        },
        result.warnings,
      )
    }

    case 'miss': {
      return withWarnings(
        {status: 'miss', iova: hex(result.iova), request: entryJson(result.request), request_bytes: bytesHex(result.request_bytes)},
        result.warnings,
      )
    }

    case 'fault': {
      return withWarnings({status: 'fault', errno: result.errno, reason: result.reason}, result.warnings)
    }
  }
}

export function dumpJson(result: DumpResult) {
  return withWarnings(
    {
      model: result.model,
      ...(result.shadow ? {shadow: true} : {}),
      page_size: result.page_size,
      slots: result.slots,
      iotlb_fd: result.iotlb_fd,
      eventfd_signals: result.eventfd_signals,
      request_entry: result.request_entry === null ? null : hex(result.request_entry),
      pending: entryJson(result.pending),
      pending_bytes: bytesHex(encodeEntry(result.pending)),
      request_bytes: result.request_bytes ? bytesHex(result.request_bytes) : null,
      waiting: result.waiting,
      entries: result.entries.map(({slot, ...entry}) => ({slot, ...entryJson(entry)})),
    },
    result.warnings,
  )
}

/** One JSON document: indented for a person, compact for NDJSON. */
export function stringify(value: Json, compact = false): string {
  return compact ? JSON.stringify(value) : JSON.stringify(value, null, 2)
}

export function eventJson(event: IotlbEvent, answer: UpdateResult | undefined, unanswered?: string) {
  const body: {[key: string]: Json} = {event: event.type, iova: hex(event.iova), perm: permName(event.perm)}
  if (event.asid !== undefined) body.asid = event.asid
  body.raw = bytesHex(event.raw)
  if (answer) body.answer = updateJson(answer)
  else if (unanswered) body.unanswered = unanswered
  return body
}

export function listenJson(result: ListenResult) {
  return {events: result.events, answered: result.answered, stopped: result.stopped}
}

export function probeJson(result: ProbeResult) {
  return {
    device: result.spec,
    kind: result.kind,
    protocol: result.protocol,
    rfc_ioctls: result.rfc_ioctls,
    features: result.features === null ? null : hex(result.features),
    backend_features: result.backend_features === null ? null : hex(result.backend_features),
    access_platform: result.access_platform,
    device_iotlb: result.device_iotlb,
    msg_v1: result.msg_v1,
    msg_v2: result.msg_v2,
    batch: result.batch,
    asid: result.asid,
    msg_version: result.msg_version,
    notes: result.notes,
  }
}
