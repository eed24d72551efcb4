// Start-up is most of what a one-shot command costs, so a plain run must load only the fast-path
// bundle and the invoked command's code: no oclif, no other command, and cli-table3, koffi and
// inquirer only where they are used. The process runs with a module hook that records every
// module it loads; esbuild's metafile maps the loaded chunks back to their sources.
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import {fileURLToPath} from 'node:url'

import t from 'tap'

import {COMMANDS} from '../../src/cli/registry.js'
import {BIN} from '../fixtures/cli.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const TRACE = fileURLToPath(new URL('../fixtures/robustness/trace-loads.mjs', import.meta.url))

interface Meta {
  inputs: Record<string, {imports: Array<{path: string; kind: string; external?: boolean}>}>
  outputs: Record<string, {entryPoint?: string; inputs: Record<string, unknown>}>
}

const meta: Meta = JSON.parse(fs.readFileSync(`${root}dist/fast/meta.json`, 'utf8'))

/** Sources reachable from `entries` through static imports only. */
function staticClosure(entries: string[]): Set<string> {
  const seen = new Set<string>()
  const stack = [...entries]
  while (stack.length > 0) {
    const path = stack.pop()!
    if (seen.has(path)) continue
    seen.add(path)
    for (const edge of meta.inputs[path]?.imports ?? []) {
      if (!edge.external && edge.kind === 'import-statement') stack.push(edge.path)
    }
  }

  return seen
}

function loads(argv: string[], dir: string): string[] {
  const file = `${dir}/loads-${argv.join('_').replace(/[^\w-]/g, '')}.txt`
  // Through env -u: tap's hooks would otherwise load into the child and show in the trace.
  const clean = ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE']
  const run = spawnSync('env', [...clean, process.execPath, '--import', TRACE, BIN, ...argv], {
    env: {...process.env, VHOST_IOTLB_STATE: `${dir}/emu.json`, VHOST_IOTLB_TRACE_LOADS: file, NO_COLOR: '1'},
    encoding: 'utf8',
  })
  if (run.status !== 0) throw new Error(`${argv.join(' ')} exited ${run.status}: ${run.stderr}`)
  return fs.readFileSync(file, 'utf8').trim().split('\n')
}

/** The sources of the bundle's chunks among `urls`. */
function bundledSources(urls: string[]): Set<string> {
  const sources = new Set<string>()
  for (const url of urls) {
    if (!url.startsWith('file:')) continue
    const output = meta.outputs[fileURLToPath(url).slice(root.length)]
    for (const input of Object.keys(output?.inputs ?? {})) sources.add(input)
  }

  return sources
}

const UPDATE = ['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f0000001000']

t.test('a plain run loads the bundle and only the invoked command', async (t) => {
  const dir = t.testdir()
  for (const [id, argv] of [
    ['update', [...UPDATE, '--json']],
    ['dump', ['dump', '--json']],
    ['translate', ['translate', '0x1000', '--json']],
  ] as const) {
    const urls = loads([...argv], dir)
    const files = urls.filter((url) => url.startsWith('file:')).map((url) => fileURLToPath(url).slice(root.length))
    t.same(
      files.filter((file) => !file.startsWith('dist/fast/')),
      ['bin/run.js'],
      `${id}: nothing outside the bundle (no oclif, no dependency, no dist/cli)`,
    )
    const allowed = staticClosure(['src/cli/main.ts', `src/cli/specs/${id}.ts`])
    const extra = [...bundledSources(urls)].filter((source) => !allowed.has(source))
    t.same(extra, [], `${id}: only main's and ${id}'s own code`)
    t.notOk(urls.includes('node:readline'), `${id}: no readline`)
  }
})

t.test('cli-table3 loads only to draw a table; oclif only for help', async (t) => {
  const dir = t.testdir()
  loads(UPDATE, dir) // a table is drawn only when some slot has been written
  t.ok(loads(['dump'], dir).some((url) => url.includes('/node_modules/cli-table3/')), 'dump (text) draws with cli-table3')
  t.notOk(loads(['dump', '--json'], dir).some((url) => url.includes('/node_modules/cli-table3/')), 'dump --json does not')
  const help = loads(['dump', '--help'], dir)
  t.ok(help.some((url) => url.includes('/node_modules/@oclif/core/')), 'help is oclif')
})

t.test('every command is its own chunk', async (t) => {
  const entries = Object.values(meta.outputs)
    .map((output) => output.entryPoint)
    .filter((entry): entry is string => entry?.startsWith('src/cli/specs/') ?? false)
  t.same(entries.sort(), Object.keys(COMMANDS).map((id) => `src/cli/specs/${id}.ts`).sort())
})
