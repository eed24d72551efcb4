import spec from '../cli/specs/set-fd.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
