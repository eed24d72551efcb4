/**
 * oclif adapters: each file in src/commands turns one declaration into an oclif command, so
 * oclif's help, manifest and shell completion describe exactly what the dispatcher parses. The
 * command's run() hands its argv to the same one-shot runner the fast path in bin/run.js uses.
 */
import {Args, Command, Flags, type Interfaces} from '@oclif/core'

import {runOnce} from './run.js'
import type {CommandSpec} from './spec.js'

type OclifFlags = Interfaces.FlagInput
type OclifArgs = Interfaces.ArgInput

function oclifFlags(spec: CommandSpec<any, any>): OclifFlags {
  const flags: OclifFlags = {}
  for (const [name, flag] of Object.entries(spec.flags as CommandSpec['flags'])) {
    const char = flag.char as 'a' | undefined
    flags[name] =
      flag.kind === 'boolean'
        ? Flags.boolean({char, description: flag.description})
        : Flags.string({
            char,
            description: flag.description,
            helpValue: flag.helpValue,
            required: flag.required,
            default: flag.default,
            env: flag.env,
            options: flag.options ? [...flag.options] : undefined,
          })
  }

  return flags
}

function oclifArgs(spec: CommandSpec<any, any>): OclifArgs {
  const args: OclifArgs = {}
  for (const arg of spec.args as CommandSpec['args']) {
    args[arg.name] = Args.string({description: arg.description, required: arg.required, default: arg.default})
  }

  return args
}

export function oclifCommand(spec: CommandSpec<any, any>): Command.Class {
  return class extends Command {
    static override summary = spec.summary
    static override description = spec.description
    static override examples = spec.examples.map((line) => line.replace(/^vhost-iotlb /, '<%= config.bin %> '))
    static override flags = oclifFlags(spec)
    static override args = oclifArgs(spec)
    // The dispatcher parses, so oclif must not reject what it would accept (`set-fd -1`).
    static override strict = false

    async run(): Promise<void> {
      this.parsed = true
      process.exitCode = await runOnce([spec.id, ...this.argv])
    }
  }
}
