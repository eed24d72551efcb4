// One test per rule of the RFC patch, named after the rule. The model is pure, so each test
// builds a device, drives it like the ioctls would and reads the struct fields back.
import t from 'tap'

import {
  type IotlbEntry,
  PAGE_MASK,
  U64_MAX,
  VHOST_IOTLB_INVALID,
  VHOST_IOTLB_INVALIDATE,
  VHOST_IOTLB_MISS,
  VHOST_IOTLB_UPDATE,
  VHOST_IOTLB_VALID,
  decodeEntry,
  initialSlot,
  iotlbHash,
  zeroEntry,
} from '../../src/device/entry.js'
import {DeviceError} from '../../src/device/errors.js'
import {type ModelState, RfcIotlb, TranslateWalk, freshState} from '../../src/device/emulated/model.js'
import type {ModelName} from '../../src/device/entry.js'

function entry(fields: Partial<IotlbEntry>): IotlbEntry {
  return {...zeroEntry(), type: VHOST_IOTLB_UPDATE, valid: VHOST_IOTLB_VALID, perm: 0x11, ...fields}
}

function device(model: ModelName = 'rfc'): RfcIotlb {
  return new RfcIotlb(freshState(model))
}

/** A device that can post misses: eventfd and request entry set. */
function armed(model: ModelName = 'rfc'): RfcIotlb {
  const dev = device(model)
  dev.setIotlbFd(7)
  dev.setRequestEntry(0x7f00_0000_0000n)
  return dev
}

function translate(dev: RfcIotlb, iova: bigint, len: bigint, iovSize?: number) {
  return new TranslateWalk(iova, len, iovSize).run(dev)
}

t.test('vhost_dev_init: every slot zeroed with valid INVALID, pending type INVALIDATE', async (t) => {
  const state: ModelState = freshState('rfc')
  t.equal(state.iotlb.length, 1024)
  t.ok(state.iotlb.every((slot) => slot.valid === VHOST_IOTLB_INVALID && slot.iova === 0n && slot.type === 0))
  t.equal(state.pending.type, VHOST_IOTLB_INVALIDATE)
  t.equal(state.iotlb_fd, null)
  t.equal(state.request_entry, null)
})

t.test('vhost_iotlb_hash: (iova >> PAGE_SHIFT) & (VHOST_IOTLB_SIZE - 1)', async (t) => {
  t.equal(iotlbHash(0n), 0)
  t.equal(iotlbHash(0xfffn), 0, 'offset within a page does not change the slot')
  t.equal(iotlbHash(0x1000n), 1)
  t.equal(iotlbHash(0x3ff000n), 1023)
  t.equal(iotlbHash(0x400000n), 0, 'the 1025th page wraps to slot 0')
  t.equal(iotlbHash(U64_MAX), 1023)
})

t.test('UPDATE copies the whole entry into its slot', async (t) => {
  const dev = device()
  const e = entry({iova: 0x5000n, size: 0x1000n, userspace_addr: 0xdead_b000n, perm: 0x1, u8_padding: 0xaa, padding: 0x1234})
  const {slot, written} = dev.updateIotlb(e)
  t.equal(slot, 5)
  t.ok(written)
  t.same(dev.state.iotlb[5], e, 'every field, padding included, as `d->iotlb[index] = entry`')
})

t.test('UPDATE stores an unaligned iova as given', async (t) => {
  const dev = armed()
  dev.updateIotlb(entry({iova: 0x1234n, size: 0x1000n, userspace_addr: 0x9000n}))
  t.equal(dev.state.iotlb[1]!.iova, 0x1234n)
  const result = translate(dev, 0x1234n, 1n)
  t.equal(result.status, 'miss', 'the slot never matches iova & PAGE_MASK')
})

t.test('hash collisions evict', async (t) => {
  const dev = device()
  dev.updateIotlb(entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0xa000n}))
  const {slot} = dev.updateIotlb(entry({iova: 0x401000n, size: 0x1000n, userspace_addr: 0xb000n}))
  t.equal(slot, 1, '0x401000 hashes to the same slot as 0x1000')
  t.equal(dev.state.iotlb[1]!.iova, 0x401000n, 'the later update replaced the earlier one')
  const dev2 = armed()
  dev2.updateIotlb(entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0xa000n}))
  dev2.updateIotlb(entry({iova: 0x401000n, size: 0x1000n, userspace_addr: 0xb000n}))
  t.equal(translate(dev2, 0x1000n, 1n).status, 'miss', 'the evicted page misses')
})

t.test('INVALIDATE replaces the slot when the iova matches', async (t) => {
  const dev = device()
  dev.updateIotlb(entry({iova: 0x2000n, size: 0x1000n, userspace_addr: 0xc000n}))
  const inv = {...zeroEntry(), iova: 0x2000n, type: VHOST_IOTLB_INVALIDATE, valid: VHOST_IOTLB_INVALID}
  const {written} = dev.updateIotlb(inv)
  t.ok(written)
  t.same(dev.state.iotlb[2], inv)
})

t.test('invalidate on a mismatched iova is a no-op', async (t) => {
  const dev = device()
  const held = entry({iova: 0x2000n, size: 0x1000n, userspace_addr: 0xc000n})
  dev.updateIotlb(held)
  const {slot, written} = dev.updateIotlb({...zeroEntry(), iova: 0x402000n, type: VHOST_IOTLB_INVALIDATE, valid: VHOST_IOTLB_INVALID})
  t.equal(slot, 2)
  t.notOk(written)
  t.same(dev.state.iotlb[2], held, 'the slot is untouched')
  t.notOk(dev.updateIotlb({...zeroEntry(), iova: 0x2001n, type: VHOST_IOTLB_INVALIDATE}).written, 'an offset iova does not match either')
})

t.test('INVALIDATE of iova 0 hits a fresh slot 0 (its iova is 0)', async (t) => {
  const dev = device()
  t.ok(dev.updateIotlb({...zeroEntry(), iova: 0n, type: VHOST_IOTLB_INVALIDATE, valid: VHOST_IOTLB_INVALID}).written)
  t.equal(dev.state.iotlb[0]!.type, VHOST_IOTLB_INVALIDATE)
})

t.test('any other type is EINVAL and changes nothing', async (t) => {
  for (const type of [0, VHOST_IOTLB_MISS, 4, 0xff]) {
    const dev = armed()
    translate(dev, 0x3000n, 1n) // a pending miss for 0x3000
    const before = structuredClone(dev.state)
    t.throws(() => dev.updateIotlb(entry({iova: 0x3000n, type, size: 0x1000n, userspace_addr: 1n})), new DeviceError('VHOST_UPDATE_IOTLB', 'EINVAL', `flags.type ${type} is neither UPDATE (2) nor INVALIDATE (3)`))
    t.same(dev.state, before, `type ${type}: no slot written, the pending miss not completed`)
  }
})

t.test('completing a pending miss only on UPDATE of the same iova', async (t) => {
  const dev = armed()
  t.equal(translate(dev, 0x3000n, 1n).status, 'miss')
  t.notOk(dev.updateIotlb(entry({iova: 0x4000n, size: 0x1000n, userspace_addr: 1n})).completed, 'another page does not complete it')
  t.notOk(dev.updateIotlb(entry({iova: 0x3008n, size: 0x1000n, userspace_addr: 1n})).completed, 'an unaligned iova in the page does not either')
  t.notOk(
    dev.updateIotlb({...zeroEntry(), iova: 0x3000n, type: VHOST_IOTLB_INVALIDATE, valid: VHOST_IOTLB_INVALID}).completed,
    'INVALIDATE never completes',
  )
  t.ok(dev.waiting)
  const answer = entry({iova: 0x3000n, size: 0x1000n, userspace_addr: 0xe000n})
  t.ok(dev.updateIotlb(answer).completed)
  t.same(dev.state.pending, answer, 'pending_request = entry')
  t.notOk(dev.waiting)
})

t.test('an UPDATE marked invalid still completes the miss, and the waiter faults', async (t) => {
  const dev = armed()
  const walk = new TranslateWalk(0x3000n, 1n)
  t.equal(walk.run(dev).status, 'miss')
  t.ok(dev.updateIotlb(entry({iova: 0x3000n, size: 0x1000n, userspace_addr: 0xe000n, valid: VHOST_IOTLB_INVALID})).completed)
  const result = walk.resume(dev)
  t.equal(result.status, 'fault')
  t.match(result, {errno: 'EFAULT'})
})

t.test('a miss without an fd or request entry faults', async (t) => {
  const noFd = device()
  noFd.setRequestEntry(0x1000n)
  t.match(translate(noFd, 0x1000n, 1n), {status: 'fault', errno: 'EFAULT', reason: /no eventfd/})
  const noEntry = device()
  noEntry.setIotlbFd(3)
  t.match(translate(noEntry, 0x1000n, 1n), {status: 'fault', errno: 'EFAULT', reason: /no request entry/})
  t.equal(noEntry.state.eventfd_signals, 0, 'nothing signalled')
  t.equal(noEntry.state.pending.type, VHOST_IOTLB_INVALIDATE, 'nothing posted')
  const cleared = armed()
  cleared.setIotlbFd(-1)
  t.match(translate(cleared, 0x1000n, 1n), {status: 'fault', reason: /no eventfd/}, 'set-fd -1 clears the eventfd')
})

t.test('a second miss while one is outstanding faults', async (t) => {
  const dev = armed()
  t.equal(translate(dev, 0x1000n, 1n).status, 'miss')
  const before = structuredClone(dev.state)
  t.match(translate(dev, 0x2000n, 1n), {status: 'fault', errno: 'EFAULT', reason: /already outstanding/})
  t.same(dev.state, before, 'no second request written, no second signal')
})

t.test('vhost_iotlb_miss writes the request and signals the eventfd', async (t) => {
  const dev = armed()
  const result = translate(dev, 0x5678n, 1n)
  t.equal(result.status, 'miss')
  if (result.status !== 'miss') return
  t.equal(result.iova, 0x5000n, 'pending.iova = iova & PAGE_MASK')
  t.equal(dev.state.eventfd_signals, 1)
  const written = decodeEntry(dev.state.request_bytes!)
  t.equal(written.iova, 0x5000n)
  t.equal(written.type, VHOST_IOTLB_MISS)
  t.same(written, dev.state.pending, 'the 32 bytes are the pending request')
})

t.test('the request bytes carry the stale fields', async (t) => {
  const dev = armed()
  const walk = new TranslateWalk(0x1000n, 1n)
  walk.run(dev)
  const answer = entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x7f00_1234_5000n, perm: 0x10, padding: 9})
  dev.updateIotlb(answer)
  walk.resume(dev)
  const second = translate(dev, 0x9000n, 1n)
  t.equal(second.status, 'miss')
  if (second.status !== 'miss') return
  const bytes = Buffer.from(dev.state.request_bytes!)
  t.equal(
    bytes.toString('hex'),
    '0090000000000000' + '0010000000000000' + '0050341200' + '7f0000' + '10' + '01' + '02' + '00' + '09000000',
    'iova and type are new; size, userspace_addr, perm, valid and padding are the previous answer',
  )
  t.match(second.warnings, [{code: 'stale-request-fields'}])
  const fixed = armed('fixed')
  const fixedWalk = new TranslateWalk(0x1000n, 1n)
  fixedWalk.run(fixed)
  fixed.updateIotlb(answer)
  fixedWalk.resume(fixed)
  translate(fixed, 0x9000n, 1n)
  t.same(decodeEntry(fixed.state.request_bytes!), {...zeroEntry(), iova: 0x9000n, type: VHOST_IOTLB_MISS}, 'the fixed model zeroes them')
})

t.test('the rfc and fixed arithmetic on a two-page translate', async (t) => {
  const map = (dev: RfcIotlb) => {
    dev.updateIotlb(entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x7f00_0000_1000n}))
    dev.updateIotlb(entry({iova: 0x2000n, size: 0x1000n, userspace_addr: 0x7f00_0000_8000n}))
  }

  const rfc = armed('rfc')
  map(rfc)
  const r = translate(rfc, 0x1800n, 0x1000n)
  t.match(r, {status: 'ok'})
  if (r.status === 'ok') {
    t.same(
      r.iov,
      [{iova: 0x1800n, userspace_addr: 0x7f00_0000_1800n, len: 0x1000n}],
      'size = userspace_addr + size - iova is huge: one iovec runs past the first page into unmapped memory',
    )
    t.match(r.warnings, [{code: 'size-arithmetic'}])
  }

  const fixed = armed('fixed')
  map(fixed)
  const f = translate(fixed, 0x1800n, 0x1000n)
  t.match(f, {status: 'ok'})
  if (f.status === 'ok') {
    t.same(f.iov, [
      {iova: 0x1800n, userspace_addr: 0x7f00_0000_1800n, len: 0x800n},
      {iova: 0x2000n, userspace_addr: 0x7f00_0000_8000n, len: 0x800n},
    ])
    t.equal(f.warnings, undefined)
  }
})

t.test('rfc arithmetic: userspace_addr below iova shrinks the step', async (t) => {
  // uaddr + size - iova = 0x500 + 0x1000 - 0x1000 = 0x500 bytes for the first step.
  const dev = armed('rfc')
  dev.updateIotlb(entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x500n}))
  const r = translate(dev, 0x1000n, 0x800n)
  // Step 2 lands at 0x1500, hits the same slot, and 0x500 + 0x1000 - 0x1500 = 0: zero-length
  // iovecs until the array is full.
  t.match(r, {status: 'fault', errno: 'ENOBUFS'})
  t.match(r.warnings?.[0], {code: 'size-arithmetic', message: /0x500/})
  const fixed = armed('fixed')
  fixed.updateIotlb(entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x500n}))
  const f = translate(fixed, 0x1000n, 0x800n)
  t.match(f, {status: 'ok'})
  if (f.status === 'ok') t.same(f.iov, [{iova: 0x1000n, userspace_addr: 0x500n, len: 0x800n}])
})

t.test('u64 wrap-around', async (t) => {
  const dev = armed('rfc')
  // userspace_addr + size overflows: (0xffff_ffff_ffff_f000 + 0x2000 - 0x1000) mod 2^64 = 0
  dev.updateIotlb(entry({iova: 0x1000n, size: 0x2000n, userspace_addr: 0xffff_ffff_ffff_f000n}))
  const r = translate(dev, 0x1000n, 0x10n, 4)
  t.match(r, {status: 'fault', errno: 'ENOBUFS'}, 'a zero-byte step repeats until the iovec array is full')
  const top = armed('rfc')
  top.updateIotlb(entry({iova: 0xffff_ffff_ffff_f000n, size: 0x1000n, userspace_addr: 0xffff_ffff_ffff_f000n}))
  const hit = translate(top, 0xffff_ffff_ffff_ff00n, 0x100n)
  t.match(hit, {status: 'ok'})
  if (hit.status === 'ok') t.same(hit.iov, [{iova: 0xffff_ffff_ffff_ff00n, userspace_addr: 0xffff_ffff_ffff_ff00n, len: 0x100n}])
  const fixed = armed('fixed')
  fixed.updateIotlb(entry({iova: 0xffff_ffff_ffff_f000n, size: 0x1000n, userspace_addr: 0x1000n}))
  const f = translate(fixed, 0xffff_ffff_ffff_ff00n, 0x200n)
  t.match(f, {status: 'miss', iova: 0n}, 'the walk wraps from the last page of the address space to iova 0')
})

t.test('len above u32', async (t) => {
  const {EmulatedDevice} = await import('../../src/device/emulated/device.js')
  const dir = t.testdir()
  const dev = await EmulatedDevice.open(`${dir}/emu.json`, 'emu')
  await t.rejects(dev.translate(0n, 0x1_0000_0000n), {code: 'EINVAL'}, 'translate_iotlb takes u32 len')
  t.match(await dev.translate(0n, 0n), {status: 'ok', iov: []}, 'len 0: the loop never runs')
})

t.test('ENOBUFS when the iovec array is full', async (t) => {
  const dev = armed('fixed')
  for (let page = 0n; page < 4n; page++) dev.updateIotlb(entry({iova: page * 0x1000n, size: 0x1000n, userspace_addr: page * 0x1000n}))
  t.match(translate(dev, 0n, 0x4000n, 3), {status: 'fault', errno: 'ENOBUFS'})
  t.match(translate(dev, 0n, 0x3000n, 3), {status: 'ok'})
})

t.test('the woken waiter uses the completed request, not the slot', async (t) => {
  const dev = armed('rfc')
  const walk = new TranslateWalk(0x1000n, 0x10n)
  t.equal(walk.run(dev).status, 'miss')
  dev.updateIotlb(entry({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x1000n}))
  // Evict the slot before the waiter runs: `entry = &miss` still serves this step.
  dev.updateIotlb(entry({iova: 0x401000n, size: 0x1000n, userspace_addr: 0x9000n}))
  const r = walk.resume(dev)
  t.match(r, {status: 'ok'})
  if (r.status === 'ok') t.same(r.iov, [{iova: 0x1000n, userspace_addr: 0x1000n, len: 0x10n}])
})

t.test('VHOST_SET_IOTLB_REQUEST_ENTRY: access_ok for 32 bytes', async (t) => {
  const dev = device()
  t.equal(dev.setRequestEntry(0x7fff_ffff_efe0n), 0x7fff_ffff_efe0n, 'the last 32 bytes below the limit')
  t.throws(() => dev.setRequestEntry(0x7fff_ffff_efe1n), {code: 'EFAULT'})
  t.equal(dev.state.request_entry, 0x7fff_ffff_efe0n, 'a refused address changes nothing')
  t.equal(dev.setRequestEntry(0n), 0n, 'access_ok only checks the range')
})

t.test('initialSlot and PAGE_MASK', async (t) => {
  t.same(initialSlot(), {...zeroEntry(), valid: VHOST_IOTLB_INVALID})
  t.equal(PAGE_MASK, 0xffff_ffff_ffff_f000n)
})
