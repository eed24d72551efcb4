import {deviceFlag} from '../common.js'
import {defineCommand} from '../spec.js'

export default defineCommand({
  id: 'repl',
  summary: 'An interactive shell on one open device: completion, history, and misses answered by hand.',
  description:
    'Runs the same commands with the same flags as the command line, one per line, on a device opened once (a real device\'s fd stays open between lines). At a terminal: line editing, Tab completion of commands, flags and values, `help` and `help COMMAND`, and history kept in $VHOST_IOTLB_HISTORY (default: `history` beside the state file). A translate that misses offers to answer it as userspace would: the UPDATE completes the request and the translation finishes. An update missing flags asks for them. Ctrl-C clears the line; exit or Ctrl-D leaves with status 0. With stdin from a pipe or a file it runs the lines without prompts and stops at the first failure with <stdin>:LINE: message unless --force.',
  examples: ['vhost-iotlb repl', 'vhost-iotlb repl --device emu:/tmp/iotlb.json', "printf 'set-fd 5\\ndump\\n' | vhost-iotlb repl"],
  args: [],
  flags: {
    force: {kind: 'boolean', char: 'f', description: 'input from a pipe: go on after a failing line; exit 1 at the end if any failed'},
    device: deviceFlag,
  },
  async run({flags}, context) {
    const {runRepl} = await import('../../repl/shell.js')
    return runRepl({device: flags.device, force: flags.force}, context)
  },
})
