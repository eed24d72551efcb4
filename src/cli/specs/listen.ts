import type {ListenResult} from '../../device/device.js'
import {VHOST_IOTLB_UPDATE, numberSchema} from '../../device/entry.js'
import {answerFor} from '../../device/map.js'
import {eventJson, hex, listenJson, stringify} from '../../format/json.js'
import {eventText, listenText} from '../../format/text.js'
import {deviceFlags} from '../common.js'
import {loadMapFile, mapFileSchema} from '../map-file.js'
import {EXIT} from '../outcome.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'listen',
  summary: 'Print each miss (and access failure) the device posts; with --map, answer them as QEMU would.',
  description:
    'A real upstream device posts VHOST_IOTLB_MISS messages on its fd; the RFC device signals the eventfd and writes the request entry. Each is printed as a line, or as NDJSON with --json. With --map FILE (lines `IOVA SIZE PERM [USERSPACE_ADDR]`, # comments) each miss inside a range is answered with an UPDATE of its page; on a real device the page is backed by memory the tool allocates. Runs until interrupted (exit 130) or until --count misses (exit 0). On the emulated device it sees the misses that `translate` posts from other processes.',
  examples: [
    'vhost-iotlb listen --count 1',
    'vhost-iotlb listen --map ranges.txt --json',
    'vhost-iotlb listen --device /dev/vhost-net --map ranges.txt --count 3',
  ],
  args: [],
  flags: {
    map: {kind: 'value', description: 'answer misses from this map file (IOVA SIZE PERM [USERSPACE_ADDR] per line)', helpValue: 'FILE', schema: mapFileSchema},
    count: {
      kind: 'value',
      description: 'stop after N misses',
      helpValue: 'N',
      schema: numberSchema('--count', {min: 1n, max: BigInt(Number.MAX_SAFE_INTEGER), what: 'a count'}),
    },
    ...deviceFlags,
  },
  async run({flags}, context) {
    const ranges = flags.map === undefined ? undefined : await loadMapFile(flags.map)
    const device = await context.device(flags.device)
    const {io} = context
    const controller = new AbortController()
    const stop = () => controller.abort()
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    // Why the last event went unanswered, for its line.
    let unanswered: string | undefined
    let result: ListenResult
    try {
      result = await device.listen({
        signal: controller.signal,
        count: flags.count === undefined ? undefined : Number(flags.count),
        async answer(event) {
          unanswered = undefined
          if (!ranges || event.type !== 'miss') return undefined
          const answer = answerFor(ranges, event.iova)
          if (!answer) {
            unanswered = `no range in ${flags.map} covers ${hex(event.iova)}`
            return undefined
          }

          return device.update({...answer, type: VHOST_IOTLB_UPDATE, valid: true})
        },
        onEvent(event, answer) {
          if (flags.json) io.out(`${stringify(eventJson(event, answer, unanswered), true)}\n`)
          else io.out(`${eventText(event, answer, unanswered).join('\n')}\n`)
        },
      })
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }

    // The summary ends the NDJSON stream; in text mode it is a diagnostic.
    if (flags.json) io.out(`${stringify(listenJson(result), true)}\n`)
    else io.err(`${listenText(result).join('\n')}\n`)
    return {
      json: listenJson(result),
      text: () => listenText(result),
      exitCode: result.stopped === 'signal' ? EXIT.interrupted : EXIT.ok,
      streamed: true,
    }
  },
})
