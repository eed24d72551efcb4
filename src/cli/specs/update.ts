import {PERM_CHOICES, permSchema, sizeSchema, typeSchema, u64OrAutoSchema, u64Schema} from '../../device/entry.js'
import {updateJson} from '../../format/json.js'
import {updateText} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'update',
  summary: 'VHOST_UPDATE_IOTLB type UPDATE: map an IOVA page to a user address.',
  description:
    'Writes the entry into slot (IOVA >> 12) & 1023, replacing whatever the slot held (a hash collision evicts). If a miss for exactly this IOVA is pending, the update completes it, as the RFC does. The entry is valid unless --invalid. On a real device the mapping is backed by memory the tool allocates (--uaddr auto, the default); a raw --uaddr needs --unsafe-uaddr.',
  examples: [
    'vhost-iotlb update --iova 0x1000 --size 4k --uaddr 0x7f00_0000_1000 --perm rw',
    'vhost-iotlb update --iova 0x2000 --size 0x1000 --uaddr 0x7f0000002000 --perm ro --json',
    'vhost-iotlb update --iova 0x3000 --size 4k --uaddr 0x7f0000003000 --invalid',
    'vhost-iotlb update --iova 0x100000 --size 64k --device /dev/vhost-net',
  ],
  args: [],
  flags: {
    iova: {kind: 'value', description: 'I/O virtual address (u64)', helpValue: 'ADDR', schema: u64Schema('--iova'), required: true},
    size: {kind: 'value', description: 'length of the mapping (u64; k/m/g suffixes)', helpValue: 'SIZE', schema: sizeSchema('--size'), required: true},
    uaddr: {
      kind: 'value',
      description: 'userspace address the IOVA maps to; auto (real devices): memory the tool allocates',
      helpValue: 'ADDR',
      schema: u64OrAutoSchema('--uaddr'),
    },
    perm: {
      kind: 'value',
      description: 'access: none, ro, wo, rw (also r, w, read, write, 0x0, 0x1, 0x10, 0x11)',
      helpValue: 'PERM',
      schema: permSchema('--perm'),
      default: 'rw',
      options: PERM_CHOICES,
    },
    invalid: {kind: 'boolean', description: 'store the entry with flags.valid = INVALID (0x1) instead of VALID (0x2)'},
    type: {
      kind: 'value',
      description: 'raw flags.type to send: update (default), invalidate, miss, or a byte; anything but update/invalidate is EINVAL',
      helpValue: 'TYPE',
      schema: typeSchema('--type'),
      default: 'update',
      options: ['update', 'invalidate', 'miss'],
    },
    'unsafe-uaddr': {
      kind: 'boolean',
      description: 'real devices: accept that the kernel will read and write the raw --uaddr in this process',
    },
    ...deviceFlags,
  },
  async run({flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.update({
      iova: flags.iova,
      size: flags.size,
      userspace_addr: flags.uaddr ?? 'auto',
      perm: flags.perm,
      type: flags.type,
      valid: !flags.invalid,
      unsafe_uaddr: flags['unsafe-uaddr'],
    })
    return {json: updateJson(result), text: () => updateText(result), warnings: result.warnings}
  },
})
