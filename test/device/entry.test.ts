// struct vhost_iotlb_entry's codec against known byte strings, and the number syntax of every
// field, accepted and rejected.
import t from 'tap'

import {
  ENTRY_SIZE,
  type IotlbEntry,
  decodeEntry,
  encodeEntry,
  entryFromHex,
  entryToHex,
  numberSchema,
  permName,
  permSchema,
  sizeSchema,
  typeName,
  typeSchema,
  u64Schema,
} from '../../src/device/entry.js'

const known: Array<[string, IotlbEntry, string]> = [
  [
    'an UPDATE, rw, valid',
    {iova: 0x1000n, size: 0x1000n, userspace_addr: 0x7f00_0000_1000n, perm: 0x11, type: 2, valid: 2, u8_padding: 0, padding: 0},
    '0010000000000000' + '0010000000000000' + '0010000000' + '7f0000' + '11020200' + '00000000',
  ],
  [
    'a MISS request as vhost_dev_init leaves pending (type INVALIDATE) then iova/type set',
    {iova: 0xffff_ffff_ffff_f000n, size: 0n, userspace_addr: 0n, perm: 0, type: 1, valid: 0, u8_padding: 0, padding: 0},
    '00f0ffffffffffff' + '0000000000000000' + '0000000000000000' + '00010000' + '00000000',
  ],
  [
    'padding bytes are carried',
    {iova: 1n, size: 2n, userspace_addr: 3n, perm: 0x10, type: 3, valid: 1, u8_padding: 0xab, padding: 0xdeadbeef},
    '0100000000000000' + '0200000000000000' + '0300000000000000' + '100301ab' + 'efbeadde',
  ],
]

t.test('encode/decode round-trips with known byte strings', async (t) => {
  for (const [name, entry, hex] of known) {
    const bytes = encodeEntry(entry)
    t.equal(bytes.length, ENTRY_SIZE, `${name}: 32 bytes`)
    t.equal(Buffer.from(bytes).toString('hex'), hex, `${name}: little-endian layout`)
    t.same(decodeEntry(Buffer.from(hex, 'hex')), entry, `${name}: decodes back`)
    t.same(entryFromHex(entryToHex(entry)), entry)
  }
})

t.test('decode reads at an offset and refuses a short buffer', async (t) => {
  const buffer = Buffer.alloc(40)
  buffer.write(known[0]![2], 8, 'hex')
  t.same(decodeEntry(buffer, 8), known[0]![1])
  t.throws(() => decodeEntry(Buffer.alloc(31)), RangeError)
})

t.test('names of perm and type bytes', async (t) => {
  t.same([0, 1, 0x10, 0x11, 0x3].map(permName), ['none', 'ro', 'wo', 'rw', '0x3'])
  t.same([0, 1, 2, 3, 9].map(typeName), ['none', 'miss', 'update', 'invalidate', '0x9'])
})

function parse(schema: ReturnType<typeof numberSchema> | ReturnType<typeof permSchema>, text: string) {
  const result = schema.safeParse(text)
  return result.success ? {value: result.data} : {error: result.error.issues[0]!.message}
}

t.test('u64 accepted', async (t) => {
  const cases: Array<[string, bigint]> = [
    ['0', 0n],
    ['4096', 4096n],
    ['0x1000', 0x1000n],
    ['0X1000', 0x1000n],
    ['0x7f00_0000_1000', 0x7f00_0000_1000n],
    ['1_000_000', 1_000_000n],
    ['0xffffffffffffffff', 0xffff_ffff_ffff_ffffn],
    ['18446744073709551615', 0xffff_ffff_ffff_ffffn],
    ['0xABCdef', 0xabcdefn],
    ['000010', 10n],
  ]
  for (const [text, value] of cases) t.same(parse(u64Schema('--iova'), text), {value}, text)
})

t.test('u64 rejected, naming the field and showing the text', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /^--iova: "" is not a number/],
    ['-1', /^--iova: "-1" is not a number/],
    ['0x', /"0x" is not a number/],
    ['1_', /"1_" is not a number/],
    ['_1', /"_1" is not a number/],
    ['1__0', /"1__0" is not a number/],
    ['0x_1', /"0x_1" is not a number/],
    ['12abc', /"12abc" is not a number/],
    ['1.5', /"1.5" is not a number/],
    [' 1', /" 1" is not a number/],
    ['4k', /"4k" is not a number/],
    ['0x1_0000_0000_0000_0000', /^--iova: "0x1_0000_0000_0000_0000" is out of range for a u64/],
    ['18446744073709551616', /out of range for a u64/],
    ['１２', /is not a number/],
    ['1\u00002', /"1\\u00002" is not a number/],
    ['9'.repeat(500), /"9{40}…" is out of range/],
  ]
  for (const [text, message] of cases) {
    const result = parse(u64Schema('--iova'), text)
    t.match(result, {error: message}, JSON.stringify(text).slice(0, 30))
  }
})

t.test('sizes take k/m/g suffixes, powers of 1024', async (t) => {
  const cases: Array<[string, bigint]> = [
    ['4k', 4096n],
    ['4K', 4096n],
    ['2m', 2n << 20n],
    ['1g', 1n << 30n],
    ['0x10k', 0x4000n],
    ['1_024', 1024n],
    ['16777215g', 16_777_215n << 30n],
  ]
  for (const [text, value] of cases) t.same(parse(sizeSchema('--size'), text), {value}, text)
  t.match(parse(sizeSchema('--size'), '4kb'), {error: /^--size: "4kb" is not a number/})
  t.match(parse(sizeSchema('--size'), 'k'), {error: /is not a number/})
  t.match(parse(sizeSchema('--size'), '17179869184g'), {error: /out of range for a u64/}, '2^34 g = 2^64')
})

t.test('bounded numbers: a u32 length and a slot', async (t) => {
  const len = numberSchema('--len', {units: true, max: 0xffff_ffffn, what: 'a u32'})
  t.same(parse(len, '0xffffffff'), {value: 0xffff_ffffn})
  t.match(parse(len, '4g'), {error: /^--len: "4g" is out of range for a u32 \(0\.\.0xffffffff\)/})
  const slot = numberSchema('--slot', {max: 1023n, what: 'a slot number'})
  t.match(parse(slot, '1024'), {error: /out of range for a slot number \(0\.\.1023\)/})
})

t.test('perm spellings map to the RFC bits', async (t) => {
  const cases: Array<[string, number]> = [
    ['none', 0],
    ['ro', 1],
    ['r', 1],
    ['read', 1],
    ['wo', 0x10],
    ['w', 0x10],
    ['write', 0x10],
    ['rw', 0x11],
    ['RW', 0x11],
    ['0x0', 0],
    ['0x1', 1],
    ['0x10', 0x10],
    ['0x11', 0x11],
  ]
  for (const [text, value] of cases) t.same(parse(permSchema('--perm'), text), {value}, text)
  for (const bad of ['', 'rwx', '0x2', '3', 'readwrite']) {
    t.match(parse(permSchema('--perm'), bad), {error: /^--perm: .* is not a permission/}, bad)
  }
})

t.test('type: names or a raw byte', async (t) => {
  const schema = typeSchema('--type')
  t.same(schema.safeParse('update').data, 2)
  t.same(schema.safeParse('miss').data, 1)
  t.same(schema.safeParse('0xff').data, 0xff)
  t.notOk(schema.safeParse('0x100').success)
  t.notOk(schema.safeParse('flush').success)
})
