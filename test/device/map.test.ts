// Map files: what a listener answers misses from, and the page it answers with.
import t from 'tap'

import {answerFor, parseMap} from '../../src/device/map.js'

const text = `# iova      size   perm  [userspace_addr]
0x100000    64k    rw
0x200800    0x1000 ro    0x7f0000200800   # starts mid-page

0x300000    4k     w     0x7f0000300000
`

t.test('parses ranges, comments and blank lines', async (t) => {
  const ranges = parseMap(text, 'm.txt')
  t.same(ranges, [
    {iova: 0x100000n, size: 0x10000n, perm: 0x11, userspace_addr: undefined, line: 2},
    {iova: 0x200800n, size: 0x1000n, perm: 0x1, userspace_addr: 0x7f00_0020_0800n, line: 3},
    {iova: 0x300000n, size: 0x1000n, perm: 0x10, userspace_addr: 0x7f00_0030_0000n, line: 5},
  ])
})

t.test('rejects bad lines with FILE:LINE and the field', async (t) => {
  t.throws(() => parseMap('0x1000 4k\n', 'm'), {code: 'USAGE', message: 'm:1: expected IOVA SIZE PERM [USERSPACE_ADDR], got 2 fields'})
  t.throws(() => parseMap('\n0x10zz 4k rw\n', 'm'), {message: /^m:2: iova: "0x10zz" is not a number/})
  t.throws(() => parseMap('0x1000 4k rwx\n', 'm'), {message: /^m:1: perm: "rwx" is not a permission/})
  t.throws(() => parseMap('0x1000 0 rw\n', 'm'), {message: 'm:1: size: a range cannot be empty'})
  t.throws(() => parseMap('0xfffffffffffff000 8k rw\n', 'm'), {message: /passes the end of the 64-bit IOVA space/})
  t.throws(() => parseMap('1 2 rw 3 4\n', 'm'), {message: /got 5 fields/})
})

t.test('answers with the page of the miss, clipped to the range', async (t) => {
  const ranges = parseMap(text, 'm')
  t.match(answerFor(ranges, 0x10_5678n), {iova: 0x105000n, size: 0x1000n, userspace_addr: 'auto', perm: 0x11})
  t.match(answerFor(ranges, 0x200900n), {iova: 0x200800n, size: 0x800n, userspace_addr: 0x7f00_0020_0800n}, 'first page starts at the range')
  t.match(answerFor(ranges, 0x201100n), {iova: 0x201000n, size: 0x800n, userspace_addr: 0x7f00_0020_1000n}, 'last page ends with it')
  t.equal(answerFor(ranges, 0x110000n), undefined, 'the end is exclusive')
  t.equal(answerFor(ranges, 0n), undefined)
})
