// The shadow of a real device's IOTLB: upstream's interval-tree rules, one test per rule.
import t from 'tap'

import {MAX_IOTLB_ENTRIES, UpstreamShadow, accessToRfcPerm, rfcPermToAccess} from '../../src/device/kernel/shadow.js'

const U64_MAX = (1n << 64n) - 1n

t.test('RFC perm bits and upstream access bits convert both ways', async (t) => {
  t.same([0, 0x1, 0x10, 0x11].map(rfcPermToAccess), [0, 1, 2, 3])
  t.same([0, 1, 2, 3].map(accessToRfcPerm), [0, 0x1, 0x10, 0x11])
  t.equal(rfcPermToAccess(0x2), undefined, 'bits the RFC does not define')
})

t.test('UPDATE adds a range without an overlap check', async (t) => {
  const s = new UpstreamShadow()
  const a = s.add(0x1000n, 0x2000n, 0x7f00n, 3).range
  const b = s.add(0x2000n, 0x1000n, 0x9f00n, 1).range
  t.same([a.seq, b.seq], [1, 2])
  t.same([a.start, a.last], [0x1000n, 0x2fffn])
  t.equal(s.size, 2, 'overlapping ranges both kept')
  t.throws(() => s.add(0x1000n, 0n, 0n, 3), RangeError, 'size 0 never reaches the shadow')
  t.throws(() => s.add(U64_MAX, 2n, 0n, 3), RangeError, 'a wrapping range never reaches the shadow')
  t.doesNotThrow(() => s.add(U64_MAX, 1n, 0n, 3), 'the last byte of the space')
})

t.test('the oldest range is evicted beyond the limit (FIFO), default 2048', async (t) => {
  t.equal(new UpstreamShadow().limit, MAX_IOTLB_ENTRIES)
  t.equal(MAX_IOTLB_ENTRIES, 2048)
  const s = new UpstreamShadow<string>(3)
  for (let i = 0; i < 3; i++) t.same(s.add(BigInt(i) << 12n, 0x1000n, 0n, 3, `m${i}`).evicted, [])
  const {evicted} = s.add(0x9000n, 0x1000n, 0n, 3, 'm3')
  t.same(evicted.map((r) => r.backing), ['m0'], 'the first one written goes, with its backing')
  t.same(s.ranges().map((r) => r.backing), ['m1', 'm2', 'm3'])
  const full = new UpstreamShadow()
  for (let i = 0; i < 2049; i++) full.add(BigInt(i) << 12n, 0x1000n, 0n, 3)
  t.equal(full.size, 2048)
  t.equal(full.ranges()[0]!.start, 0x1000n, 'range 0 evicted by the 2049th')
  const unlimited = new UpstreamShadow(0)
  for (let i = 0; i < 3000; i++) unlimited.add(BigInt(i) << 12n, 0x1000n, 0n, 3)
  t.equal(unlimited.size, 3000, 'limit 0: no limit, as in the kernel')
})

t.test('INVALIDATE removes every overlapping range and splits none', async (t) => {
  const s = new UpstreamShadow()
  s.add(0x0n, 0x10000n, 0x100000n, 3) // [0, 0xffff]
  s.add(0x8000n, 0x1000n, 0x200000n, 3) // inside it
  s.add(0x20000n, 0x1000n, 0x300000n, 3) // elsewhere
  const removed = s.invalidate(0x8800n, 1n)
  t.same(removed.map((r) => r.seq), [1, 2], 'both ranges holding 0x8800 go, whole')
  t.same(s.ranges().map((r) => r.seq), [3])
  t.same(s.invalidate(0x1f000n, 0x1000n), [], 'an adjacent range does not overlap')
  t.same(s.invalidate(0x1f000n, 0x1001n).map((r) => r.seq), [3], 'one byte of overlap is enough')
})

t.test('INVALIDATE end is iova + size - 1 in u64: iova 0 size 0 flushes everything', async (t) => {
  const s = new UpstreamShadow()
  s.add(0x1000n, 0x1000n, 0n, 3)
  s.add(0xffff_ffff_ffff_0000n, 0x10000n, 0n, 3)
  t.equal(s.invalidate(0n, 0n).length, 2)
  t.equal(s.size, 0)
  // size 0 elsewhere: [iova, iova - 1] only hits a range holding both iova - 1 and iova.
  s.add(0x1000n, 0x2000n, 0n, 3) // [0x1000, 0x2fff]
  s.add(0x2000n, 0x1000n, 0n, 3) // [0x2000, 0x2fff]
  t.same(s.invalidate(0x2000n, 0n).map((r) => r.seq), [3])
})

t.test('translate walks ranges as translate_desc does', async (t) => {
  const s = new UpstreamShadow()
  s.add(0x1000n, 0x1000n, 0x7f0000001000n, 3)
  s.add(0x2000n, 0x2000n, 0x7f0000009000n, 1)
  t.same(s.translate(0x1800n, 0x1000n), {
    status: 'ok',
    iov: [
      {iova: 0x1800n, userspace_addr: 0x7f0000001800n, len: 0x800n},
      {iova: 0x2000n, userspace_addr: 0x7f0000009000n, len: 0x800n},
    ],
  })
  t.same(s.translate(0x3ff0n, 0x20n), {status: 'miss', iova: 0x4000n}, 'the miss is at the exact address, not its page')
  t.same(s.translate(0x500n, 1n), {status: 'miss', iova: 0x500n})
  t.same(s.translate(0x1000n, 0n), {status: 'ok', iov: []}, 'zero length touches nothing')
})

t.test('translate takes the overlapping range with the lowest start, the oldest on a tie', async (t) => {
  const s = new UpstreamShadow()
  s.add(0x2000n, 0x1000n, 0xa000n, 3)
  s.add(0x1000n, 0x3000n, 0xb000n, 3)
  s.add(0x1000n, 0x3000n, 0xd000n, 3)
  t.same(s.first(0x2000n, 0x2000n)?.seq, 2, 'lowest start wins over the exact match; the older of two equal starts')
  t.same(s.translate(0x2000n, 1n), {status: 'ok', iov: [{iova: 0x2000n, userspace_addr: 0xc000n, len: 1n}]})
  // A lower-starting range that begins after the address still means a miss, as in the kernel.
  const gap = new UpstreamShadow()
  gap.add(0x3000n, 0x1000n, 0n, 3)
  t.same(gap.translate(0x2800n, 0x1000n), {status: 'miss', iova: 0x2800n})
})

t.test('translate refuses a range without access bits, and a full iovec array', async (t) => {
  const s = new UpstreamShadow()
  s.add(0x1000n, 0x1000n, 0n, 0)
  const r = s.translate(0x1000n, 1n)
  t.equal(r.status, 'fault')
  t.match(r, {errno: 'EPERM', reason: /no access bits/})
  const many = new UpstreamShadow()
  for (let i = 0n; i < 4n; i++) many.add(i, 1n, 0x1000n + i, 3)
  t.match(many.translate(0n, 4n, 3), {status: 'fault', errno: 'ENOBUFS'})
  t.equal(many.translate(0n, 4n, 4).status, 'ok')
})

t.test('clear and lookup by sequence number', async (t) => {
  const s = new UpstreamShadow<number>()
  s.add(0x1000n, 0x1000n, 0n, 3, 7)
  t.equal(s.bySeq(1)?.backing, 7)
  t.equal(s.bySeq(2), undefined)
  t.same(s.clear().map((r) => r.backing), [7])
  t.equal(s.size, 0)
})
