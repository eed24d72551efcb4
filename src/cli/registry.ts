/**
 * Every command the dispatcher knows, loaded on demand so a one-shot run imports only its own.
 * The oclif commands in src/commands are adapters over the same declarations; a test keeps the
 * two lists, and the manifest, in step.
 */
import type {CommandSpec} from './spec.js'

type Loader = () => Promise<{default: CommandSpec<any, any>}>

export const COMMANDS: Readonly<Record<string, Loader>> = {
  'set-fd': () => import('./specs/set-fd.js'),
  'set-request-entry': () => import('./specs/set-request-entry.js'),
  update: () => import('./specs/update.js'),
  invalidate: () => import('./specs/invalidate.js'),
  translate: () => import('./specs/translate.js'),
  dump: () => import('./specs/dump.js'),
  reset: () => import('./specs/reset.js'),
  probe: () => import('./specs/probe.js'),
  listen: () => import('./specs/listen.js'),
  exercise: () => import('./specs/exercise.js'),
  batch: () => import('./specs/batch.js'),
  repl: () => import('./specs/repl.js'),
  hold: () => import('./specs/hold.js'),
}

export function isCommand(id: string): boolean {
  return Object.hasOwn(COMMANDS, id)
}

const loaded = new Map<string, CommandSpec<any, any>>()

export async function loadCommand(id: string): Promise<CommandSpec<any, any>> {
  let spec = loaded.get(id)
  if (!spec) {
    spec = (await COMMANDS[id]!()).default
    loaded.set(id, spec)
  }

  return spec
}
