#!/usr/bin/env node
/**
 * The build, in two steps:
 *
 * 1. tsc compiles src/ to dist/. oclif runs from there: its commands, its hooks and
 *    `oclif manifest` read dist/, and the oclif path (help, completion, VHOST_IOTLB_OCLIF=1)
 *    runs that code.
 * 2. esbuild bundles the fast path, src/cli/main.ts, into dist/fast/, which bin/run.js imports.
 *
 * Why bundle: a one-shot command is mostly start-up, and unbundled that start-up is spent
 * resolving, reading and compiling some 120 ES modules (94 of them zod's). The bundle is split
 * (ESM code splitting) so that every command declaration and everything only it uses is its own
 * chunk, loaded by the registry's `import()` when that command runs; `dump --json` never loads
 * `update`, `batch` or the REPL. zod is bundled (only the zod/mini parts we use); every other
 * dependency stays external and is loaded where it is used: @oclif/* only by the fallback in
 * bin/run.js, cli-table3 only to draw a table, koffi only by real devices, inquirer only in the
 * REPL. Not minified: stack traces (VHOST_IOTLB_DEBUG=1) stay readable, and minifying measured
 * no start-up gain beyond the noise (docs/performance.md).
 */
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import {createRequire} from 'node:module'
import {fileURLToPath} from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const require = createRequire(import.meta.url)

/** bin/run.js imports `${FAST_DIR}/main.js`. */
const FAST_DIR = 'dist/fast'
/** Packages bundled into the fast path; every other dependency stays external. */
const BUNDLED = new Set(['zod'])

/** Returns tsc's exit status. tsc emits despite type errors, so the bundle is made either way. */
function tsc() {
  const result = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  })
  return result.status ?? 1
}

/**
 * Publishes a finished build into dist/fast without a moment in which a process starting
 * meanwhile (tests, other shells in the same tree) finds main.js missing or its chunks gone:
 * chunks are content-hashed and moved in first, then main.js is replaced by rename. Chunks the
 * new build no longer uses are removed only once they are old enough that no process started
 * from the previous main.js can still be loading them.
 */
function publish(staging, outdir, metafile) {
  const prefix = `${staging.slice(root.length + 1)}/`
  const outputs = Object.fromEntries(
    Object.entries(metafile.outputs).map(([path, output]) => [`${FAST_DIR}/${path.slice(prefix.length)}`, output]),
  )
  fs.mkdirSync(`${outdir}/chunks`, {recursive: true})
  for (const name of fs.readdirSync(`${staging}/chunks`)) fs.renameSync(`${staging}/chunks/${name}`, `${outdir}/chunks/${name}`)
  // The lazy-loading test maps chunks back to their sources with this.
  fs.writeFileSync(`${staging}/meta.json`, `${JSON.stringify({...metafile, outputs}, null, 1)}\n`)
  fs.renameSync(`${staging}/meta.json`, `${outdir}/meta.json`)
  fs.renameSync(`${staging}/main.js`, `${outdir}/main.js`)
  fs.rmSync(staging, {recursive: true, force: true})

  const stale = Date.now() - 10 * 60_000
  for (const name of fs.readdirSync(`${outdir}/chunks`)) {
    const path = `${outdir}/chunks/${name}`
    if (!Object.hasOwn(outputs, `${FAST_DIR}/chunks/${name}`) && fs.statSync(path).mtimeMs < stale) fs.rmSync(path, {force: true})
  }
}

const ENTRY = 'src/cli/main.ts'

/** Sources reachable from `entry` through static imports, in an esbuild metafile. */
function staticClosure(metafile, entry) {
  const seen = new Set()
  const stack = [entry]
  while (stack.length > 0) {
    const path = stack.pop()
    if (seen.has(path)) continue
    seen.add(path)
    for (const edge of metafile.inputs[path]?.imports ?? []) if (!edge.external && edge.kind === 'import-statement') stack.push(edge.path)
  }

  return seen
}

/**
 * One chunk for the start-up path. esbuild puts each module into a chunk keyed by the set of
 * entry points (main and every import() target) that reach it, so main's own code was spread
 * over some ten chunks, each an ES module the loader resolves, reads and compiles in turn
 * (0.5 to 1 ms apiece here). Every import() target runs only after main has loaded, so having
 * each of them import main as well changes nothing at run time, yet gives all of main's code
 * the same set of entry points, and so one chunk.
 */
function startupInOneChunk(dynamicEntries) {
  const main = `${root}/${ENTRY}`
  return {
    name: 'startup-in-one-chunk',
    setup(build) {
      build.onLoad({filter: /\.ts$/}, (args) => {
        if (!dynamicEntries.has(args.path)) return undefined
        const source = fs.readFileSync(args.path, 'utf8')
        return {contents: `import ${JSON.stringify(main)}\n${source}`, loader: 'ts'}
      })
    },
  }
}

async function bundle() {
  const esbuild = await import('esbuild')
  const pkg = JSON.parse(fs.readFileSync(`${root}/package.json`, 'utf8'))
  const external = Object.keys(pkg.dependencies ?? {})
    .filter((name) => !BUNDLED.has(name))
    .flatMap((name) => [name, `${name}/*`])
  const outdir = `${root}/${FAST_DIR}`
  const staging = `${outdir}.build-${process.pid}`
  const options = {
    absWorkingDir: root,
    entryPoints: {main: ENTRY},
    outdir: staging,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    // package.json engines: node >= 20.
    target: 'node20',
    external,
    chunkNames: 'chunks/[name]-[hash]',
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
  }
  fs.rmSync(staging, {recursive: true, force: true})
  try {
    // A first pass, not written, finds the import() targets and main's static closure.
    const {metafile: graph} = await esbuild.build({...options, write: false})
    const startup = staticClosure(graph, ENTRY)
    const dynamicEntries = new Set(
      Object.values(graph.outputs)
        .map((output) => output.entryPoint)
        .filter((entry) => entry !== undefined && !startup.has(entry))
        .map((entry) => `${root}/${entry}`),
    )
    const result = await esbuild.build({...options, plugins: [startupInOneChunk(dynamicEntries)]})
    publish(staging, outdir, result.metafile)
  } finally {
    fs.rmSync(staging, {recursive: true, force: true})
  }
}

const status = tsc()
await bundle()
process.exitCode = status
