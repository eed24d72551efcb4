/**
 * The entry bin/run.js calls first. Commands run here without loading oclif, whose start-up
 * alone costs more than the whole command. Help, completion, the version and global flags
 * return false and go to oclif. VHOST_IOTLB_OCLIF=1 sends everything to oclif (the parity
 * tests use it); oclif reports unknown commands through the same dispatcher (not-found.ts).
 */
import {runOnce} from './run.js'

const HELP = new Set(['--help', '-h'])
/** Commands oclif and its plugins own. */
const OCLIF = new Set(['', 'help', 'autocomplete', 'version'])

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const [id = ''] = argv
  if (env.VHOST_IOTLB_OCLIF === '1' || OCLIF.has(id) || id.startsWith('-') || id.includes(':')) return false
  const end = argv.indexOf('--')
  if (argv.some((token, index) => HELP.has(token) && (end === -1 || index < end))) return false
  process.exitCode = await runOnce(argv)
  return true
}
