import type {ExerciseResult, ExerciseSetup} from '../../device/device.js'
import {VHOST_IOTLB_UPDATE, numberSchema} from '../../device/entry.js'
import {DeviceError} from '../../device/errors.js'
import {answerFor} from '../../device/map.js'
import {type Json, eventJson, hex, stringify, updateJson} from '../../format/json.js'
import {entryText, eventText} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {loadMapFile, mapFileSchema} from '../map-file.js'
import {EXIT} from '../outcome.js'
import {defineCommand} from '../spec.js'

function setupJson(setup: ExerciseSetup): {[key: string]: Json} {
  return {
    queue: setup.queue,
    num: setup.num,
    desc: hex(setup.desc),
    avail: hex(setup.avail),
    used: hex(setup.used),
    tap: setup.tap,
    used_mapped: updateJson(setup.used_mapped),
  }
}

function setupText(setup: ExerciseSetup, device: string): string[] {
  return [
    `${device} queue ${setup.queue}: ${setup.num} entries, rings at IOVAs desc ${hex(setup.desc)} avail ${hex(setup.avail)} used ${hex(setup.used)}, empty memory table`,
    `  used ring mapped first (slot ${setup.used_mapped.slot}: ${entryText(setup.used_mapped.entry)})`,
    `  backend ${setup.tap} attached, queue kicked`,
  ]
}

function summaryJson(result: ExerciseResult): {[key: string]: Json} {
  const body: {[key: string]: Json} = {events: result.events, answered: result.answered, stopped: result.stopped}
  if (result.quiet_ms !== undefined) body.quiet_ms = result.quiet_ms
  return body
}

function summaryText(result: ExerciseResult, lastMiss: bigint | undefined): string[] {
  const counts = `${result.events} event${result.events === 1 ? '' : 's'}, ${result.answered} answered`
  switch (result.stopped) {
    case 'quiet': {
      return [`the kernel went quiet (nothing for ${result.quiet_ms} ms): ${counts}`]
    }

    case 'count': {
      return result.events === 0
        ? ['--count 0: set up and kicked; the misses wait on the device fd (run listen in this session to read them)']
        : [`--count reached: ${counts}`]
    }

    case 'unanswered': {
      const iova = lastMiss === undefined ? 'IOVA' : hex(lastMiss)
      return [
        `the kernel waits for an answer to the miss at ${iova}: ${counts}`,
        `  answer it in the same session (repl or batch): update --iova ${iova} --size 4k; or run exercise --map FILE`,
      ]
    }

    case 'signal': {
      return [`interrupted: ${counts}`]
    }
  }
}

export default defineCommand({
  id: 'exercise',
  summary: 'Make a real vhost-net device miss: set up a virtqueue, kick it, and show (and answer) each MISS the kernel posts.',
  description:
    'Sets up queue 0 of a vhost-net device the way a VMM behind a vIOMMU would: an empty memory table, ring addresses that are IOVAs nothing maps yet (desc 0x100000, avail 0x101000, used 0x102000, 256 entries), kick and call eventfds, the used ring mapped first with memory the tool owns, and a tap interface as the backend. Then it kicks the queue and reads the misses the kernel posts on the device fd: first the descriptor table, then, once that is answered, the available ring. With --map FILE each miss is answered from the map (memory the tool allocates) and the next one follows until the kernel goes quiet (--quiet ms of silence). In the REPL at a terminal each miss can be answered by hand. Otherwise the first miss is shown and the command exits 3, like a translate that misses; in a repl or batch session an `update` of that IOVA answers it and `listen` reads the next. --count 0 sets up and kicks without reading. Needs root (or a granted fd) and the tun module. Ctrl-C exits 130.',
  examples: [
    'vhost-iotlb exercise --device /dev/vhost-net',
    'vhost-iotlb exercise --device /dev/vhost-net --map rings.txt --json',
    "printf 'exercise --count 0\\nlisten --map rings.txt --count 2\\n' | vhost-iotlb batch - --device /dev/vhost-net",
  ],
  args: [],
  flags: {
    map: {kind: 'value', description: 'answer misses from this map file (IOVA SIZE PERM per line)', helpValue: 'FILE', schema: mapFileSchema},
    count: {
      kind: 'value',
      description: 'stop after N misses; 0 sets up and kicks without reading',
      helpValue: 'N',
      schema: numberSchema('--count', {max: BigInt(Number.MAX_SAFE_INTEGER), what: 'a count'}),
    },
    quiet: {
      kind: 'value',
      description: 'after an answer, milliseconds of silence that count as the kernel going quiet',
      helpValue: 'MS',
      schema: numberSchema('--quiet', {min: 1n, max: 600_000n, what: 'milliseconds'}),
      default: '500',
    },
    ...deviceFlags,
  },
  async run({flags}, context) {
    const ranges = flags.map === undefined ? undefined : await loadMapFile(flags.map)
    const device = await context.device(flags.device)
    if (!device.exercise) throw new DeviceError('exercise', 'EOPNOTSUPP', `${device.info.spec} has no virtqueue this tool can kick`)
    const {io} = context
    const out = (body: Json) => io.out(`${stringify(body, true)}\n`)
    const controller = new AbortController()
    const stop = () => controller.abort()
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    let unanswered: string | undefined
    let lastMiss: bigint | undefined
    let result: ExerciseResult
    try {
      result = await device.exercise({
        signal: controller.signal,
        count: flags.count === undefined ? undefined : Number(flags.count),
        quietMs: Number(flags.quiet),
        onSetup(setup) {
          if (flags.json) out({setup: setupJson(setup)})
          else io.out(`${setupText(setup, device.info.spec).join('\n')}\n`)
        },
        answer: ranges
          ? async (event) => {
              unanswered = undefined
              if (event.type !== 'miss') return undefined
              const answer = answerFor(ranges, event.iova)
              if (!answer) {
                unanswered = `no range in ${flags.map} covers ${hex(event.iova)}`
                return undefined
              }

              return device.update({...answer, type: VHOST_IOTLB_UPDATE, valid: true})
            }
          : undefined,
        onMiss: ranges ? undefined : context.interaction?.onMiss,
        onEvent(event, answer) {
          if (event.type === 'miss') lastMiss = event.iova
          if (flags.json) out(eventJson(event, answer, unanswered))
          else io.out(`${eventText(event, answer, unanswered).join('\n')}\n`)
        },
      })
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }

    if (flags.json) out(summaryJson(result))
    else io.out(`${summaryText(result, lastMiss).join('\n')}\n`)
    const exitCode = result.stopped === 'signal' ? EXIT.interrupted : result.stopped === 'unanswered' ? EXIT.miss : EXIT.ok
    return {
      json: {setup: setupJson(result.setup), ...summaryJson(result)},
      // Everything was printed as it happened; batch's text mode must not print the summary twice.
      text: () => [],
      exitCode,
      streamed: true,
    }
  },
})
