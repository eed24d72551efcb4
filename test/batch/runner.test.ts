// The script runner behind `batch` and the piped REPL, in this process: splitting, comments,
// stopping at a failure, --force, NDJSON, misses, and what is saved.
import * as fs from 'node:fs'

import t from 'tap'

import {chunks, runInProcess} from '../fixtures/repl/script.js'

const SETUP = 'set-fd 5\nset-request-entry 0x7f0000000000\n'

function state(t: {testdir(): string}): string {
  return `${t.testdir()}/emu.json`
}

function ndjson(stdout: string): any[] {
  t.ok(stdout.endsWith('\n'), 'NDJSON ends in a newline')
  return stdout
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line))
}

async function dumpOf(path: string): Promise<any> {
  const {stdout} = await runInProcess({state: path, mode: 'ndjson', input: 'dump\n'})
  return JSON.parse(stdout).result
}

t.test('text: comments, blank lines, quoting and CRLF; output as the commands print it', async (t) => {
  const script = [
    '# map one page, then read through it',
    '',
    "update --iova 0x1000 --size '4k' --uaddr \"0x7f00_0000_1000\" --perm rw   # a comment",
    '   ',
    'translate 0x1800 --len 0x10\r',
  ].join('\n')
  const run = await runInProcess({state: state(t), input: `${script}\n`})
  t.equal(run.stdout, 'slot 1: iova 0x1000 size 0x1000 uaddr 0x7f0000001000 perm rw type update valid\n0x1800 len 0x10: 1 iov\n  iov[0] iova 0x1800 -> uaddr 0x7f0000001800 len 0x10\n')
  t.equal(run.stderr, '')
  t.same(run.end, {exitCode: 0, failures: 0, line: 5, interrupted: false})
})

t.test('NDJSON: one object per line, numbered as in the file, misses are results', async (t) => {
  const path = state(t)
  const run = await runInProcess({state: path, mode: 'ndjson', input: `${SETUP}# comment\n\ntranslate 0x5000\nupdate --iova 0x5000 --size 4k --uaddr 0x7f0000005000\ntranslate 0x5008 --len 8 --json\n`})
  const objects = ndjson(run.stdout)
  t.same(
    objects.map((o) => [o.line, o.command, o.exit]),
    [
      [1, ['set-fd', '5'], 0],
      [2, ['set-request-entry', '0x7f0000000000'], 0],
      [5, ['translate', '0x5000'], 3],
      [6, ['update', '--iova', '0x5000', '--size', '4k', '--uaddr', '0x7f0000005000'], 0],
      [7, ['translate', '0x5008', '--len', '8', '--json'], 0],
    ],
  )
  t.same(objects[0], {line: 1, command: ['set-fd', '5'], result: {iotlb_fd: 5}, exit: 0})
  t.match(objects[2].result, {status: 'miss', iova: '0x5000', request: {type: 'miss'}})
  t.equal(objects[3].result.completed_miss, true)
  t.same(objects[4].result.iov, [{iova: '0x5008', userspace_addr: '0x7f0000005008', len: '0x8'}])
  t.equal(run.stderr, '')
  t.equal(run.end.exitCode, 0, 'a miss is not a failure')
})

t.test('a miss left unanswered stays pending after the batch', async (t) => {
  const path = state(t)
  const run = await runInProcess({state: path, input: `${SETUP}translate 0x9000\n`})
  t.equal(run.end.exitCode, 0)
  const dump = await dumpOf(path)
  t.equal(dump.waiting, true)
  t.match(dump.pending, {iova: '0x9000', type: 'miss'})
})

t.test('the first failure stops the script with its exit code and FILE:LINE', async (t) => {
  const path = state(t)
  const script = 'set-fd 5\n\nupdate --iova 0 --size 1 --uaddr 1 --type miss\nset-fd 6\n'
  const run = await runInProcess({state: path, input: script})
  t.equal(run.end.exitCode, 1, 'EINVAL exits 1')
  t.equal(run.end.line, 3)
  t.equal(run.stdout, 'iotlb fd 5\n')
  t.equal(run.stderr, 'script:3: VHOST_UPDATE_IOTLB: EINVAL (flags.type 1 is neither UPDATE (2) nor INVALIDATE (3))\n')
  t.equal((await dumpOf(path)).iotlb_fd, 5, 'what succeeded is saved; the line after the failure never ran')

  const usage = await runInProcess({state: path, input: 'set-fd 7\nupdate --iova 0x1000\nset-fd 8\n'})
  t.equal(usage.end.exitCode, 2, 'a usage error exits 2')
  t.equal(usage.stderr, 'script:2: update: missing --size SIZE; see: vhost-iotlb update --help\n')
  t.equal((await dumpOf(path)).iotlb_fd, 7)
})

t.test('a translate fault is a failure: its text on stdout, the reason on stderr', async (t) => {
  const run = await runInProcess({state: state(t), input: 'translate 0x1000\nset-fd 1\n'})
  t.equal(run.end.exitCode, 1)
  t.match(run.stdout, /^fault: EFAULT/)
  t.match(run.stderr, /^script:1: translate: EFAULT \(/)
})

t.test('--force goes on and exits 1 if anything failed', async (t) => {
  const path = state(t)
  const run = await runInProcess({state: path, mode: 'ndjson', force: true, input: 'set-fd 5\nset-fd x\nbogus\nset-fd 6\n'})
  const objects = ndjson(run.stdout)
  t.same(
    objects.map((o) => [o.line, o.exit, o.error?.code ?? null]),
    [
      [1, 0, null],
      [2, 2, 'USAGE'],
      [3, 2, 'USAGE'],
      [4, 0, null],
    ],
  )
  t.same(objects[2], {line: 3, command: ['bogus'], error: {code: 'USAGE', message: 'unknown command "bogus"; see: vhost-iotlb --help'}, exit: 2})
  t.same(run.end, {exitCode: 1, failures: 2, line: 4, interrupted: false})
  t.equal(run.stderr.split('\n').filter(Boolean).length, 2, 'each failure located on stderr')
  t.match(run.stderr, /^script:2: FD: "x" is not an fd/)
  t.equal((await dumpOf(path)).iotlb_fd, 6)
})

t.test('bad quoting is a usage error for that line', async (t) => {
  const run = await runInProcess({state: state(t), mode: 'ndjson', input: "set-fd 5\nset-fd '6\n"})
  const objects = ndjson(run.stdout)
  t.same(objects[1], {line: 2, command: [], error: {code: 'USAGE', message: "unterminated ' quote"}, exit: 2})
  t.equal(run.stderr, "script:2: unterminated ' quote\n")
  t.equal(run.end.exitCode, 2)
})

t.test('batch and repl cannot be lines of a script', async (t) => {
  for (const line of ['batch other.txt', 'repl']) {
    const run = await runInProcess({state: state(t), input: `${line}\n`})
    t.equal(run.end.exitCode, 2, line)
    t.match(run.stderr, /^script:1: (batch|repl): cannot run inside batch or the REPL/, line)
  }
})

t.test("the batch's output mode wins over a line's --json; oneshot keeps the line's", async (t) => {
  const text = await runInProcess({state: state(t), input: 'set-fd 5 --json\n'})
  t.equal(text.stdout, 'iotlb fd 5\n')
  const oneshot = await runInProcess({state: state(t), mode: 'oneshot', input: 'set-fd 5 --json\nset-fd 6\nset-fd x --json\n'})
  t.equal(oneshot.stdout, '{\n  "iotlb_fd": 5\n}\niotlb fd 6\n{\n  "error": {\n    "code": "USAGE",\n    "message": "FD: \\"x\\" is not an fd (an int from -1 to 2147483647, -1 clears; or auto)"\n  }\n}\n')
  t.equal(oneshot.stderr, 'script:3: FD: "x" is not an fd (an int from -1 to 2147483647, -1 clears; or auto)\n')
})

t.test('warnings are located on stderr; NDJSON keeps them in the result', async (t) => {
  const run = await runInProcess({state: state(t), mode: 'ndjson', input: 'update --iova 0x1234 --size 1 --uaddr 1\n'})
  t.match(ndjson(run.stdout)[0].result.warnings, [{code: 'unaligned-iova'}])
  t.match(run.stderr, /^script:1: warning: iova 0x1234 is not page-aligned.*\[unaligned-iova\]\n$/)
  t.equal(run.end.exitCode, 0)
})

t.test('lines split across chunks, a BOM, and a last line without a newline', async (t) => {
  const input = chunks('\uFEFFset', '-fd 5\nset-request-', 'entry 0x7f0000000000\n\nset-f', 'd 6')
  const run = await runInProcess({state: state(t), mode: 'ndjson', input})
  t.same(
    ndjson(run.stdout).map((o) => [o.line, o.command]),
    [
      [1, ['set-fd', '5']],
      [2, ['set-request-entry', '0x7f0000000000']],
      [4, ['set-fd', '6']],
    ],
  )
})

t.test('the session is bound to its device: a line naming another is refused', async (t) => {
  const path = state(t)
  const run = await runInProcess({state: path, input: `set-fd 5 --device emu:${path}\nset-fd 6 -d emu:${path}.other\n`})
  t.equal(run.stdout, 'iotlb fd 5\n')
  t.equal(run.stderr, `script:2: --device emu:${path}.other: this session is bound to emu:${path}\n`)
  t.notOk(fs.existsSync(`${path}.other`))
})

t.test('a stop request ends the script before the next line; what ran is saved', async (t) => {
  const path = state(t)
  const stop = {requested: false}
  async function* input() {
    yield 'set-fd 5\nset-fd 6\n'
    stop.requested = true
    yield 'set-fd 7\nset-fd 8\n'
  }

  const run = await runInProcess({state: path, input: input(), stop})
  t.same(run.end, {exitCode: 0, failures: 0, line: 2, interrupted: true})
  t.equal(run.stdout, 'iotlb fd 5\niotlb fd 6\n')
  t.equal((await dumpOf(path)).iotlb_fd, 6)
})

t.test('a held session writes the state file once, at the end', async (t) => {
  const path = state(t)
  const lines = Array.from({length: 200}, (_, i) => `update --iova 0x${(i * 0x1000).toString(16)} --size 4k --uaddr 0x${(0x7f0000000000 + i * 0x1000).toString(16)}`)
  let seenDuringRun = true
  async function* input() {
    yield `${lines.join('\n')}\n`
    seenDuringRun = fs.existsSync(path)
  }

  const run = await runInProcess({state: path, input: input()})
  t.equal(run.end.exitCode, 0)
  t.notOk(seenDuringRun, 'nothing written while lines run')
  t.equal((await dumpOf(path)).entries.length, 200)
  t.notOk(fs.existsSync(`${path}.lock`), 'lock released')
})
