import * as z from 'zod/mini'

import {MODELS, showInput} from '../../device/entry.js'
import {deviceFlags} from '../common.js'
import {type Result, defineCommand} from '../spec.js'

const modelSchema = z.string().check(
  z.refine((text) => (MODELS as readonly string[]).includes(text), {
    error: (issue) => `--model: ${showInput(issue.input)} is not a model (rfc, fixed)`,
  }),
) as unknown as z.ZodMiniType<(typeof MODELS)[number], string>

export default defineCommand({
  id: 'reset',
  summary: 'Start over with a fresh device.',
  description:
    'The emulated device returns to what vhost_dev_init() leaves: every slot zeroed and INVALID, no fd, no request entry, pending type INVALIDATE. --model picks the arithmetic: rfc (the patch, exactly) or fixed (the entry\'s own length; no stale fields in miss requests). On a real device every mapping this tool made is invalidated.',
  examples: ['vhost-iotlb reset', 'vhost-iotlb reset --model fixed --json', 'vhost-iotlb reset --device emu:/tmp/iotlb.json'],
  args: [],
  flags: {
    model: {kind: 'value', description: 'rfc or fixed', helpValue: 'MODEL', schema: modelSchema, default: 'rfc', options: MODELS},
    ...deviceFlags,
  },
  async run({flags}, context) {
    const device = await context.device(flags.device)
    const result = await device.reset(flags.model)
    if (result.invalidated === undefined) {
      const fresh: Result = {json: {model: result.model}, text: () => [`fresh device, model ${result.model}`]}
      return fresh
    }

    // A real device has no reset: say what was done instead.
    const n = result.invalidated
    return {
      json: {model: result.model, invalidated: n},
      text: () => [`${n} mapping${n === 1 ? '' : 's'} this tool made invalidated; a real device cannot be reset otherwise (model ${result.model})`],
      warnings: result.warnings,
    }
  },
})
