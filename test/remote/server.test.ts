// The holder and its client in one process: serialization, misses answered through the same
// connection, listen, malformed input, version checks, and how the socket path is claimed.
import * as fs from 'node:fs'
import * as net from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import t, {type Test} from 'tap'

import type {ExerciseOptions, ExerciseResult, IotlbDevice, UpdateRequest, UpdateResult} from '../../src/device/device.js'
import {EmulatedDevice} from '../../src/device/emulated/device.js'
import {VHOST_IOTLB_UPDATE} from '../../src/device/entry.js'
import {DeviceError} from '../../src/device/errors.js'
import {RemoteDevice} from '../../src/device/remote/client.js'
import {HoldServer} from '../../src/device/remote/server.js'
import {PROTOCOL_VERSION, ProtocolError, encodeLine, parseServerLine} from '../../src/device/remote/wire.js'
import {socketDir} from '../fixtures/remote/hold.js'

function map(iova: bigint, uaddr = 0x7f00_0000_0000n + iova): UpdateRequest {
  return {iova, size: 0x1000n, userspace_addr: uaddr, perm: 0x11, type: VHOST_IOTLB_UPDATE, valid: true}
}

interface Fixture {
  dir: string
  socket: string
  device: EmulatedDevice
  server: HoldServer
  connect(): Promise<RemoteDevice>
}

/** An emulated device with its eventfd and request entry set, served at a fresh socket. */
async function served(t: Test, wrap?: (device: EmulatedDevice) => IotlbDevice): Promise<Fixture> {
  const {dir, remove} = socketDir()
  const device = await EmulatedDevice.open(join(dir, 'emu.json'), `emu:${join(dir, 'emu.json')}`)
  await device.setIotlbFd(3)
  await device.setRequestEntry(0x7f00_0000_0000n)
  const socket = join(dir, 'hold.sock')
  const server = await HoldServer.start(wrap ? wrap(device) : device, socket)
  const clients: RemoteDevice[] = []
  t.teardown(async () => {
    for (const client of clients) await client.close()
    await server.close()
    remove()
  })
  return {
    dir,
    socket,
    device,
    server,
    async connect() {
      const client = await RemoteDevice.connect(socket, `unix:${socket}`)
      clients.push(client)
      return client
    },
  }
}

/** A raw connection that speaks lines, for what a well-behaved client never sends. */
async function raw(socket: string) {
  const connection = net.connect(socket)
  await new Promise((resolve) => connection.once('connect', resolve))
  connection.setEncoding('utf8')
  const lines: string[] = []
  let buffer = ''
  let closed = false
  connection.on('data', (chunk: string) => {
    buffer += chunk
    const parts = buffer.split('\n')
    buffer = parts.pop()!
    lines.push(...parts)
  })
  connection.on('close', () => (closed = true))
  return {
    send: (text: string) => connection.write(text),
    async next() {
      const end = Date.now() + 5000
      while (lines.length === 0) {
        if (Date.now() > end) throw new Error('no reply')
        await sleep(5)
      }

      return parseServerLine(lines.shift()!)
    },
    closed: () => closed,
    end: () => connection.destroy(),
  }
}

t.test('a held device: private socket, hello, calls, and a client closing leaves it open', async (t) => {
  const f = await served(t)
  const stat = fs.lstatSync(f.socket)
  t.ok(stat.isSocket())
  t.equal(stat.mode & 0o777, 0o600, 'mode 0600')
  t.same(fs.readdirSync(f.dir).sort(), ['emu.json', 'hold.sock'], 'no temporary name left behind')

  let closes = 0
  const close = f.device.close.bind(f.device)
  f.device.close = async () => {
    closes += 1
    return close()
  }

  const first = await f.connect()
  t.same(first.info, {kind: 'remote', spec: `unix:${f.socket}`, model: 'rfc'})
  t.equal(first.holder?.pid, process.pid)
  t.same(first.holder?.device, f.device.info)
  t.match(await first.update(map(0x1000n)), {slot: 1, completed_miss: false, entry: {iova: 0x1000n, userspace_addr: 0x7f00_0000_1000n}})
  await first.close()
  await t.rejects(first.dump({}), {name: 'DeviceError', code: 'EBADF'}, 'a closed connection refuses calls')
  t.equal(closes, 0, 'closing a client does not close the held device')

  const second = await f.connect()
  const dump = await second.dump({slot: 1})
  t.equal(dump.entries[0]?.iova, 0x1000n, 'the next client sees what the first did')
  t.ok(dump.request_bytes === null)
  t.same(await second.reset('fixed'), {model: 'fixed'})
  t.equal(second.info.model, 'fixed', 'the model follows the held device')
  t.equal(await second.flush(), undefined)
  t.match(await second.probe(), {kind: 'emulated', protocol: 'rfc'})
  t.same(await second.setIotlbFd(5), {iotlb_fd: 5})
  await t.rejects(second.setIotlbFd('auto'), {name: 'UsageError', code: 'USAGE', message: /emulated device records the fd number/})

  await f.server.close()
  t.notOk(fs.existsSync(f.socket), 'the socket is removed')
  t.equal(closes, 0, 'stopping the server does not close the device either: the holder does')
  await t.rejects(second.dump({}), {name: 'DeviceError', code: 'ECONNRESET'})
})

t.test('operations take turns in arrival order across clients', async (t) => {
  let active = 0
  let overlap = false
  const order: bigint[] = []
  const f = await served(t, (device) => {
    const wrapped = Object.create(device) as EmulatedDevice
    wrapped.update = async (request) => {
      active += 1
      if (active > 1) overlap = true
      // Yield in the middle, so interleaving would show.
      await sleep(Number(request.iova >> 12n) % 3)
      order.push(request.iova)
      try {
        return await device.update(request)
      } finally {
        active -= 1
      }
    }

    return wrapped
  })
  const clients = await Promise.all([f.connect(), f.connect(), f.connect()])
  const sent: bigint[][] = [[], [], []]
  const calls = []
  for (let i = 0; i < 30; i++) {
    const iova = BigInt(i + 1) << 12n
    sent[i % 3]!.push(iova)
    calls.push(clients[i % 3]!.update(map(iova)))
  }

  const results = await Promise.all(calls)
  t.notOk(overlap, 'never two operations at once')
  t.equal(results.length, 30)
  for (const [index, mine] of sent.entries()) {
    t.same(
      order.filter((iova) => mine.includes(iova)),
      mine,
      `client ${index}: its calls ran in the order it sent them`,
    )
  }

  t.equal((await clients[0]!.dump({})).entries.length, 30)
})

t.test('translate with onMiss: the miss comes back and is answered over the same connection', async (t) => {
  const f = await served(t)
  const client = await f.connect()
  const other = await f.connect()
  const seen: bigint[] = []
  const result = await client.translate(0x5010n, 0x20n, {
    async onMiss(request) {
      seen.push(request.iova)
      // The holder gave up its turn while waiting: another client is served meanwhile.
      const dump = await other.dump({})
      t.equal(dump.waiting, true, 'another client sees the translation waiting')
      const answer = await client.update(map(0x5000n))
      return answer.completed_miss
    },
  })
  t.same(seen, [0x5000n])
  t.same(result, {status: 'ok', iova: 0x5010n, len: 0x20n, iov: [{iova: 0x5010n, userspace_addr: 0x7f00_0000_5010n, len: 0x20n}]})

  const unanswered = await client.translate(0x6000n, 1n, {onMiss: async () => false})
  t.match(unanswered, {status: 'miss', iova: 0x6000n})
  t.ok((unanswered as {request_bytes: Uint8Array}).request_bytes instanceof Uint8Array)

  await client.update(map(0x6000n))
  const failing = client.translate(0x7000n, 1n, {
    onMiss: async () => {
      throw new DeviceError('test', 'EIO', 'the handler failed')
    },
  })
  await t.rejects(failing, {name: 'DeviceError', code: 'EIO', message: 'test: EIO (the handler failed)'}, 'a failing handler fails the translate')
  t.match(await other.dump({}), {waiting: true}, 'and the holder goes on serving')
})

t.test('listen: events reach the client, its answers go back, cancel and hang-up end it', async (t) => {
  const f = await served(t)
  const listener = await f.connect()
  const poster = await f.connect()
  const events: Array<{iova: bigint; answered: boolean}> = []
  const listening = listener.listen({
    signal: new AbortController().signal,
    count: 1,
    answer: (event) => listener.update(map(event.iova)),
    onEvent(event, answer) {
      events.push({iova: event.iova, answered: answer?.completed_miss === true})
    },
  })
  t.match(await poster.translate(0x9000n, 1n), {status: 'miss'})
  t.same(await listening, {events: 1, answered: 1, stopped: 'count'})
  t.same(events, [{iova: 0x9000n, answered: true}])
  t.match(await poster.translate(0x9000n, 1n), {status: 'ok'}, 'the answer completed the miss')

  const controller = new AbortController()
  const open = listener.listen({signal: controller.signal, onEvent() {}})
  await sleep(50)
  controller.abort()
  t.same(await open, {events: 0, answered: 0, stopped: 'signal'})

  const aborted = new AbortController()
  aborted.abort()
  t.same(await listener.listen({signal: aborted.signal, onEvent() {}}), {events: 0, answered: 0, stopped: 'signal'}, 'an already aborted signal')

  const failing = listener.listen({
    signal: new AbortController().signal,
    onEvent() {
      throw new Error('printing failed')
    },
  })
  t.match(await poster.translate(0xa000n, 1n), {status: 'miss'})
  await t.rejects(failing, {message: 'printing failed'}, 'a failing onEvent ends the listen with its error')

  const gone = await f.connect()
  void gone.listen({signal: new AbortController().signal, onEvent() {}}).catch(() => {})
  await sleep(50)
  await gone.close()
  t.match(await poster.dump({}), {model: 'rfc'}, 'a listener hanging up leaves the holder serving')
})

t.test('malformed lines get an error reply and the holder goes on', async (t) => {
  const f = await served(t)
  const peer = await raw(f.socket)
  t.match(await peer.next(), {type: 'hello', version: PROTOCOL_VERSION, pid: process.pid, device: {kind: 'emulated'}})
  peer.send('garbage\n')
  t.match(await peer.next(), {type: 'error', id: null, error: {class: 'ProtocolError', code: 'EPROTO', message: /not JSON/}})
  peer.send('{"type":"call","id":1,"method":"dump","params":[{}]}\n')
  t.match(await peer.next(), {type: 'error', id: 1, error: {class: 'ProtocolError', message: /before hello/}})
  peer.send('\n')
  peer.send(encodeLine({type: 'hello', version: PROTOCOL_VERSION}))
  peer.send('{"type":"call","id":2,"method":"update","params":[{"iova":1}]}\n')
  t.match(await peer.next(), {type: 'error', id: 2, error: {code: 'EPROTO', message: /update: params\.0\./}})
  peer.send('{"type":"call","id":3,"method":"close","params":[]}\n')
  t.match(await peer.next(), {type: 'error', id: 3, error: {message: /no method "close"/}})
  peer.send('{"type":"call","id":4,"method":"dump","params":[{"slot":{"$u64":"zz"}}]}\n')
  t.match(await peer.next(), {type: 'error', id: 4, error: {message: /not a u64/}})
  peer.send('{"type":"miss-answer","id":77,"answered":true}\n{"type":"cancel","id":78}\n')
  peer.send(encodeLine({type: 'call', id: 5, method: 'dump', params: [{slot: 0}]}))
  t.match(await peer.next(), {type: 'result', id: 5, model: 'rfc', result: {slots: 1024}}, 'a good call after all that')

  peer.send('x'.repeat((1 << 20) + 10))
  t.match(await peer.next(), {type: 'error', id: null, error: {message: /longer than/}})
  await sleep(50)
  t.ok(peer.closed(), 'a line without end is the end of that connection')
  const client = await f.connect()
  t.match(await client.dump({}), {slots: 1024}, 'and only of that connection')
})

t.test('protocol versions must match, and both ends say so by name', async (t) => {
  const f = await served(t)
  const peer = await raw(f.socket)
  await peer.next()
  peer.send(encodeLine({type: 'hello', version: PROTOCOL_VERSION + 1}))
  t.match(await peer.next(), {
    type: 'error',
    id: null,
    error: {class: 'ProtocolError', code: 'EPROTO', message: `unix:${f.socket} speaks protocol ${PROTOCOL_VERSION} and this vhost-iotlb speaks ${PROTOCOL_VERSION + 1}: run hold and the commands from the same version`},
  })

  const {dir, remove} = socketDir()
  t.teardown(remove)
  const path = join(dir, 'future.sock')
  const future = net.createServer((socket) => socket.write(`${JSON.stringify({type: 'hello', version: 99, pid: 1, device: {kind: 'kernel', spec: '/dev/x', model: 'upstream'}})}\n`))
  await new Promise<void>((resolve) => future.listen(path, resolve))
  t.teardown(() => future.close())
  await t.rejects(RemoteDevice.connect(path, `unix:${path}`), {
    name: 'ProtocolError',
    code: 'EPROTO',
    message: `unix:${path} speaks protocol 99 and this vhost-iotlb speaks ${PROTOCOL_VERSION}: run hold and the commands from the same version`,
  })
})

t.test('a holder that answers nonsense or nothing', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const silentPath = join(dir, 'silent.sock')
  const silent = net.createServer(() => {})
  await new Promise<void>((resolve) => silent.listen(silentPath, resolve))
  t.teardown(() => silent.close())
  await t.rejects(RemoteDevice.connect(silentPath, 'unix:x', {helloTimeoutMs: 200}), {name: 'DeviceError', code: 'ETIMEDOUT'})

  const oddPath = join(dir, 'odd.sock')
  const odd = net.createServer((socket) => {
    socket.write(`${JSON.stringify({type: 'hello', version: PROTOCOL_VERSION, pid: 1, device: {kind: 'emulated', spec: 'emu', model: 'rfc'}})}\n`)
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n').filter(Boolean)) {
        const message = JSON.parse(line)
        if (message.type === 'call') socket.write(`${JSON.stringify({type: 'result', id: message.id, result: {slot: 'one'}, model: 'rfc'})}\n`)
      }
    })
  })
  await new Promise<void>((resolve) => odd.listen(oddPath, resolve))
  t.teardown(() => odd.close())
  const client = await RemoteDevice.connect(oddPath, 'unix:odd')
  await t.rejects(client.update(map(0x1000n)), {name: 'ProtocolError', message: /update result\.slot/}, 'results are checked too')
  await client.close()
})

t.test('claiming the socket path', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const device = await EmulatedDevice.open(join(dir, 'emu.json'), 'emu')

  const file = join(dir, 'file')
  fs.writeFileSync(file, 'precious\n')
  await t.rejects(HoldServer.start(device, file), {name: 'DeviceError', code: 'EEXIST', message: `bind: EEXIST (${file} exists and is not a socket; not replacing it)`})
  t.equal(fs.readFileSync(file, 'utf8'), 'precious\n', 'the file is untouched')

  const live = join(dir, 'live.sock')
  const first = await HoldServer.start(device, live)
  await t.rejects(HoldServer.start(device, live), {
    name: 'DeviceError',
    code: 'EADDRINUSE',
    message: `bind: EADDRINUSE (${live} is held by vhost-iotlb hold (pid ${process.pid}); stop it or choose another --socket)`,
  })
  t.ok(fs.lstatSync(live).isSocket(), 'the live socket stays')
  const client = await RemoteDevice.connect(live, 'unix:live')
  t.match(await client.dump({}), {slots: 1024}, 'and its holder still answers')
  await client.close()
  await first.close()

  // A socket whose holder died: bound, linked elsewhere, then closed (which unlinks the original).
  const stale = join(dir, 'stale.sock')
  const dead = net.createServer()
  await new Promise<void>((resolve) => dead.listen(join(dir, 'dead.sock'), resolve))
  fs.linkSync(join(dir, 'dead.sock'), stale)
  await new Promise<void>((resolve) => dead.close(() => resolve()))
  t.ok(fs.lstatSync(stale).isSocket())
  await t.rejects(RemoteDevice.connect(stale, `unix:${stale}`), {
    name: 'DeviceError',
    code: 'ECONNREFUSED',
    message: `connect: ECONNREFUSED (nothing holds a device at ${stale}; start \`vhost-iotlb hold --socket ${stale}\`)`,
  })
  const replacing = await HoldServer.start(device, stale)
  const revived = await RemoteDevice.connect(stale, 'unix:stale')
  t.match(await revived.dump({}), {slots: 1024}, 'a stale socket is replaced')
  await revived.close()
  await replacing.close()
  t.same(fs.readdirSync(dir).sort(), ['file'], 'nothing left but the file we made')

  const long = join(dir, 'x'.repeat(120))
  await t.rejects(HoldServer.start(device, long), {code: 'ENAMETOOLONG'})
  await t.rejects(RemoteDevice.connect(long, 'unix:long'), {code: 'ENAMETOOLONG'})
  await t.rejects(HoldServer.start(device, join(dir, 'no', 'such', 'dir.sock')), {name: 'DeviceError', code: 'ENOENT', message: /^bind: ENOENT \(cannot create a socket in /})
})

t.test('connecting to nothing is a named error', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const path = join(dir, 'none.sock')
  const error = await RemoteDevice.connect(path, `unix:${path}`).catch((caught: unknown) => caught)
  t.ok(error instanceof DeviceError)
  t.match(error, {code: 'ENOENT', call: 'connect', message: `connect: ENOENT (nothing holds a device at ${path}; start \`vhost-iotlb hold --socket ${path}\`)`})
  t.notOk(error instanceof ProtocolError)
})

t.test('exercise streams its setup, events and misses through the holder', async (t) => {
  const setup = {
    queue: 0,
    num: 256,
    desc: 0x100000n,
    avail: 0x101000n,
    used: 0x102000n,
    tap: 'tap-test',
    used_mapped: {slot: 258, entry: {iova: 0x102000n, size: 0x1000n, userspace_addr: 0x7f00_0000_0000n, perm: 0x11, type: 2, valid: 2, u8_padding: 0, padding: 0}, completed_miss: false},
  }
  // A device that plays the kernel: two misses, each answered by whoever the options say.
  const f = await served(t, (device) => {
    const wrapped = Object.create(device) as IotlbDevice
    wrapped.exercise = async (options: ExerciseOptions): Promise<ExerciseResult> => {
      await options.onSetup?.(setup)
      let events = 0
      let answered = 0
      for (const iova of [0x100000n, 0x101000n]) {
        if (options.signal.aborted) return {setup, events, answered, stopped: 'signal'}
        const event = {type: 'miss' as const, iova, perm: 1, raw: Uint8Array.from([1, 2, 3])}
        events += 1
        let answer: UpdateResult | undefined
        let done = false
        if (options.answer) {
          answer = await options.answer(event)
          done = answer !== undefined
        } else if (options.onMiss) {
          done = await options.onMiss({iova, size: 0n, userspace_addr: 0n, perm: 1, type: 1, valid: 0, u8_padding: 0, padding: 0})
        }

        await options.onEvent(event, answer)
        if (done) answered += 1
        if (!done) return {setup, events, answered, stopped: 'unanswered'}
        if (options.count !== undefined && events >= options.count) return {setup, events, answered, stopped: 'count'}
      }

      return {setup, events, answered, stopped: 'quiet', quiet_ms: options.quietMs ?? 500}
    }

    return wrapped
  })
  const client = await f.connect()
  const seen: string[] = []
  const mapped = await client.exercise({
    signal: new AbortController().signal,
    quietMs: 25,
    onSetup(got) {
      t.same(got, setup, 'the setup arrives whole')
      seen.push('setup')
    },
    answer: async (event) => client.update(map(event.iova)),
    onEvent(event, answer) {
      seen.push(`event ${event.iova.toString(16)} ${answer ? 'answered' : 'left'}`)
    },
  })
  t.same(mapped, {setup, events: 2, answered: 2, stopped: 'quiet', quiet_ms: 25})
  t.same(seen, ['setup', 'event 100000 answered', 'event 101000 answered'])

  const asked: bigint[] = []
  const byHand = await client.exercise({
    signal: new AbortController().signal,
    count: 1,
    onMiss: async (request) => {
      asked.push(request.iova)
      return true
    },
    onEvent() {},
  })
  t.same(asked, [0x100000n], 'without a map, misses go to the miss handler')
  t.match(byHand, {events: 1, answered: 1, stopped: 'count'})

  const unanswered = await client.exercise({signal: new AbortController().signal, onEvent() {}})
  t.match(unanswered, {events: 1, answered: 0, stopped: 'unanswered'})

  const plain = await EmulatedDevice.open(join(f.dir, 'plain.json'), 'emu')
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const refusing = await HoldServer.start(plain, join(dir, 'r.sock'))
  t.teardown(() => refusing.close())
  const other = await RemoteDevice.connect(join(dir, 'r.sock'), 'unix:r')
  t.teardown(() => other.close())
  await t.rejects(other.exercise({signal: new AbortController().signal, onEvent() {}}), {
    name: 'DeviceError',
    code: 'EOPNOTSUPP',
    message: 'exercise: EOPNOTSUPP (the emulated RFC device has no virtqueue to kick; use translate)',
  })
})
