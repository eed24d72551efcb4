import {probeJson} from '../../format/json.js'
import {renderTable} from '../../format/table.js'
import {probeRows} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'probe',
  summary: 'Ask a device which IOTLB protocol it speaks: RFC ioctls, upstream messages v1/v2, features.',
  description:
    'On a real device: opens it, takes ownership (VHOST_SET_OWNER), reads VHOST_GET_FEATURES and VHOST_GET_BACKEND_FEATURES, and tests for the RFC ioctls with an argument a stock kernel cannot mistake for a ring index. Device IOTLB is offered upstream as VIRTIO_F_ACCESS_PLATFORM (bit 33; VHOST_F_DEVICE_IOTLB, bit 63, on old kernels); message v2 through backend feature VHOST_BACKEND_F_IOTLB_MSG_V2.',
  examples: ['vhost-iotlb probe', 'vhost-iotlb probe --device /dev/vhost-net', 'vhost-iotlb probe --device /dev/vhost-net --json'],
  args: [],
  flags: deviceFlags,
  async run({flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.probe()
    return {
      json: probeJson(result),
      async text() {
        return [await renderTable(['property', 'value'], probeRows(result), context.color), ...result.notes.map((note) => `note: ${note}`)]
      },
    }
  },
})
