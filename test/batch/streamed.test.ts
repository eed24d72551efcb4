// Commands that stream (listen) inside a batch: text mode prints their output once, NDJSON mode
// makes them stream JSON, and hold (which serves until a signal) cannot be a line.
import t from 'tap'

import {runCli} from '../fixtures/cli.js'

const script = 'set-fd 3\nset-request-entry 0x7f0000000000\ntranslate 0x100000\nlisten --count 1\n'

t.test('text mode prints a listen line once', async (t) => {
  const dir = t.testdir({'s.txt': script})
  const run = await runCli(['batch', `${dir}/s.txt`], {state: `${dir}/emu.json`})
  t.equal(run.code, 0)
  t.equal(run.stdout.match(/miss iova 0x100000 perm none/g)?.length, 1)
  t.equal(run.stderr, '1 event, 0 answered (count reached)\n', 'the summary once, as a diagnostic')
})

t.test('NDJSON mode: a listen line without --json streams JSON', async (t) => {
  const dir = t.testdir({'s.txt': script})
  const run = await runCli(['batch', `${dir}/s.txt`, '--json'], {state: `${dir}/emu.json`})
  t.equal(run.code, 0)
  const lines = run.stdout.trim().split('\n').map((line) => JSON.parse(line))
  t.match(lines[3], {event: 'miss', iova: '0x100000'})
  t.same(lines.at(-1), {line: 4, command: ['listen', '--count', '1'], result: {events: 1, answered: 0, stopped: 'count'}, exit: 0}, 'the line as written')
})

t.test('hold cannot be a batch line', async (t) => {
  const dir = t.testdir({'s.txt': `hold --socket ${'x'}\n`})
  const run = await runCli(['batch', `${dir}/s.txt`], {state: `${dir}/emu.json`})
  t.equal(run.code, 2)
  t.match(run.stderr, /s\.txt:1: hold: cannot run inside batch or the REPL/)
})
