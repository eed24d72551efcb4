import {setFdJson} from '../../format/json.js'
import {setFdText} from '../../format/text.js'
import {deviceFlags, fdSchema} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'set-fd',
  summary: 'VHOST_SET_IOTLB_FD: set the eventfd the device signals on an IOTLB miss.',
  description:
    'The RFC device signals this eventfd after it writes a miss request to the request entry. -1 clears it; with no fd set, a miss faults (EFAULT). On a real device `auto` makes the tool create and own the eventfd; upstream kernels have no such ioctl (misses are read from the device fd) and answer with an error that says so.',
  examples: ['vhost-iotlb set-fd 5', 'vhost-iotlb set-fd -1 --json', 'vhost-iotlb set-fd auto --device /dev/vhost-net'],
  args: [{name: 'fd', description: 'eventfd number, -1 to clear, or auto', helpValue: 'FD', schema: fdSchema, required: true}],
  flags: deviceFlags,
  async run({args, flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.setIotlbFd(args.fd)
    return {json: setFdJson(result), text: () => setFdText(result), warnings: result.warnings}
  },
})
