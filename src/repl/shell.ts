/**
 * `vhost-iotlb repl`: a long-lived shell on one open device.
 *
 * At a terminal it is interactive: line editing, completion, persistent history, prompts for
 * misses and missing flags. Fed from a pipe or file it runs the lines exactly as batch does
 * (the same runner), printing each as the one-shot command would, and never prompts.
 * Either way every line goes through the one dispatcher.
 */
import {BufferedIo, type Builtin, openScript, runLine, runScript} from '../cli/batch.js'
import {reportError} from '../cli/outcome.js'
import {render} from '../cli/render.js'
import {COMMANDS, loadCommand} from '../cli/registry.js'
import {type Io, Session} from '../cli/session.js'
import type {CommandSpec, Context, Result} from '../cli/spec.js'
import type {DeviceInfo} from '../device/device.js'
import {makeCompleter} from './complete.js'
import {helpCommand, helpIndex} from './help.js'
import {History, historyPath} from './history.js'
import {terminalInteraction} from './prompts.js'
import {Terminal} from './terminal.js'

export interface ReplInput {
  device: string
  force: boolean
}

export function promptText(info: DeviceInfo): string {
  return `vhost-iotlb ${info.spec} ${info.model}> `
}

/** Every declaration, for completion and help; one that fails to load is left out, not fatal. */
async function loadSpecs(): Promise<CommandSpec[]> {
  const loaded = await Promise.allSettled(Object.keys(COMMANDS).map((id) => loadCommand(id)))
  return loaded.flatMap((entry) => (entry.status === 'fulfilled' ? [entry.value] : []))
}

/** help, exit and CMD --help: the shell's own words, the same at a terminal and in a pipe. */
function builtins(specs: readonly CommandSpec[], io: Io): Builtin {
  const byId = new Map(specs.map((spec) => [spec.id, spec]))
  const print = (lines: string[]) => io.out(`${lines.join('\n')}\n`)
  return async (argv) => {
    const [word = '', ...rest] = argv
    if (word === 'exit' || word === 'quit') return 'exit'
    if (word === 'help') {
      const spec = rest[0] === undefined ? undefined : byId.get(rest[0])
      if (rest[0] !== undefined && !spec) io.err(`help: unknown command ${JSON.stringify(rest[0])}\n`)
      print(spec ? helpCommand(spec) : helpIndex(specs))
      return 'done'
    }

    const end = argv.indexOf('--')
    const asksHelp = argv.some((token, index) => (token === '--help' || token === '-h') && (end === -1 || index < end))
    const spec = byId.get(word)
    if (spec && asksHelp) {
      print(helpCommand(spec))
      return 'done'
    }

    return undefined
  }
}

/** Ctrl-C from a pipe or another process: stop after the current line, like batch. */
function stopOnSigint(): {stop: {requested: boolean}; release(): void} {
  const stop = {requested: false}
  const onSigint = () => {
    if (stop.requested) process.exit(130)
    stop.requested = true
  }

  process.on('SIGINT', onSigint)
  return {stop, release: () => process.off('SIGINT', onSigint)}
}

/** Lines from a pipe: batch's runner, one-shot output, `<stdin>:LINE: message` at a failure. */
async function piped(input: ReplInput, context: Context, specs: readonly CommandSpec[]): Promise<number> {
  const io = new BufferedIo(context.io)
  const session = new Session({io, device: input.device, env: context.env})
  const script = openScript('-')
  const {stop, release} = stopOnSigint()
  try {
    await session.device(input.device)
    const end = await runScript({...script, session, io, mode: 'oneshot', force: input.force, builtin: builtins(specs, io), stop})
    if (end.interrupted) {
      io.err(`vhost-iotlb: repl: interrupted after <stdin>:${end.line}\n`)
      return 130
    }

    return end.exitCode
  } finally {
    release()
    io.flush()
    await session.close()
  }
}

/** At a terminal: readline on a gate, prompts through inquirer, status 0 on exit or Ctrl-D. */
async function interactive(input: ReplInput, context: Context, specs: readonly CommandSpec[]): Promise<number> {
  const {io, env} = context
  let session: Session | undefined
  let terminal: Terminal | undefined
  const interaction = terminalInteraction({
    terminal: () => terminal!,
    io,
    session: () => session!,
    deviceKind: () => device.info.kind,
  })
  session = new Session({io, device: input.device, interaction, env})
  const device = await session.device(input.device)
  const history = History.load(historyPath(env), (message) => io.err(`vhost-iotlb: ${message}\n`))
  terminal = new Terminal({
    stdin: process.stdin,
    stdout: process.stdout,
    completer: makeCompleter(specs),
    history: history.entries,
    prompt: promptText(device.info),
  })
  const {rl} = terminal
  const builtin = builtins(specs, io)
  const queue: string[] = []
  let running = false
  let closed = false
  let finished: () => void
  const done = new Promise<void>((resolve) => {
    finished = resolve
  })

  // A paste of several lines arrives at once: run them one after another, prompting after the last.
  const pump = async () => {
    if (running) return
    running = true
    rl.pause()
    while (queue.length > 0 && !closed) {
      const line = queue.shift()!
      history.add(line)
      const outcome = await runLine(line, session!, builtin)
      if (outcome === 'exit') {
        closed = true
      } else if (outcome) {
        await render(outcome, io)
      }
    }

    running = false
    if (closed) {
      finished()
      return
    }

    rl.setPrompt(promptText(device.info))
    rl.prompt()
  }

  const run = () => {
    pump().catch((error: unknown) => {
      io.err(`vhost-iotlb: ${reportError(error, env).message}\n`)
      running = false
      closed = true
      finished()
    })
  }

  rl.on('line', (line) => {
    queue.push(line)
    run()
  })
  // Ctrl-C clears the line; on an empty one, say how to leave instead of leaving. While a line
  // runs the keys belong to a prompt (or wait), so a signal from elsewhere is ignored then.
  const onCtrlC = () => {
    if (!running) terminal!.cancelLine(rl.line === '' ? '(to leave, type exit or press Ctrl-D)' : undefined)
  }
  rl.on('SIGINT', onCtrlC)
  rl.on('close', () => {
    if (!closed) {
      closed = true
      io.out('\n')
      if (!running) finished()
    }
  })
  // A SIGINT sent by another process must not end the shell either.
  process.on('SIGINT', onCtrlC)
  rl.prompt()
  try {
    await done
  } finally {
    process.off('SIGINT', onCtrlC)
    terminal.close()
    await session.close()
  }

  return 0
}

/** `vhost-iotlb repl` */
export async function runRepl(input: ReplInput, context: Context): Promise<Result> {
  const specs = await loadSpecs()
  const atTerminal = Boolean(process.stdin.isTTY && process.stdout.isTTY)
  const exitCode = atTerminal ? await interactive(input, context, specs) : await piped(input, context, specs)
  return {json: null, text: () => [], streamed: true, exitCode}
}
