// listen on the emulated device: it sees the misses that translate posts from other processes,
// answers them from a map like QEMU would, and stops on --count or SIGINT.
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'

import t, {type Test} from 'tap'

import {BIN, runCli} from '../fixtures/cli.js'

function startListen(args: string[], state: string) {
  const child = spawn(process.execPath, [BIN, 'listen', ...args], {env: {...process.env, VHOST_IOTLB_STATE: state, NO_COLOR: '1'}})
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const done = new Promise<number | null>((resolve) => child.on('close', resolve))
  return {child, done, out: () => stdout, err: () => stderr}
}

async function until(predicate: () => boolean, what: string, ms = 10_000) {
  const end = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function armed(t: Test) {
  const dir = t.testdir({'map.txt': '0x100000 64k rw 0x7f0000100000\n0x200000 4k ro 0x7f0000200000\n'})
  const state = `${dir}/emu.json`
  await runCli(['set-fd', '3'], {state})
  await runCli(['set-request-entry', '0x7f0000000000'], {state})
  return {dir, state}
}

t.test('listen --map answers misses posted by translate in other processes', async (t) => {
  const {dir, state} = await armed(t)
  // A miss posted before the listener is up is reported when it starts, so no start-up wait.
  const listener = startListen(['--map', `${dir}/map.txt`, '--count', '3', '--json'], state)
  const first = await runCli(['translate', '0x100010'], {state})
  t.equal(first.code, 3, 'the one-shot translate reports its miss')
  await until(() => listener.out().split('\n').length > 1, 'the first answer')
  const again = await runCli(['translate', '0x100010', '--json'], {state})
  t.equal(again.code, 0, 'the answered page now hits')
  t.same(JSON.parse(again.stdout).iov, [{iova: '0x100010', userspace_addr: '0x7f0000100010', len: '0x1'}])
  t.equal((await runCli(['translate', '0x300000'], {state})).code, 3)
  await until(() => listener.out().split('\n').length > 2, 'the unanswered miss')
  // The unanswered miss stays outstanding, as in the kernel: the next translate faults.
  t.equal((await runCli(['translate', '0x200000'], {state})).code, 1)
  await runCli(['update', '--iova', '0x300000', '--size', '4k', '--uaddr', '0x1000'], {state})
  t.equal((await runCli(['translate', '0x200000'], {state})).code, 3)
  t.equal(await listener.done, 0, '--count 3 ends the listener with 0')
  const lines = listener.out().trim().split('\n').map((line) => JSON.parse(line))
  t.equal(lines.length, 4)
  t.match(lines[0], {event: 'miss', iova: '0x100000', answer: {slot: 256, completed_miss: true, entry: {userspace_addr: '0x7f0000100000', perm: 'rw'}}})
  t.match(lines[1], {event: 'miss', iova: '0x300000', unanswered: `no range in ${dir}/map.txt covers 0x300000`})
  t.match(lines[2], {event: 'miss', iova: '0x200000', answer: {entry: {perm: 'ro', size: '0x1000'}}})
  t.same(lines[3], {events: 3, answered: 2, stopped: 'count'})
})

t.test('a miss outstanding when listen starts is reported first', async (t) => {
  const {state} = await armed(t)
  t.equal((await runCli(['translate', '0x5000'], {state})).code, 3)
  const listener = startListen(['--count', '1'], state)
  t.equal(await listener.done, 0)
  t.equal(listener.out(), 'miss iova 0x5000 perm none\n')
  t.equal(listener.err(), '1 event, 0 answered (count reached)\n')
})

t.test('SIGINT stops listen promptly with 130 and a summary', async (t) => {
  const {state} = await armed(t)
  t.equal((await runCli(['translate', '0x5000'], {state})).code, 3)
  const before = fs.readFileSync(state)
  const listener = startListen([], state)
  // Its first line proves the listener is past start-up, with its SIGINT handler in place.
  await until(() => listener.out() !== '', 'the listener to report the outstanding miss')
  const sent = Date.now()
  listener.child.kill('SIGINT')
  t.equal(await listener.done, 130)
  t.ok(Date.now() - sent < 2000, 'within 2 s')
  t.equal(listener.err(), '1 event, 0 answered (interrupted)\n')
  t.same(fs.readFileSync(state), before, 'listening without answering writes nothing')
})

t.test('a bad map file is a usage error naming the line', async (t) => {
  const dir = t.testdir({'bad.txt': '0x1000 4k rw\n0x2000 zz rw\n'})
  const run = await runCli(['listen', '--map', `${dir}/bad.txt`], {state: `${dir}/emu.json`})
  t.equal(run.code, 2)
  t.equal(run.stderr, `vhost-iotlb: ${dir}/bad.txt:2: size: "zz" is not a number (decimal or 0x hex, _ separators, k/m/g suffix)\n`)
  const missing = await runCli(['listen', '--map', `${dir}/none.txt`], {state: `${dir}/emu.json`})
  t.equal(missing.code, 2)
  t.match(missing.stderr, /--map: cannot read .*none\.txt: ENOENT/)
})

t.test('probe describes the emulated device', async (t) => {
  const dir = t.testdir()
  const run = await runCli(['probe', '--json'], {state: `${dir}/emu.json`})
  t.equal(run.code, 0)
  t.match(JSON.parse(run.stdout), {kind: 'emulated', protocol: 'rfc', rfc_ioctls: true, features: null, msg_version: null})
  const text = await runCli(['probe'], {state: `${dir}/emu.json`})
  t.match(text.stdout, /│ protocol +│ RFC ioctls \(VHOST_UPDATE_IOTLB\) +│/)
})
