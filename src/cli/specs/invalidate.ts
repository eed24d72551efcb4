import {sizeSchema, u64Schema} from '../../device/entry.js'
import {invalidateJson} from '../../format/json.js'
import {invalidateText} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'invalidate',
  summary: 'VHOST_UPDATE_IOTLB type INVALIDATE: drop the entry for an IOVA.',
  description:
    'Sends {iova, size 0, userspace_addr 0, perm none, valid INVALID}. The RFC replaces slot (IOVA >> 12) & 1023 only if the slot holds exactly this iova; otherwise nothing changes. Upstream devices take a range (--size) and drop every mapping that overlaps it.',
  examples: ['vhost-iotlb invalidate --iova 0x1000', 'vhost-iotlb invalidate --iova 0x1000 --json', 'vhost-iotlb invalidate --iova 0x100000 --size 2m --device /dev/vhost-net'],
  args: [],
  flags: {
    iova: {kind: 'value', description: 'I/O virtual address (u64)', helpValue: 'ADDR', schema: u64Schema('--iova'), required: true},
    size: {kind: 'value', description: 'upstream devices: length of the range to invalidate', helpValue: 'SIZE', schema: sizeSchema('--size')},
    ...deviceFlags,
  },
  async run({flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.invalidate({iova: flags.iova, size: flags.size})
    return {json: invalidateJson(result), text: () => invalidateText(result, flags.iova), warnings: result.warnings}
  },
})
