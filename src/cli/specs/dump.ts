import {VHOST_IOTLB_SIZE, numberSchema} from '../../device/entry.js'
import {dumpJson} from '../../format/json.js'
import {SLOT_HEAD, renderTable, slotRows} from '../../format/table.js'
import {dumpFooter, dumpHeader} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'dump',
  summary: 'Show the 1024-slot IOTLB array, the pending request, the eventfd and the request entry.',
  description:
    'By default lists the slots an update or invalidate has written; --all lists all 1024, --slot N one. A fresh slot is zeroed with valid INVALID (0x1). The pending request is shown decoded and as its 32 struct bytes. On a real device the table is the tool\'s shadow of what it wrote, since the kernel cannot be read back.',
  examples: ['vhost-iotlb dump', 'vhost-iotlb dump --slot 1 --json', 'vhost-iotlb dump --all --json | jq \'.entries | length\''],
  args: [],
  flags: {
    all: {kind: 'boolean', char: 'a', description: 'list all 1024 slots'},
    slot: {
      kind: 'value',
      description: 'list one slot (0..1023)',
      helpValue: 'N',
      schema: numberSchema('--slot', {max: BigInt(VHOST_IOTLB_SIZE - 1), what: 'a slot number'}),
    },
    ...deviceFlags,
  },
  async run({flags}, context) {
    const device = await context.device(flags.device)
    const slot = flags.slot === undefined ? undefined : Number(flags.slot)
    const result = await device.dump({all: flags.all, slot})
    return {
      json: dumpJson(result),
      async text() {
        const table = result.entries.length > 0 ? [await renderTable(SLOT_HEAD, slotRows(result.entries), context.color)] : []
        return [...dumpHeader(result), ...table, dumpFooter(result, flags.all, slot)]
      },
      warnings: result.warnings,
    }
  },
})
