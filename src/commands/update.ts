import spec from '../cli/specs/update.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
