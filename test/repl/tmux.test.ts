// The REPL at a real terminal (tmux): Tab completion, a miss answered through the prompt with
// the dump showing the new slot, Ctrl-C, and history recalled after a restart.
import * as fs from 'node:fs'

import t from 'tap'

import {BIN} from '../fixtures/cli.js'
import {TMUX_MISSING, Tmux} from '../fixtures/repl/tmux.js'

// capture-pane drops trailing blanks, so the prompt's closing space is never seen at the end of a line.
const PROMPT = 'vhost-iotlb emu rfc>'

t.test('a person at a terminal', {skip: TMUX_MISSING ? 'tmux is not installed' : false}, async (t) => {
  const dir = t.testdir()
  const env = {VHOST_IOTLB_STATE: `${dir}/emu.json`, VHOST_IOTLB_HISTORY: `${dir}/history`, NO_COLOR: '1', TERM: 'xterm'}
  const term = new Tmux()
  t.teardown(() => term.kill())

  term.start([process.execPath, BIN, 'repl'], env)
  await term.waitFor(PROMPT)
  await term.type('set-fd 5')
  await term.keys('Enter')
  await term.type('set-request-entry 0x7f0000000000')
  await term.keys('Enter')
  await term.waitFor('request entry 0x7f0000000000')

  await t.test('Tab completes commands, flags and values', async (t) => {
    await term.type('upd')
    await term.keys('Tab')
    t.equal(await term.line(`${PROMPT} update`), `${PROMPT} update`)
    await term.type('--io')
    await term.keys('Tab')
    t.equal(await term.line(`${PROMPT} update --iova`), `${PROMPT} update --iova`)
    await term.keys('C-u')
    await term.type('reset --model f')
    await term.keys('Tab')
    t.equal(await term.line(`${PROMPT} reset --model fixed`), `${PROMPT} reset --model fixed`)
    await term.keys('C-u')
  })

  await t.test('Ctrl-C clears the line and the shell stays', async (t) => {
    await term.type('set-fd 99')
    await term.keys('C-c')
    t.equal(await term.line(PROMPT), PROMPT)
    t.notMatch(term.screen(), /iotlb fd 99/, 'the line did not run')
  })

  await t.test('a miss answered through the prompt, and the dump shows the new slot', async (t) => {
    await term.type('translate 0x5010 --len 0x10')
    await term.keys('Enter')
    await term.waitFor('Answer the miss at 0x5000 as userspace would')
    await term.keys('y', 'Enter')
    await term.waitFor('userspace_addr for iova 0x5000')
    await term.type('0x7f0000005000')
    await term.keys('Enter')
    await term.waitFor('? size')
    await term.keys('Enter')
    await term.waitFor('? perm')
    await term.keys('Enter')
    const screen = await term.waitFor('iov[0] iova 0x5010 -> uaddr 0x7f0000005010 len 0x10')
    t.match(screen, 'update --iova 0x5000 --size 4k --uaddr 0x7f0000005000 --perm rw\nslot 5: iova 0x5000 size 0x1000 uaddr 0x7f0000005000 perm rw type update valid\ncompleted the pending miss for 0x5000\n')
    await term.waitFor(PROMPT, 4)
    t.equal(await term.line(PROMPT), PROMPT, 'the shell has its terminal back')

    await term.type('dump')
    await term.keys('Enter')
    const dump = await term.waitFor('1 of 1024 slots written')
    t.match(dump, /│ 5 +│ 0x5000 │ 0x1000 │ 0x7f0000005000 │ rw +│ update │ yes +│/)
    t.match(dump, /pending: +iova 0x5000 size 0x1000 uaddr 0x7f0000005000 perm rw type update valid\n/)
  })

  await t.test('exit leaves with status 0', async (t) => {
    await term.type('exit')
    await term.keys('Enter')
    t.match(await term.waitFor('[exit 0]'), '[exit 0]')
  })

  await t.test('history is recalled after a restart', async (t) => {
    term.kill()
    const again = new Tmux()
    t.teardown(() => again.kill())
    again.start([process.execPath, BIN, 'repl'], env)
    await again.waitFor(PROMPT)
    await again.keys('Up')
    t.equal(await again.line(`${PROMPT} exit`), `${PROMPT} exit`)
    await again.keys('Up')
    t.equal(await again.line(`${PROMPT} dump`), `${PROMPT} dump`)
    await again.keys('Up')
    t.equal(await again.line(`${PROMPT} translate 0x5010 --len 0x10`), `${PROMPT} translate 0x5010 --len 0x10`)
    await again.keys('Enter')
    await again.waitFor('0x5010 len 0x10: 1 iov', 1)
    await again.keys('C-d')
    await again.waitFor('[exit 0]')
    t.equal(
      fs.readFileSync(env.VHOST_IOTLB_HISTORY, 'utf8'),
      'set-fd 5\nset-request-entry 0x7f0000000000\ntranslate 0x5010 --len 0x10\ndump\nexit\ntranslate 0x5010 --len 0x10\n',
    )
  })
})
