/**
 * The slot table. cli-table3 is loaded only here, and only when a table is drawn: it is the
 * slowest thing a `dump` does, and JSON output never needs it.
 */
import type {SlotEntry} from '../device/device.js'
import {VHOST_IOTLB_VALID, permName, typeName} from '../device/entry.js'
import {hex} from './json.js'

export const SLOT_HEAD = ['slot', 'iova', 'size', 'userspace_addr', 'perm', 'type', 'valid']

/** Rows for the table: pure, so tests and other renderers can use them. */
export function slotRows(entries: SlotEntry[]): string[][] {
  return entries.map((e) => [
    String(e.slot),
    hex(e.iova),
    hex(e.size),
    hex(e.userspace_addr),
    permName(e.perm),
    typeName(e.type),
    e.valid === VHOST_IOTLB_VALID ? 'yes' : e.valid === 0 ? 'no (0)' : `no (0x${e.valid.toString(16)})`,
  ])
}

/**
 * Draws rows as a table. `color` must be false unless stdout is a terminal and NO_COLOR is unset:
 * cli-table3's colours otherwise leak ANSI escapes into pipes.
 */
export async function renderTable(head: string[], rows: string[][], color: boolean): Promise<string> {
  const {default: Table} = await import('cli-table3')
  const table = new Table({
    head,
    style: color ? {head: ['cyan'], border: ['grey']} : {head: [], border: []},
  })
  for (const row of rows) table.push(row)
  return table.toString()
}
