import spec from '../cli/specs/repl.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
