import spec from '../cli/specs/reset.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
