// The state file: validated on load, written atomically, never overwritten when foreign, and
// guarded by a lock that survives a holder killed with -9.
import * as fs from 'node:fs'
import {spawnSync} from 'node:child_process'

import t from 'tap'

import {EmulatedDevice} from '../../src/device/emulated/device.js'
import {freshState} from '../../src/device/emulated/model.js'
import {STATE_FORMAT, parseStateText, serializeState} from '../../src/device/emulated/state.js'
import {StateLock, defaultStatePath, loadState, saveState} from '../../src/device/emulated/store.js'
import {LockTimeoutError, StateFileError} from '../../src/device/errors.js'

t.test('default path: $VHOST_IOTLB_STATE, else $XDG_STATE_HOME, else ~/.local/state', async (t) => {
  t.equal(defaultStatePath({VHOST_IOTLB_STATE: '/x/s.json', XDG_STATE_HOME: '/y', HOME: '/h'}), '/x/s.json')
  t.equal(defaultStatePath({XDG_STATE_HOME: '/y', HOME: '/h'}), '/y/vhost-iotlb/emu.json')
  t.equal(defaultStatePath({HOME: '/h'}), '/h/.local/state/vhost-iotlb/emu.json')
})

t.test('a missing file is a fresh device and reading it creates nothing', async (t) => {
  const path = `${t.testdir()}/sub/emu.json`
  const device = await EmulatedDevice.open(path, `emu:${path}`)
  const dump = await device.dump({})
  t.equal(dump.entries.length, 0)
  t.equal(dump.model, 'rfc')
  await device.close()
  t.notOk(fs.existsSync(path))
})

t.test('save and load round-trip every field', async (t) => {
  const path = `${t.testdir()}/emu.json`
  const device = await EmulatedDevice.open(path, 'emu')
  await device.setIotlbFd(4)
  await device.setRequestEntry(0x7f00_0000_0000n)
  await device.update({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x2000n, perm: 0x11, type: 2, valid: true})
  await device.translate(0x3000n, 1n)
  const loaded = loadState(path).state!
  t.equal(loaded.iotlb_fd, 4)
  t.equal(loaded.eventfd_signals, 1)
  t.equal(loaded.request_entry, 0x7f00_0000_0000n)
  t.equal(loaded.iotlb[1]!.userspace_addr, 0x2000n)
  t.equal(loaded.pending.iova, 0x3000n)
  t.same(parseStateText(serializeState(loaded)), loaded)
  const file = JSON.parse(fs.readFileSync(path, 'utf8'))
  t.equal(file.format, STATE_FORMAT)
  t.same(Object.keys(file.slots), ['1'], 'untouched slots are not stored')
})

t.test('nothing is written when nothing changed', async (t) => {
  const path = `${t.testdir()}/emu.json`
  const device = await EmulatedDevice.open(path, 'emu')
  await device.setIotlbFd(4)
  const before = fs.statSync(path)
  await device.setIotlbFd(4)
  t.equal(fs.statSync(path).ino, before.ino, 'no rename happened')
})

const foreign: Array<[string, string | Buffer, RegExp]> = [
  ['an empty file', '', /EBADSTATE|not JSON/],
  ['a truncated file', serializeState(freshState('rfc')).slice(0, 50), /not JSON/],
  ['JSON of another shape', '{"name": "something else"}', /not a vhost-iotlb emulated-device file/],
  ['a JSON array', '[1, 2]', /not a vhost-iotlb emulated-device file/],
  ['a bad slot', serializeState(freshState('rfc')).replace('"slots": {}', '"slots": {"1024": "' + '0'.repeat(64) + '"}'), /slots/],
  ['binary bytes', Buffer.from([0, 159, 146, 150]), /not JSON/],
]

for (const [name, content, message] of foreign) {
  t.test(`${name} gives a named error and is left untouched`, async (t) => {
    const path = `${t.testdir()}/emu.json`
    fs.writeFileSync(path, content)
    const before = fs.readFileSync(path)
    t.throws(() => loadState(path), StateFileError)
    t.throws(() => loadState(path), {code: 'EBADSTATE', message})
    await t.rejects(
      (async () => {
        const device = await EmulatedDevice.open(path, 'emu')
        await device.setIotlbFd(1)
      })(),
      {code: 'EBADSTATE'},
    )
    t.same(fs.readFileSync(path), before)
  })
}

t.test('a directory at the path is EISDIR', async (t) => {
  const path = t.testdir({'emu.json': {}}) + '/emu.json'
  t.throws(() => loadState(path), {name: 'StateFileError', code: 'EISDIR'})
})

t.test('a FIFO at the path does not hang', async (t) => {
  const dir = t.testdir()
  const made = spawnSync('mkfifo', [`${dir}/emu.json`])
  if (made.status !== 0) return t.comment('mkfifo unavailable: skipped')
  t.throws(() => loadState(`${dir}/emu.json`), {code: 'EFTYPE'})
})

t.test('saveState leaves no temp files behind', async (t) => {
  const dir = t.testdir()
  saveState(`${dir}/emu.json`, freshState('fixed'), undefined)
  t.same(fs.readdirSync(dir), ['emu.json'])
})

t.test('the lock waits for a live holder and times out with a named error', async (t) => {
  const path = `${t.testdir()}/emu.json`
  const held = await StateLock.acquire(path)
  await t.rejects(StateLock.acquire(path, 50), LockTimeoutError)
  await t.rejects(StateLock.acquire(path, 50), {code: 'EBUSY', message: new RegExp(`locked by pid ${process.pid}`)})
  held.release()
  const next = await StateLock.acquire(path, 50)
  t.ok(next.held())
  next.release()
  t.notOk(fs.existsSync(`${path}.lock`))
})

t.test('a lock left by a killed process is broken', async (t) => {
  const path = `${t.testdir()}/emu.json`
  const child = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'])
  const deadPid = Number(String(child.stdout).trim())
  fs.writeFileSync(`${path}.lock`, `${deadPid} 1 abc`)
  const lock = await StateLock.acquire(path, 1000)
  t.ok(lock.held())
  lock.release()
  fs.writeFileSync(`${path}.lock`, 'garbage')
  const again = await StateLock.acquire(path, 1000)
  t.ok(again.held(), 'a lock file that names no holder is stale too')
  again.release()
})

t.test('a failed operation leaves the file byte-identical', async (t) => {
  const path = `${t.testdir()}/emu.json`
  const device = await EmulatedDevice.open(path, 'emu')
  await device.update({iova: 0x1000n, size: 0x1000n, userspace_addr: 0x2000n, perm: 0x11, type: 2, valid: true})
  const before = fs.readFileSync(path)
  await t.rejects(device.update({iova: 0x1000n, size: 1n, userspace_addr: 1n, perm: 0, type: 9, valid: true}), {code: 'EINVAL'})
  await t.rejects(device.setRequestEntry(0x7fff_ffff_f000n), {code: 'EFAULT'})
  t.match(await device.translate(0x5000n, 1n), {status: 'fault'})
  t.same(fs.readFileSync(path), before)
})

t.test('held (batch) mode locks once and saves on flush', async (t) => {
  const path = `${t.testdir()}/emu.json`
  const device = await EmulatedDevice.open(path, 'emu', {hold: true})
  await device.setIotlbFd(3)
  t.notOk(fs.existsSync(path), 'not written before flush')
  await t.rejects(StateLock.acquire(path, 30), LockTimeoutError, 'the lock is held for the session')
  await device.flush()
  t.equal(loadState(path).state!.iotlb_fd, 3)
  await device.close()
  t.notOk(fs.existsSync(`${path}.lock`))
})
