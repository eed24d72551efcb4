import spec from '../cli/specs/dump.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
