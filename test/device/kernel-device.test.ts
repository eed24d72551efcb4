// KernelDevice's protocol logic against a fake FFI that answers as measured on 6.1 vhost-net
// (or as the RFC patch would). The real kernel is in test/kernel/real-kernel.test.ts.
import t from 'tap'

import {UsageError} from '../../src/device/errors.js'
import {KernelDevice, type KernelOpenOptions} from '../../src/device/kernel/device.js'
import {
  DevicePermissionError,
  NoIotlbError,
  NoRfcIoctlsError,
  NoSuchDeviceError,
  NotVhostError,
  OwnerBusyError,
} from '../../src/device/kernel/errors.js'
import * as u from '../../src/device/kernel/uapi.js'
import {FakeVhost, type FakeOptions} from '../fixtures/kernel/fake-sys.js'

const UPDATE = 2
const base = {type: UPDATE, valid: true, perm: 0x11}

async function open(fake: FakeOptions = {}, options: KernelOpenOptions & {path?: string} = {}) {
  const sys = new FakeVhost(fake)
  const device = await KernelDevice.open(options.path ?? '/dev/vhost-net', options.path ?? '/dev/vhost-net', {env: {}, maxEntries: 2048, ...options, sys})
  return {sys, device}
}

t.test('open: each failure has its own named error', async (t) => {
  await t.rejects(open({openErrors: {'/dev/vhost-net': 'ENOENT'}}), NoSuchDeviceError)
  await t.rejects(open({openErrors: {'/dev/vhost-net': 'ENOENT'}}), {code: 'ENOENT', message: /^open \/dev\/vhost-net: ENOENT \(no such device/})
  await t.rejects(open({openErrors: {'/dev/vhost-net': 'EACCES'}}), DevicePermissionError)
  await t.rejects(open({openErrors: {'/dev/vhost-net': 'EACCES'}}), {code: 'EACCES', message: /need root, or a file descriptor granted/})
  await t.rejects(open({ownerError: 'ENOTTY'}), NotVhostError)
  await t.rejects(open({ownerError: 'ENOTTY'}), {code: 'ENOTTY', message: 'VHOST_SET_OWNER: ENOTTY (/dev/vhost-net is not a vhost device: it does not answer the vhost ioctls)'})
  await t.rejects(open({ownerError: 'EBUSY'}), OwnerBusyError)
  await t.rejects(open({ownerError: 'EBUSY'}), {code: 'EBUSY', message: /owner already set/})
})

t.test('open closes the fd when a later step fails', async (t) => {
  const sys = new FakeVhost({ownerError: 'EBUSY'})
  await t.rejects(KernelDevice.open('/dev/vhost-net', '/dev/vhost-net', {env: {}, sys}))
  t.equal(sys.open_fds.size, 0)
})

t.test('upstream: ACCESS_PLATFORM and VERSION_1 acked, then MSG_V2', async (t) => {
  const {sys, device} = await open()
  const set = sys.ioctls('VHOST_SET_FEATURES')[0]!.arg as Buffer
  t.equal(set.readBigUInt64LE(), (1n << 33n) | (1n << 32n))
  t.equal((sys.ioctls('VHOST_SET_BACKEND_FEATURES')[0]!.arg as Buffer).readBigUInt64LE(), 2n)
  const order = sys.ioctls().map((c) => c.request)
  t.same(order, ['VHOST_SET_OWNER', 'VHOST_GET_FEATURES', 'VHOST_GET_BACKEND_FEATURES', 'VHOST_UPDATE_IOTLB', 'VHOST_SET_FEATURES', 'VHOST_SET_BACKEND_FEATURES'])
  const rfcProbe = sys.ioctls('VHOST_UPDATE_IOTLB')[0]!.arg as Buffer
  t.same(rfcProbe, Buffer.alloc(32), 'the RFC probe is a zeroed entry: first u32 0, type 0')
  const probe = await device.probe()
  t.match(probe, {
    kind: 'kernel',
    protocol: 'upstream',
    rfc_ioctls: false,
    features: 0x33d008000n,
    backend_features: 2n,
    access_platform: true,
    device_iotlb: false,
    msg_v1: true,
    msg_v2: true,
    batch: false,
    asid: false,
    msg_version: 2,
  })
  t.ok(probe.notes.some((n) => /does not implement the RFC ioctls/.test(n)))
  t.equal(device.info.model, 'upstream v2')
})

t.test('VHOST_IOTLB_MSG_VERSION=1 leaves MSG_V2 unacked and writes v1', async (t) => {
  const {sys, device} = await open({}, {env: {VHOST_IOTLB_MSG_VERSION: '1'}})
  t.equal(sys.ioctls('VHOST_SET_BACKEND_FEATURES').length, 0)
  t.equal((await device.probe()).msg_version, 1)
  await device.update({...base, iova: 0x1000n, size: 0x1000n, userspace_addr: 'auto'})
  t.equal(sys.written[0]!.version, u.VHOST_IOTLB_MSG)
  await t.rejects(open({backend: 0n}, {env: {VHOST_IOTLB_MSG_VERSION: '2'}}), UsageError)
  await t.rejects(open({}, {env: {VHOST_IOTLB_MSG_VERSION: 'v3'}}), UsageError)
  const old = await open({backend: null})
  t.equal((await old.device.probe()).msg_version, 1, 'no backend features at all: v1')
})

t.test('a device without IOTLB opens for probe and refuses the rest', async (t) => {
  const {sys, device} = await open({features: 0x1_7100_0000n & ~(1n << 33n), backend: null})
  t.equal(sys.ioctls('VHOST_SET_FEATURES').length, 0, 'nothing to negotiate')
  const probe = await device.probe()
  t.match(probe, {access_platform: false, device_iotlb: false, msg_v1: false, msg_version: null})
  t.ok(probe.notes.some((n) => n.startsWith('no device IOTLB')))
  await t.rejects(device.update({...base, iova: 0n, size: 0x1000n, userspace_addr: 'auto'}), NoIotlbError)
  await t.rejects(device.invalidate({iova: 0n}), {code: 'EOPNOTSUPP', message: /no device IOTLB/})
  await t.rejects(device.listen({signal: AbortSignal.abort(), onEvent() {}}), NoIotlbError)
})

t.test('bit 63 alone (old kernels) turns the IOTLB on too', async (t) => {
  const {sys} = await open({features: 1n << 63n})
  t.equal((sys.ioctls('VHOST_SET_FEATURES')[0]!.arg as Buffer).readBigUInt64LE(), 1n << 63n)
})

t.test('update: auto memory, RFC perm bits as upstream access, 72 bytes checked', async (t) => {
  const {sys, device} = await open()
  const r = await device.update({...base, perm: 0x1, iova: 0x100000n, size: 0x1800n, userspace_addr: 'auto'})
  const memory = sys.memories[0]!
  t.equal(memory.length, 0x2000, 'rounded up to whole pages')
  t.same(sys.written[0]!.iotlb, {iova: 0x100000n, size: 0x1800n, uaddr: memory.address, perm: 1, type: UPDATE})
  t.match(r, {slot: 1, completed_miss: false, entry: {userspace_addr: memory.address, perm: 0x1}})
  await device.update({...base, perm: 0x10, iova: 0x200000n, size: 0x1000n, userspace_addr: 'auto'})
  await device.update({...base, perm: 0x11, iova: 0x300000n, size: 0x1000n, userspace_addr: 'auto'})
  t.same(sys.written.map((m) => m.iotlb.perm), [1, 2, 3])
  const none = await device.update({...base, perm: 0, iova: 0x400000n, size: 0x1000n, userspace_addr: 'auto'})
  t.match(none.warnings, [{code: 'no-access'}])
})

t.test('update refuses what upstream cannot say and raw addresses without the flag', async (t) => {
  const {sys, device} = await open()
  await t.rejects(device.update({...base, valid: false, iova: 0n, size: 0x1000n, userspace_addr: 'auto'}), {name: 'UsageError', message: /no valid flag/})
  await t.rejects(device.update({...base, iova: 0n, size: 0x1000n, userspace_addr: 0x7f0000001000n}), {name: 'UsageError', message: /--unsafe-uaddr/})
  t.equal(sys.written.length, 0)
  await device.update({...base, iova: 0n, size: 0x1000n, userspace_addr: 0x7f0000001000n, unsafe_uaddr: true})
  t.equal(sys.written[0]!.iotlb.uaddr, 0x7f0000001000n, 'raw address passed through as given')
  t.equal(sys.memories.length, 0, 'nothing allocated for it')
})

t.test('rejections come back with the kernel errno, and the memory is released', async (t) => {
  const {sys, device} = await open({writeErrors: {7: 'EFAULT'}})
  await t.rejects(device.update({...base, iova: 0n, size: 0n, userspace_addr: 'auto'}), {code: 'EINVAL', message: /size 0/})
  await t.rejects(device.update({...base, type: 7, iova: 0n, size: 0x1000n, userspace_addr: 'auto'}), {
    code: 'EFAULT',
    message: /^write vhost_msg_v2 0X7: EFAULT \(Bad address: the kernel rejected/,
  })
  t.notOk(sys.memories[0]!.mapped, 'the backing of a refused mapping is unmapped')
  t.same((await device.dump({})).entries, [], 'nothing refused reaches the shadow')
  const short = await open({writeReturns: 40})
  await t.rejects(short.device.update({...base, iova: 0n, size: 0x1000n, userspace_addr: 'auto'}), {code: 'EIO', message: /took 40 of 72 bytes/})
})

t.test('invalidate: one page by default, every overlapping range removed and unmapped', async (t) => {
  const {sys, device} = await open()
  await device.update({...base, iova: 0x100000n, size: 0x10000n, userspace_addr: 'auto'})
  await device.update({...base, iova: 0x108000n, size: 0x1000n, userspace_addr: 'auto'})
  await device.update({...base, iova: 0x200000n, size: 0x1000n, userspace_addr: 'auto'})
  const r = await device.invalidate({iova: 0x108800n})
  t.same(sys.written.at(-1)!.iotlb, {iova: 0x108800n, size: 0x1000n, uaddr: 0n, perm: 0, type: 3})
  t.match(r, {slot: 1, invalidated: true, removed: 2})
  t.same(sys.memories.map((m) => m.mapped), [false, false, true])
  t.match(await device.invalidate({iova: 0x500000n, size: 0x1000n}), {slot: -1, invalidated: false, removed: 0})
  const flush = await device.invalidate({iova: 0n, size: 0n})
  t.match(flush, {removed: 1, warnings: [{code: 'flush'}]})
})

t.test('dump and translate read the shadow, and say so', async (t) => {
  const {sys, device} = await open()
  await device.update({...base, iova: 0x100000n, size: 0x1000n, userspace_addr: 'auto'})
  const dump = await device.dump({})
  t.match(dump, {shadow: true, model: 'upstream v2', slots: 2048, waiting: false})
  t.match(dump.entries, [{slot: 1, iova: 0x100000n, size: 0x1000n, userspace_addr: sys.memories[0]!.address, perm: 0x11, type: UPDATE}])
  t.same((await device.dump({slot: 2})).entries, [])
  t.match(await device.translate(0x100800n, 0x10n), {status: 'ok', shadow: true, iov: [{userspace_addr: sys.memories[0]!.address + 0x800n}]})
  const miss = await device.translate(0x101000n, 1n)
  t.match(miss, {status: 'miss', iova: 0x101000n, shadow: true, request: {type: 1}})
  t.equal((miss as {request_bytes: Uint8Array}).request_bytes.length, 72, 'the vhost_msg_v2 the kernel would post')
  t.equal(sys.written.length, 1, 'translating wrote nothing')
})

t.test('listen reads MISS messages until stopped; an UPDATE covering one completes it', async (t) => {
  const {sys, device} = await open()
  sys.postMiss(0x100000n, 1)
  sys.postMiss(0x102000n, 2)
  const seen: Array<[bigint, number, boolean]> = []
  const r = await device.listen({
    signal: new AbortController().signal,
    count: 2,
    async answer(event) {
      return device.update({...base, iova: event.iova, size: 0x1000n, userspace_addr: 'auto'})
    },
    onEvent(event, answer) {
      seen.push([event.iova, event.perm, answer?.completed_miss ?? false])
      t.equal(event.raw.length, 72)
      t.equal(event.asid, 0)
    },
  })
  t.same(r, {events: 2, answered: 2, stopped: 'count'})
  t.same(seen, [
    [0x100000n, 0x1, true],
    [0x102000n, 0x10, true],
  ], 'access RO -> RFC READ, WO -> WRITE')
  t.equal((await device.dump({})).waiting, false)
})

t.test('listen stops promptly on the signal, and replays misses read but not answered', async (t) => {
  const {sys, device} = await open()
  sys.postMiss(0x100000n, 1)
  const first = await device.listen({signal: new AbortController().signal, count: 1, onEvent() {}})
  t.equal(first.stopped, 'count')
  t.match(await device.dump({}), {waiting: true, pending: {iova: 0x100000n, type: 1}})
  const controller = new AbortController()
  const events: bigint[] = []
  setTimeout(() => controller.abort(), 50)
  const t0 = Date.now()
  const r = await device.listen({signal: controller.signal, onEvent: (e) => void events.push(e.iova)})
  t.same(r, {events: 1, answered: 0, stopped: 'signal'})
  t.same(events, [0x100000n], 'the unanswered miss comes again first')
  t.ok(Date.now() - t0 < 1000, 'stopped within the poll interval')
})

t.test('set-fd and set-request-entry on an upstream kernel explain the upstream way', async (t) => {
  const {device} = await open()
  await t.rejects(device.setIotlbFd('auto'), NoRfcIoctlsError)
  await t.rejects(device.setIotlbFd('auto'), {code: 'ENOTTY', message: /read\(\)s from the device fd itself.*vhost-iotlb listen/})
  await t.rejects(device.setRequestEntry('auto'), {code: 'ENOTTY', message: /^VHOST_SET_IOTLB_REQUEST_ENTRY: ENOTTY/})
})

t.test('RFC kernel: detected, auto eventfd and request buffer, VHOST_UPDATE_IOTLB, listen', async (t) => {
  const {sys, device} = await open({rfc: true})
  t.equal(sys.ioctls('VHOST_SET_FEATURES').length, 0, 'the RFC has no negotiation')
  t.match(await device.probe(), {protocol: 'rfc', rfc_ioctls: true, msg_version: null})
  await t.rejects(device.setIotlbFd(5), {name: 'UsageError', message: /give auto/})
  await t.rejects(device.setRequestEntry(0x7f0000000000n), {name: 'UsageError', message: /give auto/})
  const fd = await device.setIotlbFd('auto')
  t.ok(sys.counters.has(fd.iotlb_fd!), 'an eventfd the tool created')
  t.equal((sys.ioctls('VHOST_SET_IOTLB_FD')[0]!.arg as Buffer).readInt32LE(), fd.iotlb_fd, 'passed through a pointer to int')
  const entry = await device.setRequestEntry('auto')
  const requestMem = sys.memories[0]!
  t.equal(entry.request_entry, requestMem.address)
  t.equal(sys.ioctls('VHOST_SET_IOTLB_REQUEST_ENTRY')[0]!.arg, requestMem.address, 'the argument is the address itself')
  const up = await device.update({...base, iova: 0x5000n, size: 0x1000n, userspace_addr: 'auto', valid: false})
  const sent = sys.ioctls('VHOST_UPDATE_IOTLB').at(-1)!.arg as Buffer
  t.equal(sent.length, 32)
  t.match(up, {slot: 5, entry: {valid: 1}})
  await t.rejects(device.update({...base, type: 9, iova: 0x6000n, size: 0x1000n, userspace_addr: 'auto'}), {code: 'EINVAL'})
  // The kernel writes a request and signals the eventfd.
  requestMem.write(0, Buffer.from('0070000000000000000000000000000000000000000000000001010000000000', 'hex'))
  sys.eventfdWrite(fd.iotlb_fd!)
  const events: bigint[] = []
  const r = await device.listen({signal: new AbortController().signal, count: 1, onEvent: (e) => void events.push(e.iova)})
  t.same([r.events, events], [1, [0x7000n]])
  const answer = await device.update({...base, iova: 0x7000n, size: 0x1000n, userspace_addr: 'auto'})
  t.equal(answer.completed_miss, true)
  t.match(await device.translate(0x7000n, 1n), {status: 'ok', shadow: true})
  t.match(await device.invalidate({iova: 0x7000n}), {slot: 7, invalidated: true})
  t.match(await device.dump({}), {shadow: true, model: 'rfc'})
  t.same(await device.reset(), {model: 'rfc', invalidated: 1})
})

t.test('granted fds are duplicated, made non-blocking, and cleaned up on close', async (t) => {
  const {sys, device} = await open({}, {path: '/dev/fd/3'})
  const fcntls = sys.calls.filter((c) => c.fn === 'fcntl')
  t.same(fcntls.map((c) => [c.fd, c.arg]), [[3, 1030], [10, 3], [10, 4]])
  await device.update({...base, iova: 0x1000n, size: 0x1000n, userspace_addr: 'auto'})
  await device.close()
  t.same(sys.written.at(-1)!.iotlb.type, 3, 'what the tool mapped is invalidated: the fd outlives this copy')
  t.notOk(sys.memories[0]!.mapped)
  await t.rejects(open({}, {path: '/dev/fd/4'}), {code: 'EBADF', message: /not open in this process/})
})

t.test('close: the vhost fd goes before the memory the kernel pointed at', async (t) => {
  const {sys, device} = await open()
  await device.update({...base, iova: 0x1000n, size: 0x1000n, userspace_addr: 'auto'})
  await device.close()
  const order = sys.calls.filter((c) => c.fn === 'close' || c.fn === 'mmap').map((c) => c.fn)
  t.same(order, ['mmap', 'close'])
  t.notOk(sys.memories[0]!.mapped)
  t.equal(sys.open_fds.size, 0)
  await device.close()
  await t.rejects(device.update({...base, iova: 0n, size: 0x1000n, userspace_addr: 'auto'}), {code: 'EBADF'})
})

t.test('exercise refuses devices that are not vhost-net', async (t) => {
  const {device} = await open({features: 1n << 33n})
  await t.rejects(device.exercise({signal: new AbortController().signal, onEvent() {}}), {code: 'EOPNOTSUPP', message: /needs vhost-net/})
})
