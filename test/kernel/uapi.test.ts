import t from 'tap'
import * as u from '../../src/device/kernel/uapi.js'

// Expected numbers were computed by compiling the kernel's own macros (gcc against
// <linux/vhost.h> and <linux/if_tun.h> on x86-64); the RFC ones from its _IOW() lines.
t.test('ioctl numbers match the kernel headers', async (t) => {
  const cases: Array<[string, number, number]> = [
    ['VHOST_GET_FEATURES', u.VHOST_GET_FEATURES, 0x8008af00],
    ['VHOST_SET_FEATURES', u.VHOST_SET_FEATURES, 0x4008af00],
    ['VHOST_SET_OWNER', u.VHOST_SET_OWNER, 0x0000af01],
    ['VHOST_RESET_OWNER', u.VHOST_RESET_OWNER, 0x0000af02],
    ['VHOST_SET_MEM_TABLE', u.VHOST_SET_MEM_TABLE, 0x4008af03],
    ['VHOST_SET_VRING_NUM', u.VHOST_SET_VRING_NUM, 0x4008af10],
    ['VHOST_SET_VRING_ADDR', u.VHOST_SET_VRING_ADDR, 0x4028af11],
    ['VHOST_SET_VRING_BASE', u.VHOST_SET_VRING_BASE, 0x4008af12],
    ['VHOST_GET_VRING_BASE', u.VHOST_GET_VRING_BASE, 0xc008af12],
    ['VHOST_SET_VRING_KICK', u.VHOST_SET_VRING_KICK, 0x4008af20],
    ['VHOST_SET_VRING_CALL', u.VHOST_SET_VRING_CALL, 0x4008af21],
    ['VHOST_SET_VRING_ERR', u.VHOST_SET_VRING_ERR, 0x4008af22],
    ['VHOST_SET_BACKEND_FEATURES', u.VHOST_SET_BACKEND_FEATURES, 0x4008af25],
    ['VHOST_GET_BACKEND_FEATURES', u.VHOST_GET_BACKEND_FEATURES, 0x8008af26],
    ['VHOST_NET_SET_BACKEND', u.VHOST_NET_SET_BACKEND, 0x4008af30],
    ['TUNSETIFF', u.TUNSETIFF, 0x400454ca],
    ['VHOST_SET_IOTLB_FD', u.VHOST_SET_IOTLB_FD, 0x4004af23],
    ['VHOST_UPDATE_IOTLB', u.VHOST_UPDATE_IOTLB, 0x4020af24],
    ['VHOST_SET_IOTLB_REQUEST_ENTRY', u.VHOST_SET_IOTLB_REQUEST_ENTRY, 0x4020af25],
  ]
  for (const [name, actual, expected] of cases) {
    t.equal(actual, expected, `${name} = 0x${expected.toString(16)}`)
    t.equal(u.ioctlName(actual), name, `${name} has its kernel name`)
  }
})

t.test('RFC numbers differ from upstream ones that share an nr', async (t) => {
  // Same nr 0x25, different size: a stock kernel must not mistake the RFC call for an ack.
  t.not(u.VHOST_SET_IOTLB_REQUEST_ENTRY, u.VHOST_SET_BACKEND_FEATURES)
  t.same(u.decodeIoctl(u.VHOST_SET_IOTLB_REQUEST_ENTRY), {dir: u._IOC_WRITE, size: 32, type: 0xaf, nr: 0x25})
  t.same(u.decodeIoctl(u.VHOST_GET_VRING_BASE), {dir: u._IOC_READ | u._IOC_WRITE, size: 8, type: 0xaf, nr: 0x12})
})

t.test('_IOC encoding', async (t) => {
  t.equal(u._IO(0xaf, 1), 0xaf01)
  t.equal(u._IOR(0xaf, 0, 8), 0x8008af00, 'read direction sets the top bit and stays unsigned')
  t.equal(u._IOWR(0xaf, 0x12, 8), 0xc008af12)
  t.equal(u._IOC(u._IOC_NONE, 0xff, 0xff, 0x3fff), 0x3fffffff, 'largest size')
  t.throws(() => u._IOC(0, 0xaf, 0, 0x4000), RangeError, 'size over 14 bits')
  t.throws(() => u._IOC(4, 0xaf, 0, 0), RangeError, 'direction over 2 bits')
  t.throws(() => u._IOC(0, 0x100, 0, 0), RangeError, 'type over 8 bits')
  t.throws(() => u._IOC(0, 0xaf, 0x100, 0), RangeError, 'nr over 8 bits')
  t.throws(() => u._IOC(0, 0xaf, 0, 1.5), RangeError, 'fractional size')
  t.equal(u.ioctlName(0x4010af99), 'ioctl(_IOC(1, 0xaf, 0x99, 16))', 'unknown numbers are spelled out')
})

t.test('feature bits', async (t) => {
  t.equal(u.VIRTIO_F_ACCESS_PLATFORM, 33)
  t.equal(u.VIRTIO_F_IOMMU_PLATFORM, 33)
  t.equal(u.VIRTIO_F_VERSION_1, 32)
  t.equal(u.VHOST_F_DEVICE_IOTLB, 63)
  t.equal(u.VHOST_BACKEND_F_IOTLB_MSG_V2, 1)
  t.equal(u.featureBit(u.VIRTIO_F_ACCESS_PLATFORM), 0x2_0000_0000n)
  t.equal(u.featureBit(63), 0x8000_0000_0000_0000n)
  t.equal(u.featureBit(u.VHOST_BACKEND_F_IOTLB_MSG_V2), 2n)
  // The feature word measured on Debian 6.1 vhost-net offers bit 33.
  t.not(0x33d008000n & u.featureBit(u.VIRTIO_F_ACCESS_PLATFORM), 0n)
  t.throws(() => u.featureBit(64), RangeError)
  t.throws(() => u.featureBit(-1), RangeError)
})

t.test('message constants', async (t) => {
  t.same(
    [u.VHOST_ACCESS_RO, u.VHOST_ACCESS_WO, u.VHOST_ACCESS_RW],
    [1, 2, 3],
  )
  t.same(
    [u.VHOST_IOTLB_MISS, u.VHOST_IOTLB_UPDATE, u.VHOST_IOTLB_INVALIDATE, u.VHOST_IOTLB_ACCESS_FAIL, u.VHOST_IOTLB_BATCH_BEGIN, u.VHOST_IOTLB_BATCH_END],
    [1, 2, 3, 4, 5, 6],
  )
  t.equal(u.VHOST_IOTLB_MSG, 1)
  t.equal(u.VHOST_IOTLB_MSG_V2, 2)
  t.equal(u.SIZEOF_VHOST_MSG, 72)
  t.equal(u.SIZEOF_VHOST_MSG_V2, 72)
  t.equal(u.SIZEOF_VHOST_IOTLB_MSG, 32)
})

const sample: u.VhostIotlbMsg = {
  iova: 0x0102030405060708n,
  size: 0x1112131415161718n,
  uaddr: 0x2122232425262728n,
  perm: u.VHOST_ACCESS_RW,
  type: u.VHOST_IOTLB_UPDATE,
}
// struct vhost_iotlb_msg bytes for `sample`: three little-endian u64s, perm, type, 6 bytes of padding.
const sampleIotlb = Buffer.from(
  '0807060504030201' + '1817161514131211' + '2827262524232221' + '03' + '02' + '000000000000',
  'hex',
)

t.test('struct vhost_iotlb_msg: 32 bytes, exact layout', async (t) => {
  const b = u.encodeIotlbMsg(sample)
  t.equal(b.length, 32)
  t.same(b, sampleIotlb)
  t.same(u.decodeIotlbMsg(b), sample)
  // Padding from a previous use of the buffer must not leak to the kernel.
  const dirty = Buffer.alloc(40, 0xee)
  u.encodeIotlbMsg(sample, dirty, 4)
  t.same(dirty.subarray(4, 36), sampleIotlb)
  t.equal(dirty[3], 0xee)
  t.equal(dirty[36], 0xee)
  t.same(u.decodeIotlbMsg(dirty, 4), sample)
  t.throws(() => u.encodeIotlbMsg(sample, Buffer.alloc(31)), RangeError)
  t.throws(() => u.decodeIotlbMsg(Buffer.alloc(40), 9), RangeError)
})

t.test('v1 struct vhost_msg: int type at 0, hole at 4..8, union at 8, 72 bytes', async (t) => {
  const b = u.encodeVhostMsg(sample)
  t.equal(b.length, 72)
  t.same(b.subarray(0, 4), Buffer.from('01000000', 'hex'), 'type = VHOST_IOTLB_MSG')
  t.same(b.subarray(4, 8), Buffer.alloc(4), 'hole is zero')
  t.same(b.subarray(8, 40), sampleIotlb, 'iotlb at offset 8')
  t.same(b.subarray(40, 72), Buffer.alloc(32), 'rest of the 64-byte union is zero')
  t.same(u.decodeVhostMsg(b), {version: 1, asid: 0, iotlb: sample})
})

t.test('v2 struct vhost_msg_v2: u32 type, u32 asid, union at 8, 72 bytes', async (t) => {
  const b = u.encodeVhostMsgV2(sample, 0x0a0b0c0d)
  t.equal(b.length, 72)
  t.same(b.subarray(0, 4), Buffer.from('02000000', 'hex'), 'type = VHOST_IOTLB_MSG_V2')
  t.same(b.subarray(4, 8), Buffer.from('0d0c0b0a', 'hex'), 'asid')
  t.same(b.subarray(8, 40), sampleIotlb)
  t.same(b.subarray(40, 72), Buffer.alloc(32))
  t.same(u.decodeVhostMsg(b), {version: 2, asid: 0x0a0b0c0d, iotlb: sample})
  t.equal(u.encodeVhostMsgV2(sample).readUInt32LE(4), 0, 'asid defaults to 0')
  t.throws(() => u.encodeVhostMsgV2(sample, -1), RangeError)
  t.throws(() => u.encodeVhostMsgV2(sample, 2 ** 32), RangeError)
})

t.test('a MISS as the kernel writes it decodes', async (t) => {
  // Measured shape: only type, iova and perm are set.
  const b = Buffer.alloc(72)
  b.writeUInt32LE(2, 0)
  b.writeBigUInt64LE(0x100000n, 8)
  b[32] = u.VHOST_ACCESS_RO
  b[33] = u.VHOST_IOTLB_MISS
  t.same(u.decodeVhostMsg(b), {
    version: 2,
    asid: 0,
    iotlb: {iova: 0x100000n, size: 0n, uaddr: 0n, perm: 1, type: 1},
  })
  // A subarray that does not start at its ArrayBuffer's origin decodes the same.
  const big = Buffer.alloc(100)
  b.copy(big, 10)
  t.same(u.decodeVhostMsg(big.subarray(10, 82)), u.decodeVhostMsg(b))
})

t.test('decode rejects what the kernel would not send', async (t) => {
  t.throws(() => u.decodeVhostMsg(Buffer.alloc(71)), /71 bytes, expected 72/)
  const bad = Buffer.alloc(72)
  bad.writeUInt32LE(3, 0)
  t.throws(() => u.decodeVhostMsg(bad), /unknown vhost message type 3/)
})

t.test('encode range checks', async (t) => {
  t.throws(() => u.encodeIotlbMsg({...sample, iova: -1n}), /iova -1 is not a u64/)
  t.throws(() => u.encodeIotlbMsg({...sample, size: 1n << 64n}), /size .* is not a u64/)
  t.throws(() => u.encodeIotlbMsg({...sample, uaddr: 1 as unknown as bigint}), /uaddr 1 is not a u64/)
  t.throws(() => u.encodeIotlbMsg({...sample, perm: 256}), /perm 256 is not a u8/)
  t.throws(() => u.encodeIotlbMsg({...sample, type: 1.5}), /type 1.5 is not a u8/)
  const max = (1n << 64n) - 1n
  t.same(u.decodeIotlbMsg(u.encodeIotlbMsg({...sample, iova: max, size: max, uaddr: max})).iova, max)
})

t.test('ring and tap argument structs', async (t) => {
  t.same(u.encodeVringState(1, 256), Buffer.from('0100000000010000', 'hex'))
  t.same(u.encodeVringFile(0, -1), Buffer.from('00000000ffffffff', 'hex'))
  const addr = u.encodeVringAddr({index: 1, desc: 0x100000n, used: 0x102000n, avail: 0x101000n})
  t.equal(addr.length, 40)
  t.equal(addr.readUInt32LE(0), 1)
  t.equal(addr.readUInt32LE(4), 0, 'flags default 0')
  t.equal(addr.readBigUInt64LE(8), 0x100000n, 'desc at 8')
  t.equal(addr.readBigUInt64LE(16), 0x102000n, 'used at 16')
  t.equal(addr.readBigUInt64LE(24), 0x101000n, 'avail at 24')
  t.equal(addr.readBigUInt64LE(32), 0n, 'log at 32')
  t.same(u.encodeMemory(), Buffer.alloc(8), 'empty memory table is 8 zero bytes')
  const mem = u.encodeMemory([{guestPhysAddr: 0x1000n, memorySize: 0x2000n, userspaceAddr: 0x7f0000000000n}])
  t.equal(mem.length, 40)
  t.equal(mem.readUInt32LE(0), 1)
  t.equal(mem.readBigUInt64LE(8), 0x1000n)
  t.equal(mem.readBigUInt64LE(16), 0x2000n)
  t.equal(mem.readBigUInt64LE(24), 0x7f0000000000n)
  t.equal(mem.readBigUInt64LE(32), 0n)
  const ifr = u.encodeIfreq('', u.IFF_TAP | u.IFF_NO_PI)
  t.equal(ifr.length, 40)
  t.equal(ifr.readUInt16LE(16), 0x1002)
  const named = u.encodeIfreq('tap7', u.IFF_TAP)
  t.equal(u.decodeIfreqName(named), 'tap7')
  t.equal(u.decodeIfreqName(Buffer.alloc(16, 0x61)), 'a'.repeat(16), 'unterminated name')
  t.throws(() => u.encodeIfreq('x'.repeat(16), 0), RangeError)
})
