import * as z from 'zod/mini'

import {deviceFlag, jsonFlag} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'batch',
  summary: 'Run commands from a file or stdin, one per line, on one open device.',
  description:
    'Each line is split as a shell would (quotes, backslash escapes) and run as the command it names, with the same flags and checks as on the command line; `#` comments and blank lines are skipped. The device is opened once and saved at the end, including after a failure (a failed command changes nothing). The first failure stops the batch with FILE:LINE: message and that command\'s exit code; --force goes on and exits 1 if any line failed. A translate that misses is a result, not a failure: the request stays pending. --json writes NDJSON, one {"line", "command", "result"|"error", "exit"} object per line, whatever the lines say. Ctrl-C stops after the current line, saves and exits 130.',
  examples: [
    'vhost-iotlb batch trace.txt',
    "printf 'set-fd 5\\nset-request-entry 0x7f0000000000\\ntranslate 0x5000\\n' | vhost-iotlb batch - --json | jq -c .result",
    'vhost-iotlb batch --force --device emu:/tmp/replay.json trace.txt',
  ],
  args: [{name: 'file', description: 'script to run; - reads stdin', helpValue: 'FILE', schema: z.string(), required: false, default: '-'}],
  flags: {
    force: {kind: 'boolean', char: 'f', description: 'go on after a failing line; exit 1 at the end if any failed'},
    device: deviceFlag,
    json: {...jsonFlag, description: 'NDJSON: one object per line with "line", "command", "result" or "error", and "exit"'},
  },
  async run({args, flags}, context) {
    const {runBatch} = await import('../batch.js')
    return runBatch({file: args.file, device: flags.device, json: flags.json, force: flags.force}, context)
  },
})
