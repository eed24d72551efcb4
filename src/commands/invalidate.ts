import spec from '../cli/specs/invalidate.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
