// `vhost-iotlb batch` through the real binary: stdin and files, exit codes, NDJSON through jq,
// Ctrl-C, a reader that goes away, and the state file after each.
import {spawn, spawnSync} from 'node:child_process'
import * as fs from 'node:fs'

import t from 'tap'

import {BIN, runCli} from '../fixtures/cli.js'

const SETUP = 'set-fd 5\nset-request-entry 0x7f0000000000\n'

function lines(stdout: string): any[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line))
}

t.test('stdin to NDJSON: update, translate, a miss, and the state saved', async (t) => {
  const state = `${t.testdir()}/emu.json`
  const input = `${SETUP}update --iova 0x1000 --size 4k --uaddr 0x7f0000001000\ntranslate 0x1010 --len 16\ntranslate 0x2000\n`
  const run = await runCli(['batch', '-', '--json'], {state, input})
  t.equal(run.code, 0)
  t.equal(run.stderr, '')
  const objects = lines(run.stdout)
  t.same(
    objects.map((o) => [o.line, o.command[0], o.exit]),
    [
      [1, 'set-fd', 0],
      [2, 'set-request-entry', 0],
      [3, 'update', 0],
      [4, 'translate', 0],
      [5, 'translate', 3],
    ],
  )
  t.equal(objects[3].result.iov[0].userspace_addr, '0x7f0000001010')
  const dump = await runCli(['dump', '--json'], {state})
  t.match(JSON.parse(dump.stdout), {iotlb_fd: 5, waiting: true, pending: {iova: '0x2000', type: 'miss'}, entries: [{slot: 1}]})
})

t.test('FILE is the default - when omitted', async (t) => {
  const run = await runCli(['batch'], {state: `${t.testdir()}/emu.json`, input: 'set-fd 3\n'})
  t.equal(run.code, 0)
  t.equal(run.stdout, 'iotlb fd 3\n')
})

t.test('a pipeline through jq', {skip: spawnSync('jq', ['--version']).error ? 'jq is not installed' : false}, async (t) => {
  const state = `${t.testdir()}/emu.json`
  const script = `printf 'update --iova 0x3000 --size 4k --uaddr 0x7f0000003000\\ntranslate 0x3000\\n' | "${process.execPath}" "${BIN}" batch - --json | jq -c '[.line, .result.slot // .result.status]'`
  const run = spawnSync('sh', ['-c', script], {env: {...process.env, VHOST_IOTLB_STATE: state}, encoding: 'utf8'})
  t.equal(run.stdout, '[1,3]\n[2,"ok"]\n')
  t.equal(run.status, 0)
})

t.test('a file: stop at the first failure with FILE:LINE and its exit code; what ran is saved', async (t) => {
  const dir = t.testdir({'trace.txt': `# setup\n${SETUP}translate 0x1000\ntranslate 0x2000\nset-fd 9\n`})
  const state = `${dir}/emu.json`
  const run = await runCli(['batch', `${dir}/trace.txt`], {state})
  t.equal(run.code, 1, 'the second miss faults (EFAULT): exit 1')
  t.equal(run.stderr, `${dir}/trace.txt:5: translate: EFAULT (miss at 0x2000: a miss for 0x1000 is already outstanding)\n`)
  const dump = JSON.parse((await runCli(['dump', '--json'], {state})).stdout)
  t.equal(dump.iotlb_fd, 5, 'line 6 never ran')
  t.equal(dump.pending.iova, '0x1000', 'the first miss stays pending')
  t.notOk(fs.existsSync(`${state}.lock`))

  const forced = await runCli(['batch', '--force', `${dir}/trace.txt`], {state: `${dir}/other.json`})
  t.equal(forced.code, 1)
  t.equal(JSON.parse((await runCli(['dump', '--json'], {state: `${dir}/other.json`})).stdout).iotlb_fd, 9)
})

t.test('usage errors: a missing file, bad flags', async (t) => {
  const missing = await runCli(['batch', `${t.testdir()}/nope.txt`], {state: `${t.testdir()}/emu.json`})
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^vhost-iotlb: cannot read script .*nope\.txt: no such file or directory/)
  const json = await runCli(['batch', `${t.testdir()}/nope.txt`, '--json'], {state: `${t.testdir()}/emu.json`})
  t.match(JSON.parse(json.stdout), {error: {code: 'ENOENT'}})
  const flag = await runCli(['batch', '--bogus'], {state: `${t.testdir()}/emu.json`})
  t.equal(flag.code, 2)
})

t.test('--device binds every line', async (t) => {
  const dir = t.testdir()
  const run = await runCli(['batch', '-d', `emu:${dir}/a.json`], {state: `${dir}/default.json`, input: 'set-fd 4\n'})
  t.equal(run.code, 0)
  t.ok(fs.existsSync(`${dir}/a.json`))
  t.notOk(fs.existsSync(`${dir}/default.json`))
})

/** A script long enough to be running when we interrupt it. */
function bigScript(dir: string, count = 400_000): string {
  const path = `${dir}/big.txt`
  const body = Array.from({length: count}, (_, i) => `set-fd ${i}`).join('\n')
  fs.writeFileSync(path, `${body}\n`)
  return path
}

function spawnBatch(args: string[], state: string) {
  const child = spawn(process.execPath, [BIN, 'batch', ...args], {env: {...process.env, VHOST_IOTLB_STATE: state, NO_COLOR: '1'}})
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  return {child, exited, out: () => stdout, err: () => stderr}
}

t.test('Ctrl-C: stop after the current line, save, exit 130', async (t) => {
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  const run = spawnBatch([bigScript(dir), '--json'], state)
  await new Promise<void>((resolve) => run.child.stdout.once('data', () => resolve()))
  run.child.kill('SIGINT')
  const code = await run.exited
  t.equal(code, 130)
  const objects = lines(run.out())
  const last = objects.at(-1)
  t.ok(objects.length < 400_000, `stopped early (line ${last.line})`)
  t.match(run.err(), new RegExp(`^vhost-iotlb: batch: interrupted after ${dir}/big.txt:${last.line}; what ran is saved\n$`))
  const dump = JSON.parse((await runCli(['dump', '--json'], {state})).stdout)
  t.equal(dump.iotlb_fd, last.result.iotlb_fd, 'the state is that of the last line printed')
  t.notOk(fs.existsSync(`${state}.lock`), 'lock released')
})

t.test('a reader that goes away (| head): stop quietly, save, exit 141', async (t) => {
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  const run = spawnBatch([bigScript(dir)], state)
  await new Promise<void>((resolve) => run.child.stdout.once('data', () => resolve()))
  run.child.stdout.destroy()
  const code = await run.exited
  t.equal(code, 141)
  t.equal(run.err(), '', 'no stack trace, no message')
  const dump = JSON.parse((await runCli(['dump', '--json'], {state})).stdout)
  t.ok(dump.iotlb_fd < 399_999, 'stopped before the end')
  t.notOk(fs.existsSync(`${state}.lock`), 'lock released')
})
