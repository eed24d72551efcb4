// Many processes on one state file. Writers: 8 processes each make 100 updates to their own
// slots, every update a separate lock-load-save cycle; all 800 must be there afterwards.
// Readers run alongside: the raw file, parsed as the device parses it, and `dump --json` through
// the binary; every read must see a valid file, and no reader may see the count of written slots
// go down (a lost update would).
import * as fs from 'node:fs'
import {fileURLToPath} from 'node:url'

import t from 'tap'

import {parseStateText} from '../../src/device/emulated/state.js'
import {childEnv, run, spawnNode} from '../fixtures/robustness/proc.js'

const WRITER = fileURLToPath(new URL('../fixtures/robustness/writer.mjs', import.meta.url))
const WRITERS = 8
const UPDATES = 100
const BASE = 0x7f00_0000_0000n

function writer(state: string, first: number, count: number): Promise<{code: number | null; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawnNode([WRITER, 'slots', String(first), String(count)], {
      env: childEnv({VHOST_IOTLB_STATE: state}),
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({code, stderr}))
  })
}

function written(text: string): number {
  return parseStateText(text).iotlb.filter((entry) => entry.type !== 0).length
}

t.test(`${WRITERS} writers x ${UPDATES} updates, with readers`, async (t) => {
  const dir = t.testdir()
  const state = `${dir}/emu.json`
  // The file exists from the start, so every read has something to check.
  t.equal((await run(['set-fd', '5'], {env: {VHOST_IOTLB_STATE: state}})).code, 0)

  let writing = true
  const writers = Promise.all(Array.from({length: WRITERS}, (_, w) => writer(state, w * UPDATES, UPDATES))).finally(() => {
    writing = false
  })

  // Reader 1: the raw file, as often as the event loop lets us.
  const rawReads = {count: 0, bad: [] as string[], lastSeen: 0}
  const raw = (async () => {
    while (writing) {
      const text = fs.readFileSync(state, 'utf8')
      try {
        const seen = written(text)
        if (seen < rawReads.lastSeen) rawReads.bad.push(`written slots went from ${rawReads.lastSeen} to ${seen}`)
        rawReads.lastSeen = seen
      } catch (error) {
        rawReads.bad.push(`${(error as Error).message}: ${JSON.stringify(text.slice(0, 80))}`)
      }

      rawReads.count++
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()

  // Readers 2 and 3: the binary, back to back.
  const dumps = {count: 0, bad: [] as string[]}
  const dumper = async () => {
    let last = 0
    while (writing) {
      const ran = await run(['dump', '--json'], {env: {VHOST_IOTLB_STATE: state}})
      dumps.count++
      try {
        if (ran.code !== 0) throw new Error(`exit ${ran.code}: ${ran.stderr}`)
        const seen = JSON.parse(ran.stdout).entries.length as number
        if (seen < last) throw new Error(`written slots went from ${last} to ${seen}`)
        last = seen
      } catch (error) {
        dumps.bad.push((error as Error).message)
      }
    }
  }

  const [results] = await Promise.all([writers, raw, dumper(), dumper()])
  for (const [w, result] of results.entries()) t.equal(result.code, 0, `writer ${w} finished: ${result.stderr.replace('ready\n', '')}`)
  t.same(rawReads.bad.slice(0, 5), [], `${rawReads.count} raw reads, all valid and never going back`)
  t.same(dumps.bad.slice(0, 5), [], `${dumps.count} dumps, all valid and never going back`)
  t.ok(rawReads.count > 0 && dumps.count > 0, 'the readers ran')

  const dump = JSON.parse((await run(['dump', '--json'], {env: {VHOST_IOTLB_STATE: state}})).stdout)
  t.equal(dump.entries.length, WRITERS * UPDATES, 'all 800 updates are present')
  const wrong = dump.entries.filter(
    (e: {slot: number; iova: string; userspace_addr: string}) =>
      e.iova !== `0x${(BigInt(e.slot) << 12n).toString(16)}` || e.userspace_addr !== `0x${(BASE + (BigInt(e.slot) << 12n)).toString(16)}`,
  )
  t.same(wrong, [], 'each slot holds its own writer\'s entry')
  t.same(fs.readdirSync(dir), ['emu.json'], 'no lock or temporary file left')
})
