// Whatever sits at the state file's path, a command must stop with a named error and leave it
// alone: a truncated file, an empty one, JSON of another shape, a directory, a FIFO, a
// symlink loop, binary junk, and a file the user cannot read (checked as a non-root user).
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'

import t from 'tap'

import {BIN, STACK_LINE, run} from '../fixtures/robustness/proc.js'

interface Planted {
  name: string
  /** Puts the thing at `path`. */
  plant(path: string, good: string): void
  code: string
  /** Part of the message, after the path. */
  says: RegExp
}

const PLANTS: Planted[] = [
  {name: 'a truncated file', plant: (path, good) => fs.writeFileSync(path, good.slice(0, Math.floor(good.length / 2))), code: 'EBADSTATE', says: /not JSON/},
  {name: 'an empty file', plant: (path) => fs.writeFileSync(path, ''), code: 'EBADSTATE', says: /not JSON/},
  {name: 'package.json', plant: (path) => fs.writeFileSync(path, '{"name": "x", "version": "1.0.0"}\n'), code: 'EBADSTATE', says: /not a vhost-iotlb emulated-device file/},
  {name: 'a JSON array', plant: (path) => fs.writeFileSync(path, '[1, 2, 3]\n'), code: 'EBADSTATE', says: /not a vhost-iotlb emulated-device file/},
  {name: 'JSON null', plant: (path) => fs.writeFileSync(path, 'null'), code: 'EBADSTATE', says: /not a vhost-iotlb emulated-device file/},
  {
    name: 'a state file of another version',
    plant: (path, good) => fs.writeFileSync(path, good.replace('"version": 1', '"version": 2')),
    code: 'EBADSTATE',
    says: /version/,
  },
  {
    name: 'a state file with a slot out of range',
    plant: (path, good) => fs.writeFileSync(path, good.replace('"1":', '"1024":')),
    code: 'EBADSTATE',
    says: /invalid: slots/,
  },
  {name: 'binary junk', plant: (path) => fs.writeFileSync(path, Buffer.from([0, 0xff, 0xfe, 0x7b, 0, 0x22, 0x80])), code: 'EBADSTATE', says: /not JSON/},
  {name: 'a directory', plant: (path) => fs.mkdirSync(path), code: 'EISDIR', says: /is a directory/},
  {name: 'a FIFO', plant: (path) => spawnSync('mkfifo', [path]), code: 'EFTYPE', says: /not a regular file/},
  {name: 'a symlink loop', plant: (path) => fs.symlinkSync(path, path), code: 'ELOOP', says: /cannot open it/},
]

const UPDATE = ['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f0000001000']

/** What must not change: the bytes (or a directory's listing), the mode and the mtime. */
function fingerprint(path: string): string {
  const stat = fs.lstatSync(path)
  const content = stat.isFile() ? fs.readFileSync(path).toString('hex') : stat.isDirectory() ? fs.readdirSync(path).join('/') : ''
  return `${stat.mode}:${stat.mtimeMs}:${stat.size}:${content}`
}

function check(t: Tap, label: string, ran: Awaited<ReturnType<typeof run>>, path: string, code: string, says: RegExp, json: boolean): void {
  t.equal(ran.code, 1, `${label}: exit 1`)
  if (json) {
    let error: {code?: string; message?: string} = {}
    try {
      error = JSON.parse(ran.stdout).error ?? {}
    } catch {}
    t.equal(error.code, code, `${label}: JSON error code ${code}`)
    t.match(error.message, says, `${label}: JSON message says why`)
  } else {
    t.equal(ran.stdout, '', `${label}: nothing on stdout`)
  }

  t.ok(ran.stderr.startsWith(`vhost-iotlb: state file ${path}: `), `${label}: the message names the file`)
  t.match(ran.stderr, says, `${label}: and says why`)
  t.notMatch(ran.stderr, STACK_LINE, `${label}: no stack trace: ${ran.stderr}`)
}

/** The type of a subtest's `t` (the last overload of t.test takes only the callback). */
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

t.test('foreign things at the state path: named errors, left untouched', async (t) => {
  const dir = t.testdir()
  const good = `${dir}/good.json`
  for (const argv of [['set-fd', '5'], UPDATE]) await run(argv, {env: {VHOST_IOTLB_STATE: good}})
  const goodText = fs.readFileSync(good, 'utf8')

  for (const [i, planted] of PLANTS.entries()) {
    const path = `${dir}/${i}.json`
    planted.plant(path, goodText)
    const before = fingerprint(path)
    const env = {VHOST_IOTLB_STATE: path}
    for (const argv of [['dump', '--json'], ['dump'], [...UPDATE, '--json'], ['reset']]) {
      const ran = await run(argv, {env, timeoutMs: 20_000})
      check(t, `${planted.name}, ${argv[0]}${argv.includes('--json') ? ' --json' : ''}`, ran, path, planted.code, planted.says, argv.includes('--json'))
      t.equal(fingerprint(path), before, `${planted.name}, ${argv[0]}: untouched`)
    }
  }

  t.same(
    fs.readdirSync(dir).filter((name) => !/^(?:good|\d+)\.json$/.test(name)),
    [],
    'no lock or temporary file left',
  )
})

/** How to run the binary as an unprivileged user, or why we cannot. */
function unprivileged(): {command: string[]} | {skip: string} {
  if (process.getuid?.() !== 0) return {command: [process.execPath, BIN]}
  const nobody = 65_534
  const options = [
    ['setpriv', `--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', process.execPath, BIN],
    ['runuser', '-u', 'nobody', '--', process.execPath, BIN],
  ]
  for (const command of options) {
    // Through env -u, as run() does: tap's hooks would fail as nobody (see proc.ts).
    const probe = spawnSync('env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', ...command, '--version'], {encoding: 'utf8'})
    if (probe.status === 0) return {command}
  }

  return {skip: 'running as root and neither setpriv nor runuser can run the binary as nobody'}
}

const as = unprivileged()

t.test('an unreadable state file, as a non-root user', {skip: 'skip' in as ? as.skip : false}, async (t) => {
  if ('skip' in as) return

  // Under the system temp dir: the repository may sit where nobody cannot reach.
  const dir = fs.mkdtempSync(`${os.tmpdir()}/vhost-iotlb-unreadable-`)
  t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}))
  fs.chmodSync(dir, 0o777) // the lock file goes next to the state file
  const path = `${dir}/emu.json`
  await run(UPDATE, {env: {VHOST_IOTLB_STATE: path}})
  fs.chmodSync(path, 0o000)
  const before = fingerprint(path)
  for (const argv of [['dump', '--json'], [...UPDATE, '--json'], ['dump']]) {
    const ran = await run(argv, {env: {VHOST_IOTLB_STATE: path, HOME: dir}, command: as.command})
    check(t, `unreadable, ${argv[0]}`, ran, path, 'EACCES', /cannot open it: permission denied/, argv.includes('--json'))
    t.equal(fingerprint(path), before, `unreadable, ${argv[0]}: untouched`)
  }

  t.same(fs.readdirSync(dir), ['emu.json'], 'no lock or temporary file left')
})
