import spec from '../cli/specs/batch.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
