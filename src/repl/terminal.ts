/**
 * The terminal the interactive REPL owns, and how it lends it to a prompt.
 *
 * @inquirer/prompts opens its own readline on stdin for every prompt. With the shell's readline
 * also reading stdin, every key would reach both (echoed twice, the shell stuck afterwards). So
 * the shell's readline reads from a gate, a PassThrough that stdin is piped into, and
 * {@link Terminal.aside} unplugs the gate for the length of a prompt, then restores raw mode
 * (the prompt's readline turns it off when it closes) and plugs it back.
 */
import {PassThrough} from 'node:stream'
import * as readline from 'node:readline'

import {HISTORY_SIZE} from './history.js'

export interface TerminalOptions {
  stdin: NodeJS.ReadStream
  stdout: NodeJS.WriteStream
  completer: readline.Completer
  /** Newest first. */
  history: string[]
  prompt: string
}

/** The gate passes itself off as the TTY so readline manages raw mode on the real one. */
function makeGate(stdin: NodeJS.ReadStream): PassThrough {
  const gate = new PassThrough()
  Object.assign(gate, {
    isTTY: true,
    setRawMode(mode: boolean) {
      stdin.setRawMode(mode)
      return gate
    },
  })
  Object.defineProperty(gate, 'isRaw', {get: () => stdin.isRaw})
  return gate
}

export class Terminal {
  readonly rl: readline.Interface
  private readonly gate: PassThrough

  constructor(private readonly options: TerminalOptions) {
    this.gate = makeGate(options.stdin)
    options.stdin.pipe(this.gate)
    this.rl = readline.createInterface({
      input: this.gate,
      output: options.stdout,
      terminal: true,
      completer: options.completer,
      history: options.history,
      historySize: HISTORY_SIZE,
      prompt: options.prompt,
    })
  }

  /**
   * Lends stdin to `prompt` (an inquirer prompt) and takes it back afterwards. The shell's
   * readline stays paused: the next `rl.prompt()` resumes it.
   */
  async aside<T>(prompt: () => Promise<T>): Promise<T> {
    const {stdin} = this.options
    this.rl.pause()
    stdin.unpipe(this.gate)
    try {
      return await prompt()
    } finally {
      stdin.setRawMode(true)
      stdin.pipe(this.gate)
    }
  }

  /**
   * Ctrl-C: abandon the line being edited and start a fresh prompt below it, as a shell does.
   * readline has no public way to drop its line, so its own fields are reset (Node's REPL does
   * the same through an internal method).
   */
  cancelLine(hint?: string): void {
    const {rl} = this
    rl.write(null, {ctrl: true, name: 'e'}) // to the end of the line, so the output goes below it
    this.options.stdout.write(hint ? `^C\n${hint}\n` : '^C\n')
    Object.assign(rl, {line: '', cursor: 0, prevRows: 0})
    rl.prompt()
  }

  /** Gives the terminal back as it was found, and lets the process exit. */
  close(): void {
    this.rl.close()
    this.options.stdin.unpipe(this.gate)
    if (this.options.stdin.isTTY) this.options.stdin.setRawMode(false)
    this.options.stdin.pause()
  }
}
