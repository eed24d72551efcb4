import spec from '../cli/specs/exercise.js'
import {oclifCommand} from '../cli/oclif.js'

export default oclifCommand(spec)
