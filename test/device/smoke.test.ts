import t from 'tap'

import {iotlbHash} from '../../src/device/entry.js'

t.test('vhost_iotlb_hash', async (t) => {
  t.equal(iotlbHash(0x1000n), 1)
})
