// System-call wrappers on things every Linux has (eventfd, anonymous memory, /dev/null);
// the vhost device itself is exercised in the QEMU guest (real-kernel.test.ts).
import t from 'tap'
import {constants} from 'node:os'
import * as sys from '../../src/device/kernel/sys.js'
import {SyscallError, errnoName, errnoDescription, isErrno} from '../../src/device/kernel/errors.js'
import {DeviceError, IotlbError} from '../../src/device/errors.js'
import {VHOST_GET_FEATURES, VHOST_SET_FEATURES, VHOST_SET_OWNER} from '../../src/device/kernel/uapi.js'

t.test('eventfd write/read round trip', async (t) => {
  const fd = sys.eventfd()
  t.teardown(() => sys.close(fd))
  sys.eventfdWrite(fd, 5n)
  sys.eventfdWrite(fd)
  t.equal(sys.eventfdRead(fd), 6n, 'counter sums the writes and resets on read')
  const err = t.throws(() => sys.eventfdRead(fd)) as SyscallError
  t.equal(err.code, 'EAGAIN', 'empty non-blocking eventfd')
  t.equal(err.errno, constants.errno.EAGAIN)
  t.equal(err.syscall, 'read')
  t.equal(err.message, 'eventfd read: EAGAIN (Resource temporarily unavailable)')
})

t.test('eventfd initial value and raw read/write', async (t) => {
  const fd = sys.eventfd(3, sys.EFD_NONBLOCK | sys.EFD_CLOEXEC | sys.EFD_SEMAPHORE)
  t.teardown(() => sys.close(fd))
  const buf = Buffer.alloc(8)
  t.equal(sys.read(fd, buf), 8)
  t.equal(buf.readBigUInt64LE(), 1n, 'semaphore mode reads 1 at a time')
  t.equal(sys.write(fd, Buffer.from('0200000000000000', 'hex')), 8)
  // A short write is refused by eventfd: EINVAL, named by the caller's label.
  t.throws(() => sys.write(fd, Buffer.alloc(4), 'short write'), {code: 'EINVAL', message: 'short write: EINVAL (Invalid argument)'})
})

t.test('poll on an eventfd', async (t) => {
  const fd = sys.eventfd()
  t.teardown(() => sys.close(fd))
  t.same(sys.poll([{fd, events: sys.POLLIN}], 0), [0], 'not readable while the counter is 0')
  t.same(sys.poll([{fd, events: sys.POLLOUT}], 0), [sys.POLLOUT], 'writable')
  sys.eventfdWrite(fd)
  t.same(sys.poll([{fd, events: sys.POLLIN}, {fd, events: sys.POLLIN | sys.POLLOUT}], 10), [sys.POLLIN, sys.POLLIN | sys.POLLOUT])
  t.same(sys.poll([], 0), [], 'empty set')
})

t.test('anonymous memory', async (t) => {
  const m = sys.mmapAnonymous(100)
  t.equal(sys.PAGE_SIZE, 4096)
  t.equal(m.length, 4096, 'rounded up to a page')
  t.equal(m.address % 4096n, 0n, 'page aligned')
  t.ok(m.address > 0n)
  t.same(m.read(0, 16), Buffer.alloc(16), 'zero filled')
  m.write(4090, Buffer.from('abcdef'))
  t.equal(m.read(4090, 6).toString(), 'abcdef')
  t.equal(m.bytes.subarray(4090).toString(), 'abcdef', 'live view sees the same bytes')
  const copy = m.read(4090, 6)
  m.bytes[4090] = 0x7a
  t.equal(copy.toString(), 'abcdef', 'read() copies')
  t.throws(() => m.write(4095, Buffer.from('xy')), RangeError)
  t.throws(() => m.read(-1, 1), RangeError)
  t.throws(() => m.read(0, 4097), RangeError)
  t.ok(m.mapped)
  m.unmap()
  t.notOk(m.mapped)
  m.unmap()
  t.throws(() => m.bytes, /is unmapped/)
  t.throws(() => m.read(0, 1), /is unmapped/)
  const two = sys.mmapAnonymous(4097)
  t.equal(two.length, 8192)
  two.unmap()
  t.throws(() => sys.mmapAnonymous(0), RangeError)
  t.throws(() => sys.mmapAnonymous(1.5), RangeError)
})

t.test('the kernel can write into mapped memory', async (t) => {
  // read(2) straight into the mapping: the kernel copies to user memory, as it does for vhost.
  const m = sys.mmapAnonymous(4096)
  t.teardown(() => m.unmap())
  const fd = sys.eventfd()
  t.teardown(() => sys.close(fd))
  sys.eventfdWrite(fd, 0x0102030405060708n)
  t.equal(sys.read(fd, m.bytes.subarray(8, 16)), 8)
  t.equal(m.read(8, 8).readBigUInt64LE(), 0x0102030405060708n)
})

t.test('errors name the call and the errno', async (t) => {
  const missing = '/nonexistent/vhost-iotlb-test'
  const err = t.throws(() => sys.open(missing)) as SyscallError
  t.type(err, SyscallError)
  t.match(err, {code: 'ENOENT', errno: constants.errno.ENOENT, syscall: 'open', call: `open ${missing}`})
  t.equal(err.message, `open ${missing}: ENOENT (No such file or directory)`)
  t.equal(err.name, 'SyscallError')
  t.type(err, DeviceError, 'reported by the CLI like any device refusal')
  t.type(err, IotlbError)
  t.ok(isErrno(err, 'ENOENT'))
  t.notOk(isErrno(err, 'EINVAL'))
  t.notOk(isErrno(new Error('x'), 'ENOENT'))

  const fd = sys.open('/dev/null')
  t.teardown(() => sys.close(fd))
  const buf = Buffer.alloc(8)
  t.throws(() => sys.ioctl(fd, VHOST_GET_FEATURES, buf), {
    code: 'ENOTTY',
    syscall: 'ioctl',
    call: 'VHOST_GET_FEATURES',
    message: 'VHOST_GET_FEATURES: ENOTTY (Inappropriate ioctl for device)',
  })
  t.throws(() => sys.ioctl(fd, VHOST_SET_OWNER), {code: 'ENOTTY', call: 'VHOST_SET_OWNER'})
  t.throws(() => sys.ioctl(fd, VHOST_SET_FEATURES, 0x1000n, 'custom'), {code: 'ENOTTY', message: /^custom: ENOTTY/})
  t.throws(() => sys.ioctlInt(fd, 0x5401 /* TCGETS */, -1), {code: 'ENOTTY', call: /^ioctl\(_IOC\(0, 0x54, 0x1, 0\)\)$/})
  t.throws(() => sys.ioctlInt(fd, 0x5401, 2 ** 60), RangeError)
})

t.test('EBADF and argument checks', async (t) => {
  const fd = sys.eventfd()
  sys.close(fd)
  t.throws(() => sys.close(fd), {code: 'EBADF', message: 'close: EBADF (Bad file descriptor)'})
  t.throws(() => sys.read(-1, Buffer.alloc(8)), RangeError, 'negative fd never reaches libc')
  t.throws(() => sys.poll([{fd: 1.5, events: 0}], 0), RangeError)
})

t.test('successful ioctls return the kernel value', async (t) => {
  // FIONREAD on an eventfd is not supported, but FIOCLEX (set close-on-exec) works on any fd.
  const fd = sys.eventfd()
  t.teardown(() => sys.close(fd))
  t.equal(sys.ioctl(fd, 0x5451 /* FIOCLEX */), 0)
  const pipeLike = sys.open('/dev/null', sys.O_RDONLY | sys.O_CLOEXEC)
  t.teardown(() => sys.close(pipeLike))
  t.equal(sys.read(pipeLike, Buffer.alloc(8)), 0, 'EOF')
})

t.test('errno table', async (t) => {
  const names = [
    'ENOENT', 'EACCES', 'EPERM', 'EBUSY', 'ENOTTY', 'EINVAL', 'EFAULT', 'ENOBUFS', 'EAGAIN', 'EBADF',
    'ENODEV', 'ENXIO', 'EOPNOTSUPP', 'ENOMEM', 'EEXIST', 'EINTR', 'ENOSPC',
  ] as const
  for (const name of names) {
    const n = constants.errno[name]
    t.equal(errnoName(n), name, `${n} -> ${name}`)
    t.not(errnoDescription(n), `errno ${n}`, `${name} has a description`)
  }
  t.equal(errnoName(95), 'EOPNOTSUPP', 'not ENOTSUP')
  t.equal(errnoName(11), 'EAGAIN', 'not EWOULDBLOCK')
  t.equal(new SyscallError('ioctl', 'VHOST_SET_FEATURES', 95).message, 'VHOST_SET_FEATURES: EOPNOTSUPP (Operation not supported)')
  t.equal(errnoName(constants.errno.EPIPE), 'EPIPE', 'outside the table: name from os.constants')
  t.equal(errnoDescription(constants.errno.EPIPE), `errno ${constants.errno.EPIPE}`)
  t.equal(errnoName(4095), 'E4095')
  const cause = new Error('inner')
  t.equal(new SyscallError('write', 'write', 14, {cause}).cause, cause)
})
