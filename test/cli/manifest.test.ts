// oclif uses a stale manifest silently: new commands and flags would be invisible. Keep the
// committed manifest, src/commands and the dispatcher's registry describing the same commands.
import * as fs from 'node:fs'

import t from 'tap'

import {COMMANDS, loadCommand} from '../../src/cli/registry.js'

const root = new URL('../../', import.meta.url)
const manifest = JSON.parse(fs.readFileSync(new URL('oclif.manifest.json', root), 'utf8'))
const pkg = JSON.parse(fs.readFileSync(new URL('package.json', root), 'utf8'))

t.test('the manifest is for this version', async (t) => {
  t.equal(manifest.version, pkg.version)
})

t.test('manifest, src/commands and the registry list the same commands', async (t) => {
  const files = fs
    .readdirSync(new URL('src/commands/', root))
    .filter((name) => name.endsWith('.ts'))
    .map((name) => name.slice(0, -3))
    .sort()
  t.same(Object.keys(manifest.commands).sort(), files)
  t.same(Object.keys(COMMANDS).sort(), files)
})

t.test('each command has the flags and args of its declaration', async (t) => {
  for (const id of Object.keys(COMMANDS)) {
    const spec = await loadCommand(id)
    const entry = manifest.commands[id]
    t.same(Object.keys(entry.flags).sort(), Object.keys(spec.flags).sort(), `${id} flags`)
    t.same(Object.keys(entry.args), spec.args.map((arg: {name: string}) => arg.name), `${id} args`)
    t.equal(entry.summary, spec.summary, `${id} summary`)
    for (const [name, flag] of Object.entries<any>(spec.flags)) {
      t.equal(entry.flags[name].type, flag.kind === 'boolean' ? 'boolean' : 'option', `${id} --${name} kind`)
      t.equal(entry.flags[name].char, flag.char, `${id} --${name} char`)
      t.equal(entry.flags[name].default, flag.default, `${id} --${name} default`)
    }
  }
})
