// The wire codec and message checks of the hold protocol: values survive the trip exactly, every
// error class comes back as itself, and anything malformed is a ProtocolError, never a crash.
import t from 'tap'

import {reportError} from '../../src/cli/outcome.js'
import {U64_MAX} from '../../src/device/entry.js'
import {DeviceError, IotlbError, LockTimeoutError, StateFileError, UsageError} from '../../src/device/errors.js'
import {SyscallError} from '../../src/device/kernel/errors.js'
import {
  LineSplitter,
  METHODS,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeValue,
  encodeLine,
  encodeValue,
  errorFromWire,
  errorToWire,
  parseClientLine,
  parseServerLine,
  salvageId,
} from '../../src/device/remote/wire.js'

/** Through the codec and JSON text, as on the socket. */
function trip(value: unknown): unknown {
  return decodeValue(JSON.parse(JSON.stringify(encodeValue(value))))
}

t.test('u64 edge values survive exactly', async (t) => {
  const edges = [0n, 1n, 0xfffn, 0x1000n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, U64_MAX - 1n, U64_MAX]
  for (const value of edges) {
    t.equal(trip(value), value, `0x${value.toString(16)}`)
  }

  t.same(encodeValue(U64_MAX), {$u64: '0xffffffffffffffff'})
  t.same(encodeValue(0n), {$u64: '0x0'})
  t.throws(() => encodeValue(-1n), RangeError, 'a negative bigint is not a u64')
  t.throws(() => encodeValue(U64_MAX + 1n), RangeError, '2^64 is not a u64')
})

t.test('bytes, nesting, optional fields and "$" keys', async (t) => {
  const bytes = Uint8Array.from([0, 1, 0x7f, 0x80, 0xff])
  const back = trip(bytes) as Uint8Array
  t.ok(back instanceof Uint8Array)
  t.same([...back], [...bytes])
  t.same([...(trip(new Uint8Array(0)) as Uint8Array)], [])
  // A Buffer is a Uint8Array view of a bigger pool: only its own bytes go.
  const view = Buffer.from('00aabbcc00', 'hex').subarray(1, 4)
  t.same(encodeValue(view), {$bytes: 'aabbcc'})

  const value = {iova: 0x1000n, list: [1n, 'x', null, true, 2.5], inner: {raw: bytes, gone: undefined}}
  const decoded = trip(value) as typeof value
  t.equal(decoded.iova, 0x1000n)
  t.same(decoded.list, [1n, 'x', null, true, 2.5])
  t.notOk('gone' in decoded.inner, 'an undefined field is absent, as optional fields are')

  const tricky = {$u64: 'not a tag', __proto__x: 1, plain: 0n}
  t.same(trip(tricky), tricky, 'an object with "$" keys is escaped, not taken for a tag')
  const proto = JSON.parse('{"__proto__": {"polluted": true}}')
  const safe = decodeValue(proto) as Record<string, unknown>
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.ok(Object.hasOwn(safe, '__proto__'), '"__proto__" stays a data key')
})

t.test('what the codec refuses to carry', async (t) => {
  t.throws(() => encodeValue(Number.NaN), TypeError)
  t.throws(() => encodeValue(new Map()), TypeError)
  t.throws(() => encodeValue(() => 1), TypeError)
  let deep: unknown = 0
  for (let i = 0; i < 40; i++) deep = [deep]
  t.throws(() => encodeValue(deep), RangeError)
  t.throws(() => decodeValue(JSON.parse(JSON.stringify(deep))), ProtocolError)
  for (const bad of [{$u64: '0x'}, {$u64: '0X10'}, {$u64: '0x010'}, {$u64: '0x1ffffffffffffffff'}, {$u64: 16}, {$u64: '-0x1'}]) {
    t.throws(() => decodeValue(bad), ProtocolError, JSON.stringify(bad))
  }

  for (const bad of [{$bytes: 'abc'}, {$bytes: 'GG'}, {$bytes: 'AB'}, {$obj: [1]}, {$nope: 1}, {$u64: '0x1', other: 2}]) {
    t.throws(() => decodeValue(bad), ProtocolError, JSON.stringify(bad))
  }
})

t.test('every error class comes back as itself, with code, message and exit code', async (t) => {
  const errors: Error[] = [
    new UsageError('update: missing --size SIZE; see: vhost-iotlb update --help'),
    new DeviceError('VHOST_UPDATE_IOTLB', 'EINVAL', 'flags.type 0x7 is neither UPDATE nor INVALIDATE'),
    new StateFileError('EBADSTATE', '/some/emu.json', 'not JSON; left untouched'),
    new LockTimeoutError('/some/emu.json', 'pid 42', 10_000),
    new ProtocolError('malformed message: type: invalid'),
    new IotlbError('ENOSYS', 'something generic'),
    new SyscallError('ioctl', 'VHOST_SET_FEATURES', 95),
    new TypeError('x is undefined'),
  ]
  for (const error of errors) {
    const wire = errorToWire(error)
    const line = encodeLine({type: 'error', id: 7, error: wire})
    const message = parseServerLine(line.trimEnd())
    t.equal(message.type, 'error')
    if (message.type !== 'error') continue
    const back = errorFromWire(message.error)
    t.equal(back.message, error.message, `${error.name}: message`)
    t.same(reportError(back), reportError(error), `${error.name}: code, message and exit code as reported`)
    if (error instanceof IotlbError) {
      t.equal((back as IotlbError).code, error.code, `${error.name}: code`)
      t.equal(back.constructor, error instanceof SyscallError ? DeviceError : error.constructor, `${error.name}: class`)
    }

    if (error instanceof DeviceError) t.equal((back as DeviceError).call, error.call)
    if (error instanceof StateFileError) t.equal((back as StateFileError).path, error.path)
  }

  t.equal(reportError(errorFromWire(errorToWire(new UsageError('u')))).exitCode, 2)
  t.equal(reportError(errorFromWire(errorToWire(new DeviceError('c', 'EFAULT', 'r')))).exitCode, 1)
  t.same(errorToWire('a string'), {class: 'Error', code: 'INTERNAL', message: 'a string'})
})

t.test('messages are checked: malformed lines are ProtocolErrors naming what is wrong', async (t) => {
  t.same(parseClientLine(JSON.stringify({type: 'hello', version: PROTOCOL_VERSION})), {type: 'hello', version: PROTOCOL_VERSION})
  const call = parseClientLine(encodeLine({type: 'call', id: 3, method: 'translate', params: [0x1000n, 1n, {onMiss: false}]}).trimEnd())
  t.same(call, {type: 'call', id: 3, method: 'translate', params: [0x1000n, 1n, {onMiss: false}]})
  const cases: Array<[string, RegExp]> = [
    ['not json', /not JSON/],
    ['[]', /malformed message/],
    ['{"type": "call"}', /malformed message: /],
    ['{"type": "call", "id": 0, "method": "dump", "params": []}', /id/],
    ['{"type": "call", "id": 1.5, "method": "dump", "params": []}', /id/],
    ['{"type": "launch", "id": 1}', /malformed message/],
    ['{"type": "call", "id": 1, "method": "dump", "params": [{"$u64": 5}]}', /not a u64/],
    ['{"type": "event-answer", "id": 1, "seq": 0, "result": {"slot": "x"}}', /result/],
  ]
  for (const [line, message] of cases) {
    t.throws(() => parseClientLine(line), {name: 'ProtocolError', code: 'EPROTO', message}, line)
  }

  t.throws(() => parseServerLine('{"type": "result", "id": 1}'), ProtocolError)
  t.equal(salvageId('{"type": "call", "id": 9, "params": 1}'), 9)
  t.equal(salvageId('{"id": -1}'), null)
  t.equal(salvageId('garbage'), null)
})

t.test('method parameters are checked as the device would need them', async (t) => {
  t.ok(METHODS.update.params.safeParse([{iova: 1n, size: 1n, userspace_addr: 'auto', perm: 0x11, type: 2, valid: true}]).success)
  t.notOk(METHODS.update.params.safeParse([{iova: 1n, size: 1n, userspace_addr: 'auto', perm: 0x111, type: 2, valid: true}]).success, 'perm is a byte')
  t.notOk(METHODS.update.params.safeParse([{iova: 1, size: 1n, userspace_addr: 1n, perm: 0, type: 2, valid: true}]).success, 'u64s are bigints')
  t.ok(METHODS.setIotlbFd.params.safeParse([-1]).success)
  t.notOk(METHODS.setIotlbFd.params.safeParse([-2]).success)
  t.notOk(METHODS.probe.params.safeParse([1]).success, 'no extra parameters')
  t.notOk(METHODS.reset.params.safeParse(['other']).success)
  t.notOk('close' in METHODS, 'a client cannot close the held device')
})

t.test('lines: split across chunks, and a runaway line is refused', async (t) => {
  const splitter = new LineSplitter(16)
  t.same(splitter.push('{"a":'), [])
  t.same(splitter.push('1}\n{"b"'), ['{"a":1}'])
  t.same(splitter.push(':2}\n\n'), ['{"b":2}', ''])
  t.throws(() => splitter.push('x'.repeat(17)), {name: 'ProtocolError', message: /longer than 16/})
  t.same(splitter.push('ok\n'), ['ok'], 'the splitter starts over after refusing')
})
