import {resolve} from 'node:path'

import * as z from 'zod/mini'

import {showInput} from '../../device/entry.js'
import {UsageError} from '../../device/errors.js'
import {resolveDevice} from '../../device/open.js'
import {stringify} from '../../format/json.js'
import {deviceFlag, jsonFlag} from '../common.js'
import {EXIT} from '../outcome.js'
import {defineCommand} from '../spec.js'

const socketSchema = z.string().check(
  z.refine((text) => text.length > 0 && !text.includes('\0'), {error: (issue) => `--socket: ${showInput(issue.input)} is not a file name`}),
)

/** Signals that end a hold: Ctrl-C, kill, and the terminal going away. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

function untilStopped(): Promise<NodeJS.Signals> {
  return new Promise((done) => {
    const stop = (signal: NodeJS.Signals) => {
      for (const name of STOP_SIGNALS) process.off(name, stop)
      done(signal)
    }

    for (const name of STOP_SIGNALS) process.on(name, stop)
  })
}

export default defineCommand({
  id: 'hold',
  summary: 'Keep a device open and serve it on a unix socket, so one-off commands build on one IOTLB.',
  description:
    'A real vhost device keeps its IOTLB only while its fd is open: a one-off command that opens the device, updates it and exits leaves nothing behind. hold opens the device once and serves it at unix:PATH; one-off commands given --device unix:PATH run on the held device, one at a time in the order they arrive, and print exactly what they would print on the device itself. A client closing its connection never closes the held device. The socket is private to your user (mode 0600); an existing socket nobody answers on is replaced, anything else at PATH is left alone. Runs until Ctrl-C, SIGTERM or SIGHUP, then removes the socket, closes the device and exits 0. Ready once the "holding" line is printed (stderr; with --json also a JSON line on stdout, and a summary line when it stops).',
  examples: [
    'vhost-iotlb hold --device /dev/vhost-net --socket /tmp/iotlb.sock',
    'vhost-iotlb update --iova 0x100000 --size 64k --device unix:/tmp/iotlb.sock',
    'vhost-iotlb hold --device emu:/tmp/iotlb.json --socket /tmp/iotlb.sock --json',
  ],
  args: [],
  flags: {
    socket: {kind: 'value', char: 's', description: 'where to serve the device: a unix socket path, created with mode 0600', helpValue: 'PATH', schema: socketSchema, required: true},
    device: deviceFlag,
    json: {...jsonFlag, description: 'NDJSON on stdout: {"holding", "socket", "pid"} once serving, {"stopped", "requests", "connections"} at the end'},
  },
  async run({flags}, context) {
    if (resolveDevice(flags.device, context.env).kind === 'remote') {
      throw new UsageError(`hold: ${flags.device} is already held; give one-off commands --device ${flags.device} directly`)
    }

    const socket = resolve(flags.socket)
    const device = await context.device(flags.device)
    const {HoldServer} = await import('../../device/remote/server.js')
    const server = await HoldServer.start(device, socket)
    const {io} = context
    if (flags.json) io.out(`${stringify({holding: flags.device, socket: `unix:${socket}`, pid: process.pid}, true)}\n`)
    io.err(`holding ${flags.device} at unix:${socket} (pid ${process.pid}); stop with Ctrl-C\n`)
    const signal = await untilStopped()
    await server.close()
    const {requests, connections} = server.stats
    const summary = {stopped: signal, requests, connections}
    const line = `stopped by ${signal}: ${requests} request${requests === 1 ? '' : 's'} from ${connections} connection${connections === 1 ? '' : 's'}; unix:${socket} removed`
    if (flags.json) io.out(`${stringify(summary, true)}\n`)
    else io.err(`${line}\n`)
    // The session closes the device after this returns: the socket is gone first, so no client
    // can reach a closing device.
    return {json: summary, text: () => [line], exitCode: EXIT.ok, streamed: true}
  },
})
