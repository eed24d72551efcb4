// History in a file: where it lives, what is kept, and that it survives a restart.
import * as fs from 'node:fs'

import t from 'tap'

import {HISTORY_SIZE, History, historyPath} from '../../src/repl/history.js'

t.test('$VHOST_IOTLB_HISTORY, else beside the default state file', async (t) => {
  t.equal(historyPath({VHOST_IOTLB_HISTORY: '/h/hist', VHOST_IOTLB_STATE: '/s/emu.json'}), '/h/hist')
  t.equal(historyPath({VHOST_IOTLB_STATE: '/s/emu.json'}), '/s/history')
  t.equal(historyPath({XDG_STATE_HOME: '/x', HOME: '/home/u'}), '/x/vhost-iotlb/history')
  t.equal(historyPath({HOME: '/home/u'}), '/home/u/.local/state/vhost-iotlb/history')
})

t.test('survives a restart, newest first, without blanks or repeats', async (t) => {
  const path = `${t.testdir()}/sub/history`
  const problems: string[] = []
  const first = History.load(path, (m) => problems.push(m))
  t.same(first.entries, [], 'a missing file is an empty history')
  for (const line of ['set-fd 5', 'dump', 'dump', '   ', 'translate 0x1000']) first.add(line)
  t.equal(fs.readFileSync(path, 'utf8'), 'set-fd 5\ndump\ntranslate 0x1000\n')
  t.equal(fs.statSync(path).mode & 0o777, 0o600, 'private: it may hold addresses')

  const second = History.load(path, (m) => problems.push(m))
  t.same(second.entries, ['translate 0x1000', 'dump', 'set-fd 5'])
  second.add('translate 0x1000')
  second.add('dump --all')
  t.same(History.load(path, () => {}).entries.slice(0, 2), ['dump --all', 'translate 0x1000'])
  t.same(problems, [])
})

t.test('trimmed to the newest entries when it grows too long', async (t) => {
  const path = `${t.testdir()}/history`
  const lines = Array.from({length: 2 * HISTORY_SIZE + 5}, (_, i) => `set-fd ${i}`)
  fs.writeFileSync(path, `${lines.join('\n')}\n`)
  const history = History.load(path, () => {})
  t.equal(history.entries.length, HISTORY_SIZE)
  t.equal(history.entries[0], `set-fd ${lines.length - 1}`)
  t.equal(fs.readFileSync(path, 'utf8').split('\n').length - 1, HISTORY_SIZE)
})

t.test('an unusable history file is reported, never fatal', async (t) => {
  const dir = t.testdir({'history': {}})
  const problems: string[] = []
  const history = History.load(`${dir}/history`, (m) => problems.push(m))
  history.add('dump')
  t.equal(problems.length, 2)
  t.match(problems[0], /^history .*history: EISDIR/)
})
