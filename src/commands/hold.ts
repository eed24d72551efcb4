import spec from '../cli/specs/hold.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
