/**
 * Flags and argument schemas shared by the device commands.
 */
import * as z from 'zod/mini'

import {showInput} from '../device/entry.js'
import type {BooleanFlag, ValueFlag} from './spec.js'

const DEVICE_SPEC = /^(?:emu|emu:.+|unix:.+|\/.+|\.{1,2}\/.+)$/s

export const deviceSpecSchema = z.string().check(
  z.refine((text) => DEVICE_SPEC.test(text) && !text.includes('\0'), {
    error: (issue) =>
      `--device: ${showInput(issue.input)} is not a device (emu, emu:PATH, unix:PATH, or a character device path such as /dev/vhost-net)`,
  }),
)

export const deviceFlag = {
  kind: 'value',
  char: 'd',
  description: 'emu (default: the emulated RFC device), emu:PATH (emulated, kept in PATH), a vhost character device (/dev/vhost-net), or unix:PATH (a device held by `vhost-iotlb hold`)',
  helpValue: 'SPEC',
  schema: deviceSpecSchema,
  default: 'emu',
  env: 'VHOST_IOTLB_DEVICE',
} satisfies ValueFlag<string>

export const jsonFlag = {
  kind: 'boolean',
  description: 'print one JSON document on stdout (u64s as "0x..." strings); diagnostics stay on stderr',
} satisfies BooleanFlag

export const deviceFlags = {device: deviceFlag, json: jsonFlag} as const

const FD_TEXT = /^(?:-1|0|[1-9][0-9]*|auto)$/

/** An fd as VHOST_SET_IOTLB_FD takes it: an int >= -1, or `auto` for one the tool creates. */
export const fdSchema = z.pipe(
  z.string().check(
    z.refine((text) => FD_TEXT.test(text) && (text === 'auto' || Number(text) <= 0x7fff_ffff), {
      error: (issue) => `FD: ${showInput(issue.input)} is not an fd (an int from -1 to 2147483647, -1 clears; or auto)`,
    }),
  ),
  z.transform((text: string): number | 'auto' => (text === 'auto' ? 'auto' : Number(text))),
)
