import {numberSchema, u64Schema} from '../../device/entry.js'
import {translateJson} from '../../format/json.js'
import {translateText} from '../../format/text.js'
import {EXIT} from '../outcome.js'
import {deviceFlags} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'translate',
  summary: 'translate_iotlb(): what a device DMA of LEN bytes at IOVA would use.',
  description:
    'Walks the IOTLB as the RFC does. On a hit it emits iovecs (model rfc: size = userspace_addr + size - iova, u64 wrap-around; model fixed: the entry\'s remaining length, and a fault past its end). On a miss the request is written to the request entry and the eventfd signalled; the command reports it and exits 3, and a later `update` of that IOVA completes it. A fault (no fd, no request entry, a miss already outstanding, a full iovec array) exits 1. In the REPL at a terminal a miss can be answered on the spot.',
  examples: ['vhost-iotlb translate 0x1000', 'vhost-iotlb translate 0x1800 --len 8k --json', 'vhost-iotlb translate 0x5000 --len 0x100'],
  args: [{name: 'iova', description: 'I/O virtual address (u64)', helpValue: 'IOVA', schema: u64Schema('IOVA'), required: true}],
  flags: {
    len: {
      kind: 'value',
      description: 'bytes to translate (a u32, k/m/g suffixes)',
      helpValue: 'N',
      schema: numberSchema('--len', {units: true, max: 0xffff_ffffn, what: 'a u32'}),
      default: '1',
    },
    ...deviceFlags,
  },
  async run({args, flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.translate(args.iova, flags.len, {onMiss: context.interaction?.onMiss})
    const exitCode = result.status === 'ok' ? EXIT.ok : result.status === 'miss' ? EXIT.miss : EXIT.failed
    return {json: translateJson(result), text: () => translateText(result), warnings: result.warnings, exitCode}
  },
})
