// `vhost-iotlb hold` and `--device unix:PATH` through the real binary, on an emulated device: a
// command through the holder prints and exits exactly as it does on the device itself, state
// builds up across one-off commands, listen answers misses from other clients, and the holder
// refuses, cleans up and stops as it says.
import * as fs from 'node:fs'
import * as net from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import t, {type Test} from 'tap'

import {BIN, type Run, runCli} from '../fixtures/cli.js'
import {holdScenario} from '../fixtures/remote/kernel-scenario.js'
import {type Hold, socketDir, startHold} from '../fixtures/remote/hold.js'

interface Held {
  dir: string
  state: string
  socket: string
  hold: Hold
  /** A one-off command through the holder. */
  via(argv: string[]): Promise<Run>
  /** The same command on the device itself. */
  direct(argv: string[]): Promise<Run>
}

async function held(t: Test, extra: string[] = []): Promise<Held> {
  const {dir, remove} = socketDir()
  const state = join(dir, 'emu.json')
  const socket = join(dir, 'hold.sock')
  const hold = startHold(['--device', `emu:${state}`, '--socket', socket, ...extra])
  t.teardown(async () => {
    await hold.stop('SIGKILL')
    remove()
  })
  await hold.ready
  return {
    dir,
    state,
    socket,
    hold,
    via: (argv) => runCli(argv, {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}}),
    direct: (argv) => runCli(argv, {env: {VHOST_IOTLB_DEVICE: `emu:${state}`}}),
  }
}

const MAP = ['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f0000001000']

type Setup = 'none' | 'mapped' | 'waiting' | 'corrupt'

interface Case {
  argv: string[]
  setup?: Setup
  /** The exit code both must give, so a case cannot pass by failing alike. */
  code: number
}

const CASES: Case[] = [
  // results, text and JSON, one per command and then some
  {argv: [...MAP, '--perm', 'rw'], code: 0},
  {argv: [...MAP, '--json'], code: 0},
  {argv: ['update', '--iova', '0x1234', '--size', '1', '--uaddr', '1', '--json'], code: 0},
  {argv: ['update', '--iova', '0x5000', '--size', '4k', '--uaddr', '0x7f0000005000'], setup: 'waiting', code: 0},
  {argv: ['invalidate', '--iova', '0x1000'], setup: 'mapped', code: 0},
  {argv: ['invalidate', '--iova', '0x9000', '--json'], setup: 'mapped', code: 0},
  {argv: ['translate', '0x1010', '--len', '16'], setup: 'mapped', code: 0},
  {argv: ['translate', '0x1010', '--len', '4k', '--json'], setup: 'mapped', code: 0},
  {argv: ['dump'], setup: 'mapped', code: 0},
  {argv: ['dump', '--json'], setup: 'waiting', code: 0},
  {argv: ['dump', '--all', '--json'], setup: 'mapped', code: 0},
  {argv: ['dump', '--slot', '1'], setup: 'mapped', code: 0},
  {argv: ['set-fd', '-1'], setup: 'mapped', code: 0},
  {argv: ['set-fd', '7', '--json'], code: 0},
  {argv: ['set-request-entry', '0x7fff_ffff_efe0', '--json'], code: 0},
  {argv: ['reset', '--model', 'fixed', '--json'], setup: 'mapped', code: 0},
  {argv: ['reset'], setup: 'mapped', code: 0},
  // a miss (3) and refusals by the device (1)
  {argv: ['translate', '0x5000'], setup: 'mapped', code: 3},
  {argv: ['translate', '0x5000', '--json'], setup: 'mapped', code: 3},
  {argv: ['translate', '0x5000', '--json'], code: 1},
  {argv: ['translate', '0x6000'], setup: 'waiting', code: 1},
  {argv: ['set-request-entry', '0x7fffffffefe1'], code: 1},
  {argv: ['set-request-entry', '0x7fffffffefe1', '--json'], code: 1},
  {argv: [...MAP, '--type', 'miss', '--json'], code: 1},
  {argv: [...MAP, '--type', '0x7'], code: 1},
  {argv: ['exercise'], code: 1},
  {argv: ['exercise', '--json'], setup: 'mapped', code: 1},
  // the state file is the device's: its errors come back by name
  {argv: ['dump', '--json'], setup: 'corrupt', code: 1},
  {argv: [...MAP], setup: 'corrupt', code: 1},
  // usage errors the device raises (they cross the socket) ...
  {argv: ['update', '--iova', '0x1000', '--size', '4k'], code: 2},
  {argv: ['update', '--iova', '0x1000', '--size', '4k', '--json'], code: 2},
  {argv: ['set-fd', 'auto'], code: 2},
  {argv: ['set-request-entry', 'auto', '--json'], code: 2},
  {argv: ['invalidate', '--iova', '0x1000', '--size', '4k'], code: 2},
  // ... and those the parser raises before any device is reached
  {argv: ['update', '--iova', '0x1000'], code: 2},
  {argv: ['dump', '--bogus', '--json'], code: 2},
  {argv: ['translate', '0x1000', '--len', '0x100000000'], code: 2},
]

/** The state file as each setup leaves it (undefined: no file). */
async function setups(dir: string): Promise<Record<Setup, Buffer | undefined>> {
  const make = async (name: string, lines: string[][]) => {
    const state = join(dir, `${name}.json`)
    for (const argv of lines) await runCli(argv, {state})
    return fs.readFileSync(state)
  }

  const armed = [['set-fd', '3'], ['set-request-entry', '0x7f0000000000'], MAP]
  return {
    none: undefined,
    mapped: await make('mapped', armed),
    waiting: await make('waiting', [...armed, ['translate', '0x5000']]),
    corrupt: Buffer.from('{"format": "vhost-iotlb/emulated-device", "version": 1, "model": "rfc"'),
  }
}

/** Puts a setup in place with a new inode, so the holder's device sees the change. */
function restore(state: string, content: Buffer | undefined): void {
  if (content === undefined) {
    fs.rmSync(state, {force: true})
    return
  }

  fs.writeFileSync(`${state}.new`, content)
  fs.renameSync(`${state}.new`, state)
}

function read(state: string): string | undefined {
  return fs.existsSync(state) ? fs.readFileSync(state, 'utf8') : undefined
}

t.test('through the holder, every command prints and exits as on the device itself', async (t) => {
  const h = await held(t)
  const initial = await setups(h.dir)
  for (const c of CASES) {
    const setup = c.setup ?? 'none'
    const label = `${c.argv.join(' ')} (${setup})`
    restore(h.state, initial[setup])
    const direct = await h.direct(c.argv)
    const afterDirect = read(h.state)
    restore(h.state, initial[setup])
    const via = await h.via(c.argv)
    t.equal(direct.code, c.code, `${label}: exit code on the device`)
    t.equal(via.code, c.code, `${label}: exit code through the holder`)
    t.equal(via.stdout, direct.stdout, `${label}: stdout`)
    t.equal(via.stderr, direct.stderr, `${label}: stderr`)
    t.equal(read(h.state), afterDirect, `${label}: the device ends the same`)
  }
})

t.test('state builds up across one-off commands through the held device', async (t) => {
  const h = await held(t)
  t.equal((await h.via(['set-fd', '3'])).stdout, 'iotlb fd 3\n')
  t.equal((await h.via(['set-request-entry', '0x7f0000000000'])).code, 0)
  t.equal((await h.via(['update', '--iova', '0x2000', '--size', '8k', '--uaddr', '0x7f0000002000'])).code, 0)
  const miss = await h.via(['translate', '0x4008', '--json'])
  t.equal(miss.code, 3)
  t.match(JSON.parse(miss.stdout), {status: 'miss', iova: '0x4000'})
  const answer = await h.via(['update', '--iova', '0x4000', '--size', '4k', '--uaddr', '0x7f0000004000', '--json'])
  t.equal(JSON.parse(answer.stdout).completed_miss, true, 'a later process completes the miss an earlier one posted')
  const hit = await h.via(['translate', '0x2ff0', '--len', '0x20', '--json'])
  t.equal(hit.code, 0)
  t.match(JSON.parse(hit.stdout), {status: 'ok', iova: '0x2ff0', iov: [{iova: '0x2ff0', userspace_addr: '0x7f0000002ff0'}]})
  const dump = JSON.parse((await h.via(['dump', '--json'])).stdout)
  t.same(
    dump.entries.map((e: {slot: number}) => e.slot),
    [2, 4],
  )
  t.match(dump, {iotlb_fd: 3, eventfd_signals: 1, request_entry: '0x7f0000000000', waiting: false})
  t.same(JSON.parse((await h.direct(['dump', '--json'])).stdout), dump, 'and the state file shows the same device')
})

t.test('listen through the holder answers a miss another client posts', async (t) => {
  const h = await held(t)
  await h.via(['set-fd', '3'])
  await h.via(['set-request-entry', '0x7f0000000000'])
  const mapFile = join(h.dir, 'map.txt')
  fs.writeFileSync(mapFile, '0x100000 64k rw 0x7f0000100000\n')
  const listener = runCli(['listen', '--map', mapFile, '--count', '1', '--json'], {env: {VHOST_IOTLB_DEVICE: `unix:${h.socket}`}})
  await sleep(300)
  const miss = await h.via(['translate', '0x100010'])
  t.equal(miss.code, 3, 'the one-off translate reports its miss')
  const heard = await listener
  t.equal(heard.code, 0, '--count 1 ends the listener with 0')
  const lines = heard.stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.match(lines[0], {event: 'miss', iova: '0x100000', perm: 'none', answer: {slot: 256, completed_miss: true, entry: {userspace_addr: '0x7f0000100000'}}})
  t.same(lines[1], {events: 1, answered: 1, stopped: 'count'})
  const again = await h.via(['translate', '0x100010', '--json'])
  t.equal(again.code, 0, 'the answered page now hits')
  t.same(JSON.parse(again.stdout).iov, [{iova: '0x100010', userspace_addr: '0x7f0000100010', len: '0x1'}])
})

t.test('SIGINT stops a listen through the holder with 130, and the holder serves on', async (t) => {
  const h = await held(t)
  await h.via(['set-fd', '3'])
  await h.via(['set-request-entry', '0x7f0000000000'])
  await h.via(['translate', '0x8000'])
  const {spawn} = await import('node:child_process')
  const child = spawn(process.execPath, [BIN, 'listen', '--device', `unix:${h.socket}`], {env: {...process.env, NO_COLOR: '1'}})
  t.teardown(() => void child.kill('SIGKILL'))
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const done = new Promise<number | null>((resolve) => child.on('close', resolve))
  // The outstanding miss is reported first: once it is printed, the listen is running.
  const end = Date.now() + 10_000
  while (!stdout.includes('\n') && Date.now() < end) await sleep(20)
  t.equal(stdout, 'miss iova 0x8000 perm none\n')
  child.kill('SIGINT')
  t.equal(await done, 130)
  t.equal(stderr, '1 event, 0 answered (interrupted)\n')
  t.equal((await h.via(['dump', '--json'])).code, 0)
})

t.test('concurrent one-off clients are served one at a time and lose nothing', async (t) => {
  const h = await held(t)
  const runs = await Promise.all(
    Array.from({length: 12}, (_, i) => h.via(['update', '--iova', `0x${(i + 1).toString(16)}000`, '--size', '4k', '--uaddr', `0x7f000000${(i + 1).toString(16)}000`])),
  )
  t.same(
    runs.map((run) => run.code),
    Array.from({length: 12}, () => 0),
  )
  const dump = JSON.parse((await h.via(['dump', '--json'])).stdout)
  t.same(
    dump.entries.map((e: {slot: number}) => e.slot),
    Array.from({length: 12}, (_, i) => i + 1),
  )
})

t.test('malformed lines get an error reply and the holder survives', async (t) => {
  const h = await held(t)
  const socket = net.connect(h.socket)
  socket.setEncoding('utf8')
  let text = ''
  socket.on('data', (chunk: string) => (text += chunk))
  socket.write('{"type":"hello","version":1}\nnot json\n{"type":"call","id":1,"method":"reset","params":["bogus"]}\n')
  const end = Date.now() + 5000
  while (text.split('\n').length < 4 && Date.now() < end) await sleep(10)
  socket.destroy()
  const [hello, first, second] = text.trim().split('\n').map((line) => JSON.parse(line))
  t.match(hello, {type: 'hello', version: 1, device: {kind: 'emulated', spec: `emu:${h.state}`, model: 'rfc'}})
  t.match(first, {type: 'error', id: null, error: {class: 'ProtocolError', code: 'EPROTO'}})
  t.match(second, {type: 'error', id: 1, error: {class: 'ProtocolError', message: /reset: params\.0/}})
  t.equal((await h.via(['reset'])).stdout, 'fresh device, model rfc\n', 'the next client is served')
})

t.test('a second hold on the same socket is refused by name; the first keeps serving', async (t) => {
  const h = await held(t)
  const pid = h.hold.child.pid
  const second = await runCli(['hold', '--socket', h.socket, '--device', `emu:${h.state}`])
  t.equal(second.code, 1)
  t.equal(second.stdout, '')
  t.equal(second.stderr, `vhost-iotlb: bind: EADDRINUSE (${h.socket} is held by vhost-iotlb hold (pid ${pid}); stop it or choose another --socket)\n`)
  const json = await runCli(['hold', '--socket', h.socket, '--json'], {state: join(h.dir, 'other.json')})
  t.equal(json.code, 1)
  t.same(JSON.parse(json.stdout), {error: {code: 'EADDRINUSE', message: `bind: EADDRINUSE (${h.socket} is held by vhost-iotlb hold (pid ${pid}); stop it or choose another --socket)`}})
  t.equal((await h.via(['dump'])).code, 0, 'the first holder still answers')

  const file = join(h.dir, 'plain')
  fs.writeFileSync(file, 'keep me')
  const refused = await runCli(['hold', '--socket', file], {state: join(h.dir, 'other.json')})
  t.equal(refused.code, 1)
  t.equal(refused.stderr, `vhost-iotlb: bind: EEXIST (${file} exists and is not a socket; not replacing it)\n`)
  t.equal(fs.readFileSync(file, 'utf8'), 'keep me')

  const nested = await runCli(['hold', '--socket', join(h.dir, 'x.sock'), '--device', `unix:${h.socket}`])
  t.equal(nested.code, 2)
  t.equal(nested.stderr, `vhost-iotlb: hold: unix:${h.socket} is already held; give one-off commands --device unix:${h.socket} directly\n`)
})

t.test('SIGINT and SIGTERM stop the holder: socket removed, exit 0, a summary', async (t) => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const {dir, remove} = socketDir()
    t.teardown(remove)
    const socket = join(dir, 's.sock')
    const hold = startHold(['--device', `emu:${join(dir, 'emu.json')}`, '--socket', socket])
    t.teardown(() => hold.stop('SIGKILL'))
    await hold.ready
    t.equal(hold.err(), `holding emu:${join(dir, 'emu.json')} at unix:${socket} (pid ${hold.child.pid}); stop with Ctrl-C\n`)
    t.equal(fs.lstatSync(socket).mode & 0o777, 0o600, 'the socket is private')
    await runCli(['dump'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
    t.same(await hold.stop(signal), {code: 0, signal: null}, `${signal}: exit 0`)
    t.notOk(fs.existsSync(socket), `${signal}: the socket is gone`)
    t.equal(hold.out(), '')
    t.match(hold.err(), `\nstopped by ${signal}: 1 request from 1 connection; unix:${socket} removed\n`)
    const after = await runCli(['dump'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
    t.equal(after.code, 1)
    t.equal(after.stderr, `vhost-iotlb: connect: ENOENT (nothing holds a device at ${socket}; start \`vhost-iotlb hold --socket ${socket}\`)\n`)
  }
})

t.test('hold --json: a line when serving and one when stopped', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const socket = join(dir, 's.sock')
  const hold = startHold(['--socket', socket, '--json'], {VHOST_IOTLB_STATE: join(dir, 'emu.json')})
  t.teardown(() => hold.stop('SIGKILL'))
  await hold.ready
  const end = Date.now() + 5000
  while (!hold.out().endsWith('\n') && Date.now() < end) await sleep(10)
  t.same(JSON.parse(hold.out()), {holding: 'emu', socket: `unix:${socket}`, pid: hold.child.pid})
  await runCli(['set-fd', '4'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
  await runCli(['dump', '--json'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
  t.same(await hold.stop(), {code: 0, signal: null})
  const lines = hold.out().trim().split('\n').map((line) => JSON.parse(line))
  t.same(lines[1], {stopped: 'SIGINT', requests: 2, connections: 2})
  t.equal(hold.err(), `holding emu at unix:${socket} (pid ${hold.child.pid}); stop with Ctrl-C\n`)
})

t.test('a killed holder leaves a stale socket that the next hold replaces', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const socket = join(dir, 's.sock')
  const state = join(dir, 'emu.json')
  const first = startHold(['--device', `emu:${state}`, '--socket', socket])
  t.teardown(() => first.stop('SIGKILL'))
  await first.ready
  await runCli(['set-fd', '9'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
  await first.stop('SIGKILL')
  t.ok(fs.lstatSync(socket).isSocket(), 'kill -9 leaves the socket file')
  const stale = await runCli(['dump'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
  t.equal(stale.code, 1)
  t.equal(stale.stderr, `vhost-iotlb: connect: ECONNREFUSED (nothing holds a device at ${socket}; start \`vhost-iotlb hold --socket ${socket}\`)\n`)
  const second = startHold(['--device', `emu:${state}`, '--socket', socket])
  t.teardown(() => second.stop('SIGKILL'))
  await second.ready
  const dump = await runCli(['dump', '--json'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
  t.equal(JSON.parse(dump.stdout).iotlb_fd, 9, 'the emulated device kept its state in its file')
  t.same(await second.stop(), {code: 0, signal: null})
})

t.test('connecting to nothing is a named error, exit 1', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const socket = join(dir, 'nobody.sock')
  const text = await runCli(['translate', '0x1000'], {env: {VHOST_IOTLB_DEVICE: `unix:${socket}`}})
  t.equal(text.code, 1)
  t.equal(text.stdout, '')
  t.equal(text.stderr, `vhost-iotlb: connect: ENOENT (nothing holds a device at ${socket}; start \`vhost-iotlb hold --socket ${socket}\`)\n`)
  const json = await runCli(['dump', '--json', '--device', `unix:${socket}`])
  t.equal(json.code, 1)
  t.same(JSON.parse(json.stdout), {error: {code: 'ENOENT', message: `connect: ENOENT (nothing holds a device at ${socket}; start \`vhost-iotlb hold --socket ${socket}\`)`}})
})

t.test('the kernel suite\'s scenario runs end to end on an emulated device', async (t) => {
  const {dir, remove} = socketDir()
  t.teardown(remove)
  const state = join(dir, 'emu.json')
  await runCli(['set-fd', '3'], {state})
  const transcript = await holdScenario(BIN, `emu:${state}`, {
    steps: [['update', '--iova', '0x100000', '--size', '4k', '--uaddr', '0x7f0000100000', '--json'], ['dump', '--json'], ['invalidate', '--iova', '0x100000', '--json'], ['dump', '--json']],
  })
  t.equal(transcript.ready, true)
  t.same(
    transcript.steps.map((step) => step.code),
    [0, 0, 0, 0],
  )
  t.match(JSON.parse(transcript.steps[1]!.stdout), {iotlb_fd: 3, entries: [{slot: 256, iova: '0x100000', valid: true}]})
  t.match(JSON.parse(transcript.steps[2]!.stdout), {slot: 256, invalidated: true})
  t.match(JSON.parse(transcript.steps[3]!.stdout), {entries: [{slot: 256, type: 'invalidate', valid: false}]})
  t.same({code: transcript.hold.code, removed: transcript.socketRemoved}, {code: 0, removed: true})
  t.match(transcript.hold.stderr, /stopped by SIGINT: 4 requests from 4 connections/)

  // The default steps are for a real device (memory backed by the holder, ranged invalidate): on the
  // emulated device they are usage errors, recorded and not judged.
  const defaults = await holdScenario(BIN, `emu:${state}`)
  t.same(
    defaults.steps.map((step) => step.code),
    [2, 0, 2, 0],
  )
})
