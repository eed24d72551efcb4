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

const root = fileURLToPath(new URL('..', import.meta.url))
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

async function bundle() {
  const esbuild = await import('esbuild')
  const pkg = JSON.parse(fs.readFileSync(`${root}/package.json`, 'utf8'))
  const external = Object.keys(pkg.dependencies ?? {})
    .filter((name) => !BUNDLED.has(name))
    .flatMap((name) => [name, `${name}/*`])
  const outdir = `${root}/${FAST_DIR}`
  // Chunk names carry a content hash: old chunks would linger and be mistaken for current ones.
  fs.rmSync(outdir, {recursive: true, force: true})
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: {main: 'src/cli/main.ts'},
    outdir,
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
  })
  // The lazy-loading test maps chunks back to their sources with this.
  fs.writeFileSync(`${outdir}/meta.json`, `${JSON.stringify(result.metafile, null, 1)}\n`)
}

const status = tsc()
await bundle()
process.exitCode = status
