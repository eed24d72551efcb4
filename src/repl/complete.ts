/**
 * Tab completion from the command declarations: command names, flag names, and the values of
 * flags that list their `options` (perm, type, model). Nothing here knows a command by name.
 *
 * Node's readline calls the completer with the line up to the cursor and replaces the last
 * `substring.length` characters with the common prefix of what we return.
 */
import type {CommandSpec, FlagDef} from '../cli/spec.js'
import {scanWords} from '../cli/shellwords.js'
import {BUILTINS} from './help.js'

export type Completer = (line: string) => [string[], string]

/** Values offered for `--device` though the flag cannot list them all. */
const DEVICE_HINTS = ['emu', 'emu:', '/dev/vhost-net', '/dev/vhost-vsock']

function flagByToken(spec: CommandSpec, token: string): [string, FlagDef] | undefined {
  if (token.startsWith('--')) {
    const name = token.slice(2)
    return Object.hasOwn(spec.flags, name) ? [name, spec.flags[name]!] : undefined
  }

  if (/^-[a-zA-Z]$/.test(token)) return Object.entries(spec.flags).find(([, flag]) => flag.char === token[1])
  return undefined
}

function valuesOf(name: string, flag: FlagDef): readonly string[] {
  if (flag.kind !== 'value') return []
  return flag.options ?? (name === 'device' ? DEVICE_HINTS : [])
}

/** One match gets a trailing space so the next word can follow; several are shown as a list. */
function answer(candidates: readonly string[], typed: string): [string[], string] {
  const hits = candidates.filter((candidate) => candidate.startsWith(typed))
  if (hits.length === 1 && !/[:=]$/.test(hits[0]!)) return [[`${hits[0]!} `], typed]
  return [hits, typed]
}

export function makeCompleter(specs: readonly CommandSpec[]): Completer {
  const byId = new Map(specs.map((spec) => [spec.id, spec]))
  // batch and repl cannot be lines of the REPL: offering them would only lead to an error.
  const commands = [...specs.map((spec) => spec.id).filter((id) => id !== 'batch' && id !== 'repl'), ...Object.keys(BUILTINS)].sort()

  return (line) => {
    const scan = scanWords(line)
    // Inside quotes the word cannot be matched against plain names.
    if (scan.open === 'single' || scan.open === 'double') return [[], '']
    const typed = scan.partial ?? ''
    const raw = scan.partialStart === undefined ? '' : line.slice(scan.partialStart)
    if (raw !== typed) return [[], '']
    const {words} = scan
    if (words.length === 0) return answer(commands, typed)
    if (words[0] === 'help') return words.length === 1 ? answer(commands.filter((id) => byId.has(id)), typed) : [[], typed]
    const spec = byId.get(words[0]!)
    if (!spec) return [[], typed]

    // --flag=partial
    const eq = typed.indexOf('=')
    if (typed.startsWith('--') && eq !== -1) {
      const found = flagByToken(spec, typed.slice(0, eq))
      if (!found) return [[], typed]
      return answer(valuesOf(...found).map((value) => `${typed.slice(0, eq + 1)}${value}`), typed)
    }

    // The value after a flag that takes one.
    const previous = flagByToken(spec, words[words.length - 1]!)
    if (previous && previous[1].kind === 'value') return answer(valuesOf(...previous), typed)

    if (typed !== '' && !typed.startsWith('-')) return [[], typed]
    const given = new Set(words.flatMap((word) => (word.startsWith('--') ? [word.slice(2).split('=')[0]!] : [])))
    const flags = Object.keys(spec.flags)
      .filter((name) => !given.has(name))
      .map((name) => `--${name}`)
    return answer(flags, typed)
  }
}
