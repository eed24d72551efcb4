import spec from '../cli/specs/listen.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
