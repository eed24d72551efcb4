#!/usr/bin/env node
/**
 * `npm run bench`: the numbers behind docs/performance.md. Not part of `npm test`, and never an
 * assertion: the machines are noisy, so every figure is a median over runs interleaved with its
 * baseline, measured in the same run, and each ratio is the median of the per-round ratios.
 *
 *   start-up      `dump --json`, `update --json` (and, for reference, the oclif path and an empty
 *                 ES module) against `node -e 0`; stdout is a pipe, as in `$(vhost-iotlb ...)`
 *   batch         ops/s of `batch FILE --json` on a 200k-line mixed script, against a bare node
 *                 process that reads and splits the same file into lines and words
 *   dump --all    the 1024-row text table against `dump --all --json`
 *   translate     translate_iotlb() walks per second in the emulator core, against a bare
 *                 hash-and-compare lookup of the same IOVAs
 *
 * Options: --rounds N (start-up rounds, default 40), --json (rows as JSON, for tools).
 * Run `npm run build` first: this measures dist/ and bin/run.js as installed.
 */
import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const BIN = `${root}bin/run.js`
const node = process.execPath

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : args[i + 1]
}
const ROUNDS = Number(option('--rounds', process.env.BENCH_ROUNDS ?? 40))
const AS_JSON = args.includes('--json')

if (!fs.existsSync(`${root}dist/fast/main.js`)) {
  process.stderr.write('bench: dist/ is missing; run `npm run build` first\n')
  process.exit(2)
}

const work = fs.mkdtempSync(`${os.tmpdir()}/vhost-iotlb-bench-`)
process.on('exit', () => fs.rmSync(work, {recursive: true, force: true}))
const env = {...process.env, VHOST_IOTLB_STATE: `${work}/emu.json`, NO_COLOR: '1'}
delete env.VHOST_IOTLB_DEVICE
delete env.VHOST_IOTLB_OCLIF
delete env.NODE_OPTIONS

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Runs a command to completion, stdout drained through a pipe; resolves with wall ms. */
function timed(command, options = {}) {
  return new Promise((resolve, reject) => {
    const began = process.hrtime.bigint()
    const child = spawn(command[0], command.slice(1), {env: options.env ?? env, stdio: ['ignore', options.stdout ?? 'pipe', 'pipe']})
    let stderr = ''
    child.stdout?.resume()
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - began) / 1e6
      if (code !== 0 && !(options.okCodes ?? []).includes(code)) reject(new Error(`${command.join(' ')} exited ${code}: ${stderr}`))
      else resolve(ms)
    })
  })
}

/**
 * Runs every command once per round, rotating the order each round so that none always runs
 * first (or right after another), and returns each command's times by round.
 */
async function interleaved(commands, rounds, warmup = 2) {
  for (let i = 0; i < warmup; i++) for (const command of commands) await timed(command.argv, command)
  const times = commands.map(() => [])
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < commands.length; k++) {
      const j = (k + round) % commands.length
      times[j].push(await timed(commands[j].argv, commands[j]))
    }
  }

  return times
}

const rows = []
function row(name, value, unit, baselineName, baselineValue, ratio, note = '') {
  rows.push({name, value, unit, baseline: baselineName, baselineValue, ratio, note})
  if (!AS_JSON) process.stderr.write(`  done: ${name}\n`)
}

function fmt(value, unit) {
  if (unit === 'ms') return `${value.toFixed(1)} ms`
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M ${unit}`
  if (value >= 1e4) return `${(value / 1e3).toFixed(1)} k ${unit}`
  return `${value.toFixed(0)} ${unit}`
}

// ---- start-up --------------------------------------------------------------------------------

async function startup() {
  // A device with a few entries, so that dump has rows and update a file to rewrite.
  for (const line of [['set-fd', '5'], ['set-request-entry', '0x7f0000000000'], ['update', '--iova', '0x2000', '--size', '4k', '--uaddr', '0x7f0000002000']]) {
    await timed([node, BIN, ...line])
  }

  const empty = `${work}/empty.mjs`
  fs.writeFileSync(empty, '')
  const update = ['update', '--iova', '0x1000', '--size', '4k', '--uaddr', '0x7f0000001000', '--json']
  const commands = [
    {name: 'node -e 0', argv: [node, '-e', '0']},
    {name: 'start-up: dump --json', argv: [node, BIN, 'dump', '--json']},
    {name: 'start-up: update --json', argv: [node, BIN, ...update]},
    {name: 'reference: an empty ES module', argv: [node, empty]},
    {name: 'reference: dump --json via oclif', argv: [node, BIN, 'dump', '--json'], env: {...env, VHOST_IOTLB_OCLIF: '1'}},
  ]
  const times = await interleaved(commands, ROUNDS)
  const base = times[0]
  for (let j = 1; j < commands.length; j++) {
    const ratio = median(times[j].map((ms, round) => ms / base[round]))
    row(commands[j].name, median(times[j]), 'ms', 'node -e 0', median(base), ratio, `${ROUNDS} paired rounds`)
  }
}

// ---- batch -----------------------------------------------------------------------------------

const BATCH_LINES = 200_000

/** A mixed script in which every command succeeds: update, translate (a hit), dump --slot, invalidate, comments. */
function batchScript(path) {
  const lines = ['set-fd 5', 'set-request-entry 0x7f0000000000']
  let ops = 2
  for (let k = 0; lines.length < BATCH_LINES; k++) {
    const page = BigInt(k % 4096) << 12n
    const slot = (k % 4096) % 1024
    const uaddr = 0x7f00_0000_0000n + (BigInt(k) << 12n)
    const group = [
      `update --iova 0x${page.toString(16)} --size 4k --uaddr 0x${uaddr.toString(16)} --perm rw`,
      `translate 0x${(page + 0x10n).toString(16)} --len 16`,
      `dump --slot ${slot}`,
      `invalidate --iova 0x${page.toString(16)}`,
    ]
    if (k % 16 === 0) group.push(`# group ${k}`)
    for (const line of group) {
      if (lines.length === BATCH_LINES) break
      lines.push(line)
      if (!line.startsWith('#')) ops++
    }
  }

  fs.writeFileSync(path, `${lines.join('\n')}\n`)
  return ops
}

async function batch() {
  const script = `${work}/script.txt`
  const ops = batchScript(script)
  // The floor any script runner pays: start node, read the file, split it into lines and words.
  const reader = `${work}/split.mjs`
  fs.writeFileSync(
    reader,
    [
      "import * as fs from 'node:fs'",
      'let words = 0',
      "for (const line of fs.readFileSync(process.argv[2], 'utf8').split('\\n')) if (line !== '' && !line.startsWith('#')) words += line.split(' ').length",
      "if (words === 0) process.exit(1)",
    ].join('\n'),
  )
  const devnull = fs.openSync('/dev/null', 'w')
  const rounds = 3
  const stateOf = (round) => `${work}/batch-${round}.json`
  const times = {batch: [], split: []}
  for (let round = 0; round < rounds; round++) {
    fs.rmSync(stateOf(round), {force: true})
    const runBatch = () => timed([node, BIN, 'batch', script, '--json'], {env: {...env, VHOST_IOTLB_STATE: stateOf(round)}, stdout: devnull})
    const runSplit = () => timed([node, reader, script], {stdout: devnull})
    if (round % 2 === 0) {
      times.split.push(await runSplit())
      times.batch.push(await runBatch())
    } else {
      times.batch.push(await runBatch())
      times.split.push(await runSplit())
    }
  }

  fs.closeSync(devnull)
  const rate = (ms) => ops / (ms / 1000)
  const ratio = median(times.batch.map((ms, i) => rate(ms) / rate(times.split[i])))
  row(`batch: ${BATCH_LINES / 1000}k-line mixed script --json`, rate(median(times.batch)), 'ops/s', 'node read + split', rate(median(times.split)), ratio, `${rounds} paired runs, ${ops} commands`)
}

// ---- dump --all ------------------------------------------------------------------------------

async function dumpAll() {
  const commands = [
    {name: 'dump --all --json', argv: [node, BIN, 'dump', '--all', '--json']},
    {name: 'dump --all (1024-row table)', argv: [node, BIN, 'dump', '--all']},
  ]
  const rounds = Math.max(5, Math.round(ROUNDS / 4))
  const [json, table] = await interleaved(commands, rounds, 1)
  row(commands[1].name, median(table), 'ms', commands[0].name, median(json), median(table.map((ms, i) => ms / json[i])), `${rounds} paired rounds`)
}

// ---- translate in the emulator core ----------------------------------------------------------

async function translate() {
  const {RfcIotlb, TranslateWalk, freshState} = await import(`${root}dist/device/emulated/model.js`)
  const {PAGE_MASK, VHOST_IOTLB_SIZE, VHOST_IOTLB_UPDATE, VHOST_IOTLB_VALID} = await import(`${root}dist/device/entry.js`)
  const state = freshState('fixed')
  for (let slot = 0; slot < VHOST_IOTLB_SIZE; slot++) {
    const iova = BigInt(slot) << 12n
    state.iotlb[slot] = {iova, size: 0x1000n, userspace_addr: 0x7f00_0000_0000n + iova, perm: 0x11, type: VHOST_IOTLB_UPDATE, valid: VHOST_IOTLB_VALID, u8_padding: 0, padding: 0}
  }

  // 16-byte lookups at varied offsets, all hits, none crossing a page.
  const iovas = Array.from({length: 4096}, (_, i) => (BigInt((i * 7919) % VHOST_IOTLB_SIZE) << 12n) + BigInt((i * 16) % 4080))
  const model = new RfcIotlb(state)
  const core = () => {
    let hits = 0
    for (const iova of iovas) if (new TranslateWalk(iova, 16n).run(model).status === 'ok') hits++
    return hits
  }

  // The least a lookup can do: hash, compare, build the one segment.
  const bare = () => {
    let hits = 0
    for (const iova of iovas) {
      const entry = state.iotlb[Number((iova >> 12n) & 1023n)]
      if (entry.iova === (iova & PAGE_MASK) && entry.valid === VHOST_IOTLB_VALID) {
        const segment = {iova, userspace_addr: entry.userspace_addr + (iova - entry.iova), len: 16n}
        if (segment.len > 0n) hits++
      }
    }

    return hits
  }

  /** Lookups per second over about `ms` of repeated passes. */
  const rate = (fn, ms) => {
    let lookups = 0
    const began = performance.now()
    let now = began
    while (now - began < ms) {
      if (fn() !== iovas.length) throw new Error('a lookup missed')
      lookups += iovas.length
      now = performance.now()
    }

    return lookups / ((now - began) / 1000)
  }

  rate(core, 300) // warm up (JIT)
  rate(bare, 300)
  const coreRates = []
  const bareRates = []
  for (let round = 0; round < 7; round++) {
    coreRates.push(rate(core, 250))
    bareRates.push(rate(bare, 250))
  }

  row('translate: emulator core (TranslateWalk)', median(coreRates), 'lookups/s', 'bare hash + compare', median(bareRates), median(coreRates.map((v, i) => v / bareRates[i])), '7 paired rounds of 250 ms, in-process')
}

// ---- report ----------------------------------------------------------------------------------

function cpuModel() {
  const model = os.cpus()[0]?.model?.trim()
  return model ? `${os.cpus().length} x ${model}` : `${os.cpus().length} CPUs`
}

const started = new Date()
const loadBefore = os.loadavg()[0]
if (!AS_JSON) process.stderr.write(`bench: ${ROUNDS} start-up rounds; this takes a few minutes\n`)
await startup()
await batch()
await dumpAll()
await translate()
const loadAfter = os.loadavg()[0]

const machine = {
  date: started.toISOString().slice(0, 10),
  node: process.version,
  os: `${os.type()} ${os.release()} ${os.arch()}`,
  cpus: cpuModel(),
  load: `${loadBefore.toFixed(2)} -> ${loadAfter.toFixed(2)}`,
}

if (AS_JSON) {
  process.stdout.write(`${JSON.stringify({machine, rows}, null, 2)}\n`)
} else {
  const header = ['benchmark', 'median', 'baseline (same run)', 'baseline median', 'ratio', 'runs']
  const table = rows.map((r) => [
    r.name,
    fmt(r.value, r.unit),
    r.baseline,
    fmt(r.baselineValue, r.unit),
    r.unit === 'ms' ? `${r.ratio.toFixed(2)}x` : `${r.ratio.toFixed(3)}x`,
    r.note,
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((cells) => cells[i].length)))
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  const out = [
    `vhost-iotlb bench, ${machine.date}: Node ${machine.node}, ${machine.os}, ${machine.cpus}, load average ${machine.load}`,
    '',
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...table.map(line),
    '',
    'Times: lower is better, ratio = command / baseline. Rates: higher is better, ratio = command / baseline.',
  ]
  process.stdout.write(`${out.join('\n')}\n`)
}
