import spec from '../cli/specs/probe.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
