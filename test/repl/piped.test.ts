// `vhost-iotlb repl` with stdin from a pipe: lines run as batch runs them, printed as one-shot
// commands print, never a prompt, every line accounted for.
import {spawn} from 'node:child_process'
import {setTimeout as sleep} from 'node:timers/promises'

import t from 'tap'

import {BIN, runCli} from '../fixtures/cli.js'

t.test('runs each line and prints it as the one-shot command would', async (t) => {
  const state = `${t.testdir()}/emu.json`
  const input = "# a comment\nset-fd 5\n\nset-request-entry '0x7f00_0000_0000'\nset-fd 6 --json\ntranslate 0x5000\n"
  const run = await runCli(['repl'], {state, input})
  t.equal(run.code, 0, 'a miss is not a failure')
  t.equal(
    run.stdout,
    [
      'iotlb fd 5',
      'request entry 0x7f0000000000',
      '{\n  "iotlb_fd": 6\n}',
      'miss at 0x5000: request written to the request entry, eventfd signalled',
      '  request iova 0x5000 size 0x0 uaddr 0x0 perm none type miss invalid',
      '  bytes   0050000000000000 0000000000000000 0000000000000000 0001000000000000',
      '',
    ].join('\n'),
    'no prompt for the miss: stdin is not a terminal',
  )
  t.equal(run.stderr, '')
  const dump = JSON.parse((await runCli(['dump', '--json'], {state})).stdout)
  t.match(dump, {iotlb_fd: 6, waiting: true, pending: {iova: '0x5000'}}, 'the miss stays pending')
})

t.test('the first failure stops it with <stdin>:LINE and its exit code', async (t) => {
  const state = `${t.testdir()}/emu.json`
  const run = await runCli(['repl'], {state, input: 'set-fd 5\nupdate --iova 0x1000 --size 4k\nset-fd 6\n'})
  t.equal(run.code, 2)
  t.equal(run.stdout, 'iotlb fd 5\n')
  t.equal(run.stderr, '<stdin>:2: update: the emulated device needs --uaddr ADDR, the user address the entry maps to\n', 'never prompts for --uaddr')
  t.equal(JSON.parse((await runCli(['dump', '--json'], {state})).stdout).iotlb_fd, 5)

  const forced = await runCli(['repl', '--force'], {state, input: 'set-fd 7\nbogus\nset-fd 8\n'})
  t.equal(forced.code, 1)
  t.equal(forced.stdout, 'iotlb fd 7\niotlb fd 8\n')
  t.equal(forced.stderr, '<stdin>:2: unknown command "bogus"; see: vhost-iotlb --help\n')
})

t.test('help, CMD --help and exit are the shell\'s own', async (t) => {
  const state = `${t.testdir()}/emu.json`
  const run = await runCli(['repl'], {state, input: 'help\nhelp dump\nset-fd --help\nhelp nothing\nexit\nset-fd 9\n'})
  t.equal(run.code, 0)
  t.match(run.stdout, /^commands \(help COMMAND for its flags\):\n/)
  t.match(run.stdout, /\ndump: Show the 1024-slot IOTLB array/)
  t.match(run.stdout, /\nset-fd: VHOST_SET_IOTLB_FD/)
  t.equal(run.stderr, 'help: unknown command "nothing"\n')
  t.notMatch(run.stdout, /iotlb fd 9/, 'nothing runs after exit')
})

t.test('a nested batch or repl is refused', async (t) => {
  const run = await runCli(['repl'], {state: `${t.testdir()}/emu.json`, input: 'repl\n'})
  t.equal(run.code, 2)
  t.equal(run.stderr, '<stdin>:1: repl: cannot run inside batch or the REPL; run its lines here instead\n')
})

t.test('loses no line, however the pipe splits them', async (t) => {
  const state = `${t.testdir()}/emu.json`
  const child = spawn(process.execPath, [BIN, 'repl', '--force'], {env: {...process.env, VHOST_IOTLB_STATE: state, NO_COLOR: '1'}})
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  const text = Array.from({length: 3000}, (_, i) => `set-fd ${i}`).join('\n')
  // Odd-sized pieces with pauses: lines arrive cut in two while earlier ones still run.
  for (let at = 0; at < text.length; at += 997) {
    child.stdin.write(text.slice(at, at + 997))
    if (at % 7 === 0) await sleep(5)
  }

  child.stdin.end('\n')
  t.equal(await exited, 0)
  const outputs = stdout.split('\n').filter(Boolean)
  t.equal(outputs.length, 3000)
  t.equal(outputs.at(-1), 'iotlb fd 2999')
})
