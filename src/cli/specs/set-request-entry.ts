import {u64OrAutoSchema} from '../../device/entry.js'
import {setRequestEntryJson} from '../../format/json.js'
import {setRequestEntryText} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'set-request-entry',
  summary: 'VHOST_SET_IOTLB_REQUEST_ENTRY: set the user address the device writes miss requests to.',
  description:
    'The kernel checks access_ok() for the 32 bytes of struct vhost_iotlb_entry: ADDR + 32 must not pass the user address limit 0x7ffffffff000, else EFAULT. On a miss it copies the request there. On a real device the tool allocates the buffer itself (ADDR must be `auto`), because the kernel writes into it.',
  examples: [
    'vhost-iotlb set-request-entry 0x7f0000000000',
    'vhost-iotlb set-request-entry 0x7fff_ffff_efe0 --json',
    'vhost-iotlb set-request-entry auto --device /dev/vhost-net',
  ],
  args: [
    {
      name: 'address',
      description: 'user address of the 32-byte request buffer, or auto',
      helpValue: 'ADDR',
      schema: u64OrAutoSchema('ADDR'),
      required: true,
    },
  ],
  flags: deviceFlags,
  async run({args, flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.setRequestEntry(args.address)
    return {json: setRequestEntryJson(result), text: () => setRequestEntryText(result), warnings: result.warnings}
  },
})
