// Tab completion and help, both built from the command declarations.
import t from 'tap'

import {COMMANDS, loadCommand} from '../../src/cli/registry.js'
import type {CommandSpec} from '../../src/cli/spec.js'
import {makeCompleter} from '../../src/repl/complete.js'
import {helpCommand, helpIndex, usageLine} from '../../src/repl/help.js'

const specs: CommandSpec[] = await Promise.all(Object.keys(COMMANDS).map((id) => loadCommand(id)))
const complete = makeCompleter(specs)

t.test('command names, and the shell words, at the start of a line', async (t) => {
  t.same(complete('upd'), [['update '], 'upd'])
  t.same(complete('set-'), [['set-fd', 'set-request-entry'], 'set-'])
  t.same(complete('he'), [['help '], 'he'])
  t.same(complete('ex'), [['exercise', 'exit'], 'ex'])
  t.same(complete('exi'), [['exit '], 'exi'])
  t.same(complete('zzz'), [[], 'zzz'])
  const all = complete('')[0]
  for (const id of ['dump', 'update', 'translate', 'help', 'exit']) t.ok(all.includes(id), id)
  t.notOk(all.includes('batch'), 'batch cannot run in the REPL')
  t.notOk(all.includes('repl'))
})

t.test('flag names, leaving out the ones given', async (t) => {
  t.same(complete('update --io'), [['--iova '], '--io'])
  t.same(complete('update --iova 0x1000 --'), [['--size', '--uaddr', '--perm', '--invalid', '--type', '--unsafe-uaddr', '--device', '--json'], '--'])
  t.same(complete('dump --a'), [['--all '], '--a'])
  t.same(complete('dump -'), [['--all', '--slot', '--device', '--json'], '-'])
  t.same(complete('dump '), [['--all', '--slot', '--device', '--json'], ''])
  t.same(complete('dump --bogus'), [[], '--bogus'])
  t.same(complete('translate 0x10'), [[], '0x10'], 'a positional is not completed')
  t.same(complete('frobnicate --'), [[], '--'])
})

t.test('perm, type and model values, after the flag or after =', async (t) => {
  t.same(complete('update --perm r'), [['ro', 'r', 'read', 'rw'], 'r'])
  t.same(complete('update --perm wr'), [['write '], 'wr'])
  t.same(complete('update --type '), [['update', 'invalidate', 'miss'], ''])
  t.same(complete('reset --model f'), [['fixed '], 'f'])
  t.same(complete('reset --model=r'), [['--model=rfc '], '--model=r'])
  t.same(complete('update --iova '), [[], ''], 'a number has nothing to offer')
  t.same(complete('dump -d e'), [['emu', 'emu:'], 'e'])
})

t.test('help COMMAND completes command names only', async (t) => {
  t.same(complete('help tr'), [['translate '], 'tr'])
  t.same(complete('help ex'), [['exercise '], 'ex'], 'exercise, but not the shell word exit')
  t.same(complete('help zz'), [[], 'zz'])
  t.same(complete('help dump '), [[], ''])
})

t.test('quoted and commented words are left alone', async (t) => {
  t.same(complete("update --perm 'r"), [[], ''])
  t.same(complete('update --perm "r'), [[], ''])
  t.same(complete('update --perm r\\w'), [[], ''], 'escaped text is not what readline would replace')
})

t.test('help lists every runnable command; help CMD shows usage, flags, examples', async (t) => {
  const index = helpIndex(specs).join('\n')
  for (const spec of specs) {
    if (spec.id === 'batch' || spec.id === 'repl') t.notMatch(index, new RegExp(`^  ${spec.id} `, 'm'))
    else t.match(index, `  ${spec.id}`)
  }

  const update = await loadCommand('update')
  t.equal(usageLine(update), 'update --iova ADDR --size SIZE [--uaddr ADDR] [--perm PERM] [--invalid] [--type TYPE] [--unsafe-uaddr] [-d, --device SPEC] [--json]')
  const text = helpCommand(update).join('\n')
  t.match(text, /^update: VHOST_UPDATE_IOTLB type UPDATE/)
  t.match(text, /--perm PERM +access: .*\(default rw; one of none, ro, r, read/)
  t.match(text, /--iova ADDR +I\/O virtual address \(u64\) \(required\)/)
  t.match(text, /\nexamples:\n {2}update --iova 0x1000 --size 4k/)
  t.match(helpCommand(await loadCommand('translate')).join('\n'), /IOVA +I\/O virtual address/)
  t.notMatch(helpCommand(await loadCommand('dump')).join('\n'), /\| jq/, 'shell pipelines are not REPL lines')
})
