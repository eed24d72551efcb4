/**
 * What the REPL adds at a terminal (the {@link Interaction} of spec.ts): answering a translate
 * miss by hand, and asking for flags a command needs but the line left out.
 *
 * Prompts come from @inquirer/prompts, imported only when one is shown: one-shot commands and
 * pipelines never load it. Every answer is checked by the zod schema the flag itself uses, and
 * the UPDATE that answers a miss goes through {@link dispatch} like a typed line.
 */
import {dispatch} from '../cli/dispatch.js'
import {render} from '../cli/render.js'
import type {Io, Session} from '../cli/session.js'
import {quoteWord} from '../cli/shellwords.js'
import type {Interaction, TextSchema, ValueFlag} from '../cli/spec.js'
import {type IotlbEntry, PERM_CHOICES, numberSchema, permName, permSchema, sizeSchema} from '../device/entry.js'
import {hex} from '../format/json.js'
import type {Terminal} from './terminal.js'

/** inquirer's `validate`: true, or the schema's message. Surrounding blanks are forgiven. */
function check(schema: TextSchema): (text: string) => true | string {
  return (text) => {
    const parsed = schema.safeParse(text.trim())
    return parsed.success || (parsed.error.issues[0]?.message ?? 'invalid value')
  }
}

/** Ctrl-C in a prompt rejects with ExitPromptError: that cancels the prompt, never the shell. */
function cancelled(error: unknown): boolean {
  return error instanceof Error && (error.name === 'ExitPromptError' || error.name === 'AbortPromptError')
}

export interface PromptsOptions {
  /** Read late, like the session: the terminal is set up once the device is open. */
  terminal: () => Terminal
  io: Io
  /** The REPL's session; read late because the session is built with this interaction. */
  session: () => Session
  /** The kind of the session's device (emulated devices need --uaddr on update). */
  deviceKind: () => string
  /** Streams for the prompts instead of the process's (tests). */
  streams?: {input: NodeJS.ReadableStream; output: NodeJS.WritableStream}
}

interface MissAnswer {
  uaddr: string
  size: string
  perm: string
}

export function terminalInteraction(options: PromptsOptions): Interaction {
  const {io, streams} = options

  async function askMiss(request: IotlbEntry): Promise<MissAnswer | undefined> {
    const {confirm, input} = await import('@inquirer/prompts')
    const page = hex(request.iova)
    const emulated = options.deviceKind() === 'emulated'
    io.out(
      emulated
        ? `miss at ${page}: the device wrote a request to the request entry, signalled the eventfd and waits for an UPDATE\n`
        : `miss at ${page}: the kernel posted a MISS and waits for an UPDATE\n`,
    )
    if (!(await confirm({message: `Answer the miss at ${page} as userspace would (VHOST_UPDATE_IOTLB)?`, default: true}, streams))) {
      return undefined
    }

    // The RFC's request carries stale or zero perm bits; offer them only when they name a permission.
    const asked = permName(request.perm)
    const perm = asked !== 'none' && PERM_CHOICES.includes(asked) ? asked : 'rw'
    // A real device is answered with memory the tool allocates: a typed address would need
    // --unsafe-uaddr, and the kernel would write wherever it points.
    return {
      uaddr: emulated
        ? (await input({message: `userspace_addr for iova ${page}`, validate: check(numberSchema('userspace_addr'))}, streams)).trim()
        : 'auto',
      size: (await input({message: 'size', default: '4k', validate: check(sizeSchema('size'))}, streams)).trim(),
      perm: (await input({message: 'perm', default: perm, validate: check(permSchema('perm'))}, streams)).trim(),
    }
  }

  return {
    async onMiss(request) {
      let answer: MissAnswer | undefined
      try {
        answer = await options.terminal().aside(() => askMiss(request))
      } catch (error) {
        if (!cancelled(error)) throw error
      }

      if (!answer) {
        io.out(`the request for ${hex(request.iova)} stays pending; a later update --iova ${hex(request.iova)} completes it\n`)
        return false
      }

      const argv = ['update', '--iova', hex(request.iova), '--size', answer.size, '--uaddr', answer.uaddr, '--perm', answer.perm]
      // The line a user could have typed instead, to learn from or replay.
      io.out(`${argv.map((word) => quoteWord(word)).join(' ')}\n`)
      const outcome = await dispatch(argv, options.session())
      await render(outcome, io)
      // The waiter wakes only if this UPDATE completed its request.
      const json = outcome.result?.json
      return outcome.exitCode === 0 && typeof json === 'object' && json !== null && !Array.isArray(json) && json.completed_miss === true
    },

    async askMissing(command, missing: Array<{name: string; flag: ValueFlag}>) {
      const given: Record<string, string> = {}
      try {
        await options.terminal().aside(async () => {
          const {input} = await import('@inquirer/prompts')
          for (const {name, flag} of missing) {
            given[name] = (await input({message: `${command} --${name} ${flag.helpValue}`, validate: check(flag.schema)}, streams)).trim()
          }
        })
      } catch (error) {
        // Cancelled: the command reports what is still missing.
        if (!cancelled(error)) throw error
      }

      return given
    },

    askAlso(command) {
      return command === 'update' && options.deviceKind() === 'emulated' ? ['uaddr'] : []
    },
  }
}
