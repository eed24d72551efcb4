// Keeps the README's examples true: every ```console block is run as a shell session on a fresh
// emulated device, and each command's output must match what the block shows.
// `README_UPDATE=1 npx tap test/readme.test.ts` rewrites the outputs from a real run instead.
import {spawnSync} from 'node:child_process'
import * as fs from 'node:fs'
import {fileURLToPath} from 'node:url'

import t from 'tap'

const readmePath = fileURLToPath(new URL('../README.md', import.meta.url))
const binDir = fileURLToPath(new URL('../bin/', import.meta.url))

interface Step {
  command: string
  output: string[]
}

function parseBlock(body: string): Step[] {
  const steps: Step[] = []
  for (const line of body.split('\n')) {
    if (line.startsWith('$ ')) steps.push({command: line.slice(2), output: []})
    else if (steps.length > 0) steps.at(-1)!.output.push(line)
  }

  return steps
}

function runStep(command: string, dir: string): string {
  // `vhost-iotlb` on PATH is the built binary; stderr is shown merged, as a terminal would.
  const shim = `${dir}/bin`
  fs.mkdirSync(shim, {recursive: true})
  if (!fs.existsSync(`${shim}/vhost-iotlb`)) fs.symlinkSync(`${binDir}run.js`, `${shim}/vhost-iotlb`)
  const result = spawnSync('bash', ['-c', `{ ${command}
} 2>&1`], {
    cwd: dir,
    encoding: 'utf8',
    env: {...process.env, PATH: `${shim}:${process.env.PATH}`, VHOST_IOTLB_STATE: `${dir}/emu.json`, NO_COLOR: '1', VHOST_IOTLB_HISTORY: `${dir}/history`},
  })
  return result.stdout.replace(/\n$/, '')
}

const text = fs.readFileSync(readmePath, 'utf8')
const blocks = [...text.matchAll(/```console\n([\s\S]*?)```/g)]
const update = process.env.README_UPDATE === '1'
let rewritten = text

t.ok(blocks.length > 0, 'the README has console examples')
for (const [index, block] of blocks.entries()) {
  t.test(`README example ${index + 1}`, async (t) => {
    const dir = t.testdir()
    const steps = parseBlock(block[1]!)
    const fresh: string[] = []
    for (const step of steps) {
      const actual = runStep(step.command, dir)
      const shown = step.output.join('\n').replace(/\n$/, '')
      if (!update) t.equal(actual, shown, `$ ${step.command}`)
      fresh.push(`$ ${step.command}`, ...(actual === '' ? [] : [actual]))
    }

    if (update) rewritten = rewritten.replace(block[0], `\`\`\`console\n${fresh.join('\n')}\n\`\`\``)
  })
}

t.teardown(() => {
  if (update && rewritten !== text) fs.writeFileSync(readmePath, rewritten)
})
