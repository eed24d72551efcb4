// The REPL's Interaction driven through in-memory streams: a miss answered by hand (with a
// validation error on the way), declined, cancelled with Ctrl-C; missing update flags asked for.
import {PassThrough} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {stripVTControlCharacters} from 'node:util'

import t from 'tap'

import {dispatch} from '../../src/cli/dispatch.js'
import {Session} from '../../src/cli/session.js'
import {terminalInteraction} from '../../src/repl/prompts.js'
import type {Terminal} from '../../src/repl/terminal.js'

/** A screen the prompts draw on, and a keyboard to answer them. */
function keyboard() {
  const input = new PassThrough()
  const output = new PassThrough()
  let screen = ''
  let seen = 0
  output.setEncoding('utf8').on('data', (chunk: string) => (screen += stripVTControlCharacters(chunk)))
  // Each prompt ends the stream it was piped to when it is done, except process.stdout; be stdout.
  Object.assign(output, {end: () => output})
  return {
    input,
    output,
    /** Waits for `text` to be drawn after what earlier waits matched. */
    async waitFor(text: string): Promise<void> {
      for (let waited = 0; waited < 5000; waited += 10) {
        const at = screen.indexOf(text, seen)
        if (at !== -1) {
          seen = at + text.length
          return
        }

        await sleep(10)
      }

      throw new Error(`never drawn: ${JSON.stringify(text)}; screen: ${JSON.stringify(screen.slice(-300))}`)
    },
    async type(text: string): Promise<void> {
      input.write(text)
      await sleep(20)
    },
  }
}

async function setup(t: {testdir(): string}, kind = 'emulated') {
  const keys = keyboard()
  let out = ''
  const io = {out: (text: string) => (out += text), err: (text: string) => (out += text), color: false}
  // The gate is the terminal's business (tmux test); here a prompt simply runs.
  const terminal = {aside: <T>(prompt: () => Promise<T>) => prompt()} as unknown as Terminal
  const state = `${t.testdir()}/emu.json`
  const interaction = terminalInteraction({terminal: () => terminal, io, session: () => session, deviceKind: () => kind, streams: keys})
  const session: Session = new Session({io, device: `emu:${state}`, interaction, env: {}})
  await dispatch(['set-fd', '5'], session)
  await dispatch(['set-request-entry', '0x7f0000000000'], session)
  out = ''
  return {keys, session, output: () => out}
}

t.test('a miss answered by hand completes the request and the walk goes on', async (t) => {
  const {keys, session, output} = await setup(t)
  const running = dispatch(['translate', '0x5010', '--len', '0x10'], session)
  await keys.waitFor('Answer the miss at 0x5000')
  await keys.type('y\r')
  await keys.waitFor('userspace_addr for iova 0x5000')
  await keys.type('zz\r')
  await keys.waitFor('userspace_addr: "zz" is not a number')
  await keys.type('\x7f\x7f0x7f00_0000_5000\r')
  await keys.waitFor('size')
  await keys.type('\r')
  await keys.waitFor('perm')
  await keys.type('\r')
  const outcome = await running
  t.equal(outcome.exitCode, 0)
  t.match(outcome.result?.json, {status: 'ok', iov: [{iova: '0x5010', userspace_addr: '0x7f0000005010', len: '0x10'}]})
  t.match(output(), /miss at 0x5000: the device wrote a request/)
  t.match(output(), /\nupdate --iova 0x5000 --size 4k --uaddr 0x7f00_0000_5000 --perm rw\nslot 5: iova 0x5000 size 0x1000 uaddr 0x7f0000005000 perm rw type update valid\ncompleted the pending miss for 0x5000\n$/)
  const dump = await dispatch(['dump', '--json'], session)
  t.match(dump.result?.json, {waiting: false, entries: [{slot: 5, iova: '0x5000', valid: true}]})
  await session.close()
})

t.test('declining, or Ctrl-C in the prompt, leaves the request pending', async (t) => {
  for (const keysToSend of ['n\r', '\x03']) {
    const {keys, session, output} = await setup(t)
    const running = dispatch(['translate', '0x6000'], session)
    await keys.waitFor('Answer the miss')
    await keys.type(keysToSend)
    const outcome = await running
    t.equal(outcome.exitCode, 3, JSON.stringify(keysToSend))
    t.match(output(), /the request for 0x6000 stays pending; a later update --iova 0x6000 completes it/)
    const dump = await dispatch(['dump', '--json'], session)
    t.match(dump.result?.json, {waiting: true, pending: {iova: '0x6000', type: 'miss'}})
    await session.close()
  }
})

t.test('update asks for missing flags, and for --uaddr on an emulated device', async (t) => {
  const {keys, session} = await setup(t)
  const running = dispatch(['update', '--iova', '0x1000', '--perm', 'ro'], session)
  await keys.waitFor('update --size SIZE')
  await keys.type('8k\r')
  await keys.waitFor('update --uaddr ADDR')
  await keys.type('0x7f0000001000\r')
  const outcome = await running
  t.equal(outcome.exitCode, 0)
  t.match(outcome.result?.json, {slot: 1, entry: {size: '0x2000', userspace_addr: '0x7f0000001000', perm: 'ro'}})

  const onlyUaddr = dispatch(['update', '--iova', '0x3000', '--size', '4k'], session)
  await keys.waitFor('update --uaddr ADDR')
  await keys.type('\x03')
  const cancelled = await onlyUaddr
  t.equal(cancelled.exitCode, 2, 'Ctrl-C cancels the prompt; the command reports what is missing')
  t.equal(cancelled.error?.message, 'update: missing --uaddr ADDR; see: vhost-iotlb update --help')

  const json = await dispatch(['update', '--iova', '0x1000', '--json'], session)
  t.equal(json.error?.message, 'update: missing --size SIZE; see: vhost-iotlb update --help', 'a --json line is never prompted')
  await session.close()
})

t.test('a real device defaults --uaddr to auto, so it is not asked for', async (t) => {
  const interaction = terminalInteraction({
    terminal: () => undefined as unknown as Terminal,
    io: {out() {}, err() {}, color: false},
    session: () => undefined as unknown as Session,
    deviceKind: () => 'kernel',
  })
  t.same(interaction.askAlso?.('update'), [])
  t.same(interaction.askAlso?.('dump'), [])
})
