import spec from '../cli/specs/translate.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
