// The fast path (bin/run.js -> the esbuild bundle, no oclif) and the oclif path
// (VHOST_IOTLB_OCLIF=1 -> oclif -> dist/commands -> dist/cli) must be indistinguishable: for
// every case the same stdout, stderr and exit code, byte for byte, and the same state file after.
import * as fs from 'node:fs'

import t from 'tap'

import {type Run, runCli} from '../fixtures/cli.js'

type Setup = 'none' | 'mapped' | 'waiting' | 'corrupt'

interface Case {
  argv: string[]
  setup?: Setup
  env?: NodeJS.ProcessEnv
  /** Standard input (batch -, a piped REPL). */
  input?: string
  /** The exit code both paths must give, so a case cannot pass by failing alike. */
  code: number
}

const MAP = ['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f0000001000']
const U64_OVER = '18446744073709551616'

const CASES: Case[] = [
  // successes, text and JSON
  {argv: [...MAP, '--perm', 'rw'], code: 0},
  {argv: [...MAP, '--json'], code: 0},
  {argv: ['update', '--iova=0x3000', '--size=8k', '--uaddr=0x7f00_0000_3000', '-d', 'emu', '--perm', 'read'], code: 0},
  {argv: ['update', '--iova', '0x1234', '--size', '1', '--uaddr', '1', '--json'], code: 0},
  {argv: ['update', '--iova', '0x5000', '--size', '4k', '--uaddr', '0x7f0000005000'], setup: 'waiting', code: 0},
  {argv: ['invalidate', '--iova', '0x1000'], setup: 'mapped', code: 0},
  {argv: ['invalidate', '--iova', '0x9000', '--json'], setup: 'mapped', code: 0},
  {argv: ['translate', '0x1010', '--len', '16'], setup: 'mapped', code: 0},
  {argv: ['translate', '0x1010', '--len', '4k', '--json'], setup: 'mapped', code: 0},
  {argv: ['dump'], setup: 'mapped', code: 0},
  {argv: ['dump', '--json'], setup: 'waiting', code: 0},
  {argv: ['dump', '--all'], setup: 'mapped', code: 0},
  {argv: ['dump', '-a', '--json'], code: 0},
  {argv: ['dump', '--slot', '1', '--json'], setup: 'mapped', code: 0},
  {argv: ['set-fd', '-1'], setup: 'mapped', code: 0},
  {argv: ['set-fd', '7', '--json'], code: 0},
  {argv: ['set-request-entry', '0x7fff_ffff_efe0', '--json'], code: 0},
  {argv: ['reset', '--model', 'fixed', '--json'], setup: 'mapped', code: 0},
  {argv: ['reset'], setup: 'mapped', code: 0},
  {argv: ['dump', '--json'], env: {VHOST_IOTLB_DEVICE: 'emu'}, setup: 'mapped', code: 0},
  // a miss (exit 3) and device refusals (exit 1)
  {argv: ['translate', '0x5000'], setup: 'mapped', code: 3},
  {argv: ['translate', '0x5000', '--json'], setup: 'mapped', code: 3},
  {argv: ['translate', '0x5000', '--json'], code: 1},
  {argv: ['translate', '0x6000'], setup: 'waiting', code: 1},
  {argv: ['set-request-entry', '0x7fffffffefe1'], code: 1},
  {argv: ['set-request-entry', '0x7fffffffefe1', '--json'], code: 1},
  {argv: [...MAP, '--type', 'miss', '--json'], code: 1},
  {argv: [...MAP, '--type', '0x7'], code: 1},
  {argv: ['dump', '--json'], setup: 'corrupt', code: 1},
  {argv: [...MAP], setup: 'corrupt', code: 1},
  // usage errors (exit 2)
  {argv: ['update', '--iova', '0x1000'], code: 2},
  {argv: ['update', '--iova', '0x1000', '--json'], code: 2},
  {argv: ['update', '--iova', U64_OVER, '--size', '1', '--uaddr', '1', '--json'], code: 2},
  {argv: ['update', '--iova', '-1', '--size', '1', '--uaddr', '1'], code: 2},
  {argv: ['update', '--iova', '0x', '--size', '1', '--uaddr', '1'], code: 2},
  {argv: ['update', '--iova', '1_', '--size', '1', '--uaddr', '1', '--json'], code: 2},
  {argv: [...MAP, '--perm', 'x'], code: 2},
  {argv: [...MAP, '--iova', '0x2000'], code: 2},
  {argv: ['translate', '0x1000', '--len', '0x100000000'], code: 2},
  {argv: ['translate'], code: 2},
  {argv: ['dump', '--bogus'], code: 2},
  {argv: ['dump', '--alll', '--json'], code: 2},
  {argv: ['dump', 'extra'], code: 2},
  {argv: ['dump', '--all=yes'], code: 2},
  {argv: ['dump', '--slot', '1024'], code: 2},
  {argv: ['dump', '--', '--json'], code: 2},
  {argv: ['dump', '-d', 'bogus', '--json'], code: 2},
  {argv: ['dump'], env: {VHOST_IOTLB_DEVICE: 'nonsense'}, code: 2},
  {argv: ['set-fd', 'auto'], code: 2},
  {argv: ['set-fd', '-2', '--json'], code: 2},
  {argv: ['reset', '--model', 'bogus'], code: 2},
  {argv: ['nosuch'], code: 2},
  {argv: ['nosuch', '--json'], code: 2},
  {argv: ['update', '--iova', '0xé', '--size', '1', '--uaddr', '\u{1F600}'], code: 2},
  // scripts on stdin, and probe
  {argv: ['batch', '-', '--json'], input: `${MAP.join(' ')}\ntranslate 0x1010 --len 16\ndump --slot 1\n`, code: 0},
  {argv: ['batch', '-'], input: 'set-fd 5\n# a comment\nbogus --json\nset-fd 6\n', code: 2},
  {argv: ['batch', '-', '--force', '--json'], input: 'set-fd 5\nset-request-entry 0x7fffffffefe1\nset-fd 6\n', code: 1},
  {argv: ['repl'], input: 'set-fd 5\ndump --slot 1 --json\nupdate --iova 1\n', setup: 'mapped', code: 2},
  {argv: ['probe', '--json'], setup: 'mapped', code: 0},
]

/** Builds the state a case starts from, once per kind, with the fast path. */
async function templates(dir: string): Promise<Record<Setup, string | undefined>> {
  const mapped = `${dir}/mapped.json`
  for (const argv of [['set-fd', '5'], ['set-request-entry', '0x7f0000000000'], MAP, ['update', '--iova', '0x2000', '--size', '4k', '--uaddr', '0x7f0000002000', '--invalid']]) {
    const run = await runCli(argv, {state: mapped})
    if (run.code !== 0) throw new Error(`setup ${argv.join(' ')}: ${run.stderr}`)
  }

  const waiting = `${dir}/waiting.json`
  fs.copyFileSync(mapped, waiting)
  const miss = await runCli(['translate', '0x5000'], {state: waiting})
  if (miss.code !== 3) throw new Error(`setup miss: ${miss.stderr}`)
  const corrupt = `${dir}/corrupt.json`
  fs.writeFileSync(corrupt, '{"format": "vhost-iotlb/emulated-device", "version": 1, "mod')
  return {none: undefined, mapped, waiting, corrupt}
}

async function runIn(dir: string, c: Case, template: string | undefined, oclif: boolean): Promise<Run & {state: string | null}> {
  fs.mkdirSync(dir, {recursive: true})
  const state = `${dir}/emu.json`
  if (template) fs.copyFileSync(template, state)
  const env = {...c.env, VHOST_IOTLB_OCLIF: oclif ? '1' : undefined}
  const run = await runCli(c.argv, {state, env, input: c.input})
  // Each path has its own directory: messages that name the state file differ only by it.
  const same = (text: string) => text.replaceAll(dir, '<dir>')
  return {code: run.code, stdout: same(run.stdout), stderr: same(run.stderr), state: fs.existsSync(state) ? fs.readFileSync(state, 'utf8') : null}
}

t.test('fast path and oclif path give identical output, exit codes and state', async (t) => {
  const dir = t.testdir()
  const from = await templates(dir)
  // Two cases at a time: each spawns an oclif process, the slow one.
  const queue = CASES.map((c, index) => ({c, index}))
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const {c, index} = next
      const template = from[c.setup ?? 'none']
      const [fast, oclif] = await Promise.all([
        runIn(`${dir}/${index}-fast`, c, template, false),
        runIn(`${dir}/${index}-oclif`, c, template, true),
      ])
      const name = `${c.env ? `${JSON.stringify(c.env)} ` : ''}${c.argv.join(' ')}${c.setup ? ` [${c.setup}]` : ''}`
      t.equal(fast.code, c.code, `${name}: exit code`)
      t.equal(oclif.code, fast.code, `${name}: same exit code`)
      t.equal(oclif.stdout, fast.stdout, `${name}: same stdout`)
      t.equal(oclif.stderr, fast.stderr, `${name}: same stderr`)
      t.equal(oclif.state, fast.state, `${name}: same state file after`)
      t.notMatch(fast.stdout + fast.stderr, /\n\s+at .+:\d+:\d+\)?/, `${name}: no stack trace`)
    }
  }

  await Promise.all([worker(), worker()])
})

t.test('help and --version go to oclif on both paths', async (t) => {
  for (const argv of [['dump', '--help'], ['--version'], ['help', 'update']]) {
    const [fast, oclif] = await Promise.all([runCli(argv), runCli(argv, {env: {VHOST_IOTLB_OCLIF: '1'}})])
    t.equal(fast.code, 0, `${argv.join(' ')}: exit 0`)
    t.equal(oclif.stdout, fast.stdout, `${argv.join(' ')}: same stdout`)
    t.equal(oclif.stderr, fast.stderr, `${argv.join(' ')}: same stderr`)
  }
})
