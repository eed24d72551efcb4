/**
 * How a command is declared, once, for every way it runs: the one-shot command line (directly or
 * through oclif), batch files and the REPL. The argv parser, oclif's help and manifest, and the
 * REPL's completion all read these declarations; nothing else describes a flag.
 */
import type * as z from 'zod/mini'

import type {IotlbDevice, MissHandler, Warning} from '../device/device.js'
import type {Json} from '../format/json.js'
import type {Io} from './session.js'

/** A schema from the flag's text to its value. */
export type TextSchema<T = unknown> = z.ZodMiniType<T, string>

export interface BooleanFlag {
  kind: 'boolean'
  char?: string
  description: string
}

export interface ValueFlag<T = unknown> {
  kind: 'value'
  char?: string
  description: string
  /** Placeholder in help: `--iova ADDR`. */
  helpValue: string
  schema: TextSchema<T>
  required?: boolean
  /** Text run through the schema when the flag is absent. */
  default?: string
  /** Environment variable read when the flag is absent. */
  env?: string
  /** Values offered by completion. */
  options?: readonly string[]
}

export type FlagDef = BooleanFlag | ValueFlag

export interface ArgDef<T = unknown> {
  name: string
  description: string
  helpValue: string
  schema: TextSchema<T>
  required: boolean
  default?: string
}

export type FlagValues<F extends Record<string, FlagDef>> = {
  [K in keyof F]: F[K] extends BooleanFlag
    ? boolean
    : F[K] extends ValueFlag<infer T>
      ? F[K] extends {required: true} | {default: string}
        ? T
        : T | undefined
      : never
}

export type ArgValues<A extends readonly ArgDef[]> = {
  [I in A[number] as I['name']]: I extends ArgDef<infer T> ? (I extends {required: true} | {default: string} ? T : T | undefined) : never
}

export interface Input<F extends Record<string, FlagDef> = Record<string, FlagDef>, A extends readonly ArgDef[] = readonly ArgDef[]> {
  flags: FlagValues<F>
  args: ArgValues<A>
}

/** What the REPL adds at a terminal; absent in one-shot runs, pipelines and batch. */
export interface Interaction {
  onMiss?: MissHandler
  /** Asks for required flags that were not given; returns their text, keyed by flag name. */
  askMissing?(command: string, missing: Array<{name: string; flag: ValueFlag}>): Promise<Record<string, string>>
  /**
   * Optional flags that this session's device needs all the same, asked for like missing
   * required ones (update's --uaddr on an emulated device, where real devices default to auto).
   */
  askAlso?(command: string): readonly string[]
}

export interface Context {
  /** The device named by `--device`, opened once per session. */
  device(spec: string): Promise<IotlbDevice>
  interaction?: Interaction
  /** Colour is allowed in text output. */
  color: boolean
  /** Output streams, for commands that stream (batch, listen) instead of returning one result. */
  io: Io
  /** The environment the session parses with. */
  env: NodeJS.ProcessEnv
}

/** A command's result, before it is printed as JSON or text. */
export interface Result {
  json: Json
  /** Lines for a person; may be built lazily (a table). */
  text(): string[] | Promise<string[]>
  warnings?: Warning[]
  /** 0 unless the result itself is a failure (translate fault: 1) or a miss (3). */
  exitCode?: number
  /** The command already printed its output through `context.io` (batch, repl): print nothing more. */
  streamed?: boolean
}

export interface CommandSpec<F extends Record<string, FlagDef> = Record<string, FlagDef>, A extends readonly ArgDef[] = readonly ArgDef[]> {
  id: string
  summary: string
  description: string
  /** Shell lines, `$ ` omitted; `vhost-iotlb` stands for the binary. */
  examples: string[]
  args: A
  flags: F
  run(input: Input<F, A>, context: Context): Promise<Result>
}

export function defineCommand<const F extends Record<string, FlagDef>, const A extends readonly ArgDef[]>(
  spec: CommandSpec<F, A>,
): CommandSpec<F, A> {
  return spec
}
