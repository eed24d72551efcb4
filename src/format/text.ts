/**
 * Results to the lines a person reads. Pure: returns strings, prints nothing.
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
import {bytesHex, hex} from './json.js'

export function entryText(entry: IotlbEntry): string {
  const valid = entry.valid === VHOST_IOTLB_VALID ? 'valid' : 'invalid'
  return `iova ${hex(entry.iova)} size ${hex(entry.size)} uaddr ${hex(entry.userspace_addr)} perm ${permName(entry.perm)} type ${typeName(entry.type)} ${valid}`
}

/** The 32 struct bytes in the kernel's field groups: iova | size | userspace_addr | flags. */
export function bytesText(bytes: Uint8Array): string {
  const all = bytesHex(bytes)
  return [all.slice(0, 16), all.slice(16, 32), all.slice(32, 48), all.slice(48, 64)].join(' ')
}

export function warningLines(warnings: Warning[] | undefined): string[] {
  return (warnings ?? []).map((w) => `warning: ${w.message} [${w.code}]`)
}

export function setFdText(result: SetFdResult): string[] {
  return [result.iotlb_fd === null ? 'iotlb fd cleared' : `iotlb fd ${result.iotlb_fd}`]
}

export function setRequestEntryText(result: SetRequestEntryResult): string[] {
  return [`request entry ${hex(result.request_entry)}`]
}

export function updateText(result: UpdateResult): string[] {
  const lines = [`slot ${result.slot}: ${entryText(result.entry)}`]
  if (result.completed_miss) lines.push(`completed the pending miss for ${hex(result.entry.iova)}`)
  return lines
}

export function invalidateText(result: InvalidateResult, iova: bigint): string[] {
  if (result.removed !== undefined) {
    return [`invalidated ${hex(iova)}: ${result.removed} range${result.removed === 1 ? '' : 's'} removed from the shadow`]
  }

  return [
    result.invalidated
      ? `slot ${result.slot}: invalidated ${hex(iova)}`
      : `slot ${result.slot}: unchanged (it does not hold iova ${hex(iova)})`,
  ]
}

export function translateText(result: TranslateResult): string[] {
  if (result.shadow) return shadowTranslateText(result)
  switch (result.status) {
    case 'ok': {
      const lines = [`${hex(result.iova)} len ${hex(result.len)}: ${result.iov.length} iov`]
      for (const [i, seg] of result.iov.entries()) {
        lines.push(`  iov[${i}] iova ${hex(seg.iova)} -> uaddr ${hex(seg.userspace_addr)} len ${hex(seg.len)}`)
      }

      return lines
    }

    case 'miss': {
      return [
        `miss at ${hex(result.iova)}: request written to the request entry, eventfd signalled`,
        `  request ${entryText(result.request)}`,
        `  bytes   ${bytesText(result.request_bytes)}`,
      ]
    }

    case 'fault': {
      return [`fault: ${result.errno} (${result.reason})`]
    }
  }
}

/** A real device's translation, worked out from the shadow: it never claims the kernel did anything. */
function shadowTranslateText(result: TranslateResult): string[] {
  const source = 'shadow of what this tool wrote (the kernel cannot be read back)'
  switch (result.status) {
    case 'ok': {
      const lines = [`${hex(result.iova)} len ${hex(result.len)}: ${result.iov.length} iov, from the ${source}`]
      for (const [i, seg] of result.iov.entries()) {
        lines.push(`  iov[${i}] iova ${hex(seg.iova)} -> uaddr ${hex(seg.userspace_addr)} len ${hex(seg.len)}`)
      }

      return lines
    }

    case 'miss': {
      return [
        `miss at ${hex(result.iova)} in the ${source}: no range this tool wrote covers it`,
        `  the kernel would post a MISS for ${hex(result.iova)} when the device touches it; nothing was posted`,
      ]
    }

    case 'fault': {
      return [`fault: ${result.errno} (${result.reason}), from the ${source}`]
    }
  }
}

/** Everything in a dump but the slot table, which table.ts draws. */
export function dumpHeader(result: DumpResult): string[] {
  const signals = `${result.eventfd_signals} signal${result.eventfd_signals === 1 ? '' : 's'}`
  const lines = [
    `${result.shadow ? 'shadow of what this tool wrote (the kernel cannot be read back)' : 'emulated device'}, model ${result.model}: ${result.slots} slots, page size ${result.page_size}`,
    `iotlb fd:      ${result.iotlb_fd ?? 'none'} (${signals})`,
    `request entry: ${result.request_entry === null ? 'none' : hex(result.request_entry)}`,
    `pending:       ${entryText(result.pending)}${result.waiting ? ' (a translation waits for an UPDATE)' : ''}`,
    `pending bytes: ${bytesText(encodeEntry(result.pending))}`,
  ]
  if (result.request_bytes) lines.push(`last request:  ${bytesText(result.request_bytes)}`)
  return lines
}

export function dumpFooter(result: DumpResult, all: boolean, slot: number | undefined): string {
  if (slot !== undefined) return `slot ${slot} of ${result.slots}`
  if (all) return `all ${result.slots} slots`
  return `${result.entries.length} of ${result.slots} slots written (--all shows every slot)`
}

export function eventText(event: IotlbEvent, answer: UpdateResult | undefined, unanswered?: string): string[] {
  const asid = event.asid === undefined ? '' : ` asid ${event.asid}`
  const lines = [`${event.type === 'miss' ? 'miss' : 'access-fail'} iova ${hex(event.iova)} perm ${permName(event.perm)}${asid}`]
  if (answer) lines.push(`  answered: slot ${answer.slot}: ${entryText(answer.entry)}`)
  else if (unanswered) lines.push(`  not answered: ${unanswered}`)
  return lines
}

export function listenText(result: ListenResult): string[] {
  const how = result.stopped === 'count' ? 'count reached' : 'interrupted'
  return [`${result.events} event${result.events === 1 ? '' : 's'}, ${result.answered} answered (${how})`]
}

/** Probe results as table rows: property, value. */
export function probeRows(result: ProbeResult): string[][] {
  const yes = (value: boolean) => (value ? 'yes' : 'no')
  const rows = [
    ['device', `${result.spec} (${result.kind})`],
    ['protocol', result.protocol === 'rfc' ? 'RFC ioctls (VHOST_UPDATE_IOTLB)' : 'upstream vhost_msg on the device fd'],
    ['RFC ioctls', yes(result.rfc_ioctls)],
    ['features', result.features === null ? 'n/a' : hex(result.features)],
    ['VIRTIO_F_ACCESS_PLATFORM (33)', yes(result.access_platform)],
    ['VHOST_F_DEVICE_IOTLB (63)', yes(result.device_iotlb)],
    ['backend features', result.backend_features === null ? 'n/a' : hex(result.backend_features)],
    ['message v1 / v2', `${yes(result.msg_v1)} / ${yes(result.msg_v2)}`],
    ['IOTLB batch / ASID', `${yes(result.batch)} / ${yes(result.asid)}`],
    ['messages written as', result.msg_version === null ? 'none' : `v${result.msg_version}`],
  ]
  return rows
}
