/**
 * `help` and `help CMD` inside the REPL, written from the same declarations the parser reads,
 * so the REPL never describes a flag differently from what it accepts.
 */
import type {CommandSpec, FlagDef} from '../cli/spec.js'

/** Shell words the REPL handles itself; completion offers them with the commands. */
export const BUILTINS: Readonly<Record<string, string>> = {
  help: 'help [COMMAND]: list the commands, or describe one',
  exit: 'exit: leave the shell (also quit, or Ctrl-D)',
  quit: '',
}

function flagUsage(name: string, flag: FlagDef): string {
  const names = flag.char ? `-${flag.char}, --${name}` : `--${name}`
  const text = flag.kind === 'value' ? `${names} ${flag.helpValue}` : names
  return flag.kind === 'value' && flag.required ? text : `[${text}]`
}

export function usageLine(spec: CommandSpec): string {
  const args = spec.args.map((arg) => (arg.required ? arg.helpValue : `[${arg.helpValue}]`))
  const flags = Object.entries(spec.flags).map(([name, flag]) => flagUsage(name, flag))
  return [spec.id, ...args, ...flags].join(' ')
}

/** `help`: every command with its summary, then the shell's own words. */
export function helpIndex(specs: readonly CommandSpec[]): string[] {
  const runnable = specs.filter((spec) => spec.id !== 'batch' && spec.id !== 'repl')
  const width = Math.max(...runnable.map((spec) => spec.id.length))
  return [
    'commands (help COMMAND for its flags):',
    ...runnable.map((spec) => `  ${spec.id.padEnd(width)}  ${spec.summary}`),
    'shell:',
    `  ${BUILTINS.help}`,
    `  ${BUILTINS.exit}`,
    '  Tab completes commands, flags and values; Up/Down recall history; Ctrl-C clears the line.',
  ]
}

/** `help CMD`: usage, description, flags with what they take, examples as REPL lines. */
export function helpCommand(spec: CommandSpec): string[] {
  const lines = [`${spec.id}: ${spec.summary}`, `usage: ${usageLine(spec)}`, '', spec.description]
  const rows: Array<[string, string]> = []
  for (const arg of spec.args) rows.push([arg.helpValue, arg.description])
  for (const [name, flag] of Object.entries(spec.flags)) {
    const names = `${flag.char ? `-${flag.char}, ` : '    '}--${name}${flag.kind === 'value' ? ` ${flag.helpValue}` : ''}`
    const notes = []
    if (flag.kind === 'value' && flag.required) notes.push('required')
    if (flag.kind === 'value' && flag.default !== undefined) notes.push(`default ${flag.default}`)
    if (flag.kind === 'value' && flag.options) notes.push(`one of ${flag.options.join(', ')}`)
    rows.push([names, notes.length > 0 ? `${flag.description} (${notes.join('; ')})` : flag.description])
  }

  if (rows.length > 0) {
    const width = Math.max(...rows.map(([left]) => left.length))
    lines.push('', 'arguments and flags:', ...rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`))
  }

  // As REPL lines: the binary's name dropped, and shell pipelines left to the command line.
  const examples = spec.examples.filter((example) => !example.includes(' | ')).map((example) => example.replace(/^vhost-iotlb /, ''))
  if (examples.length > 0) lines.push('', 'examples:', ...examples.map((example) => `  ${example}`))

  return lines
}
