/**
 * The one argv parser: command line, batch lines and REPL lines all come through here, and every
 * value goes through its flag's zod schema. It follows the usual conventions (`--flag value`,
 * `--flag=value`, `-d value`, `-dvalue`, `--` ends flags) with one addition the contract needs:
 * a token that is a negative number (`set-fd -1`) is a value, not a flag.
 */
import {UsageError} from '../device/errors.js'
import type {ArgDef, CommandSpec, FlagDef, Input, ValueFlag} from './spec.js'

const NEGATIVE_NUMBER = /^-\d/

export interface ParseOptions {
  env?: NodeJS.ProcessEnv
  /** Called with required flags that are missing; returns their text (REPL prompts). */
  fillMissing?: (missing: Array<{name: string; flag: ValueFlag}>) => Promise<Record<string, string>>
  /** Optional flags that fillMissing should ask for too when absent. */
  askAlso?: readonly string[]
}

function validate(label: string, schema: {safeParse(input: unknown): {success: boolean; data?: unknown; error?: {issues: Array<{message: string}>}}}, text: string): unknown {
  const parsed = schema.safeParse(text)
  if (parsed.success) return parsed.data
  const message = parsed.error?.issues[0]?.message ?? `${label}: invalid value`
  throw new UsageError(message.startsWith(label) ? message : `${label}: ${message}`)
}

function closest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined
  let bestScore = Number.POSITIVE_INFINITY
  for (const candidate of candidates) {
    const score = distance(name, candidate)
    if (score < bestScore) {
      best = candidate
      bestScore = score
    }
  }

  return bestScore <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

function distance(a: string, b: string): number {
  const row = Array.from({length: b.length + 1}, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const saved = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = saved
    }
  }

  return row[b.length]!
}

function seeHelp(id: string): string {
  return `see: vhost-iotlb ${id} --help`
}

interface Layout {
  names: string[]
  byChar: Map<string, string>
}

// Per declaration, computed once: batch parses the same few commands millions of times.
const layouts = new WeakMap<object, Layout>()

function layoutOf(spec: CommandSpec<any, any>): Layout {
  let layout = layouts.get(spec)
  if (!layout) {
    const names = Object.keys(spec.flags)
    const byChar = new Map<string, string>()
    for (const name of names) {
      const char = (spec.flags as Record<string, FlagDef>)[name]!.char
      if (char) byChar.set(char, name)
    }

    layout = {names, byChar}
    layouts.set(spec, layout)
  }

  return layout
}

/** Splits argv into flag texts and positionals, then validates each through its schema. */
export async function parseArgv<F extends Record<string, FlagDef>, A extends readonly ArgDef[]>(
  spec: CommandSpec<F, A>,
  argv: readonly string[],
  options: ParseOptions = {},
): Promise<Input<F, A>> {
  const {names, byChar} = layoutOf(spec)
  const texts = new Map<string, string>()
  const booleans = new Set<string>()
  const positionals: string[] = []

  const take = (name: string, inline: string | undefined, index: number): number => {
    const flag = spec.flags[name]!
    if (texts.has(name) || booleans.has(name)) throw new UsageError(`${spec.id}: --${name} given more than once`)
    if (flag.kind === 'boolean') {
      if (inline !== undefined) throw new UsageError(`${spec.id}: --${name} takes no value (got ${JSON.stringify(inline)})`)
      booleans.add(name)
      return index
    }

    if (inline !== undefined) {
      texts.set(name, inline)
      return index
    }

    const value = argv[index + 1]
    if (value === undefined || (value.startsWith('-') && value !== '-' && !NEGATIVE_NUMBER.test(value))) {
      throw new UsageError(`${spec.id}: --${name} needs a value (${flag.helpValue})`)
    }

    texts.set(name, value)
    return index + 1
  }

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!
    if (token === '--') {
      positionals.push(...argv.slice(i + 1))
      break
    }

    if (token.startsWith('--')) {
      const eq = token.indexOf('=')
      const name = eq === -1 ? token.slice(2) : token.slice(2, eq)
      if (!Object.hasOwn(spec.flags, name)) {
        const hint = closest(name, names)
        throw new UsageError(`${spec.id}: unknown flag --${name}${hint ? ` (did you mean --${hint}?)` : ''}; ${seeHelp(spec.id)}`)
      }

      i = take(name, eq === -1 ? undefined : token.slice(eq + 1), i)
      continue
    }

    if (token.startsWith('-') && token.length > 1 && !NEGATIVE_NUMBER.test(token)) {
      const name = byChar.get(token[1]!)
      if (!name) throw new UsageError(`${spec.id}: unknown flag ${token.slice(0, 2)}; ${seeHelp(spec.id)}`)
      const rest = token.slice(2)
      i = take(name, rest === '' ? undefined : rest.replace(/^=/, ''), i)
      continue
    }

    positionals.push(token)
  }

  if (positionals.length > spec.args.length) {
    const extra = positionals.slice(spec.args.length).map((p) => JSON.stringify(p)).join(' ')
    throw new UsageError(`${spec.id}: unexpected argument${positionals.length - spec.args.length > 1 ? 's' : ''} ${extra}; ${seeHelp(spec.id)}`)
  }

  const env = options.env ?? process.env
  const missing: Array<{name: string; flag: ValueFlag}> = []
  for (const name of names) {
    const flag = spec.flags[name]!
    if (flag.kind === 'value' && !texts.has(name)) {
      const fromEnv = flag.env ? env[flag.env] : undefined
      if (fromEnv !== undefined && fromEnv !== '') texts.set(name, fromEnv)
      else if (flag.required || (options.fillMissing && options.askAlso?.includes(name))) missing.push({name, flag})
    }
  }

  if (missing.length > 0 && options.fillMissing) {
    const given = await options.fillMissing(missing)
    for (const {name} of missing) if (given[name] !== undefined) texts.set(name, given[name])
  }

  const stillMissing = missing.filter(({name}) => !texts.has(name))
  if (stillMissing.length > 0) {
    const list = stillMissing.map(({name, flag}) => `--${name} ${flag.helpValue}`).join(', ')
    throw new UsageError(`${spec.id}: missing ${list}; ${seeHelp(spec.id)}`)
  }

  const flags: Record<string, unknown> = {}
  for (const name of names) {
    const flag = spec.flags[name]!
    if (flag.kind === 'boolean') {
      flags[name] = booleans.has(name)
      continue
    }

    const text = texts.get(name) ?? flag.default
    flags[name] = text === undefined ? undefined : validate(`--${name}`, flag.schema, text)
  }

  const args: Record<string, unknown> = {}
  for (const [index, arg] of spec.args.entries()) {
    const text = positionals[index] ?? arg.default
    if (text === undefined) {
      if (arg.required) throw new UsageError(`${spec.id}: missing ${arg.helpValue}; ${seeHelp(spec.id)}`)
      args[arg.name] = undefined
      continue
    }

    args[arg.name] = validate(arg.helpValue, arg.schema, text)
  }

  return {flags, args} as Input<F, A>
}
