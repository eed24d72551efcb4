import spec from '../cli/specs/set-request-entry.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
