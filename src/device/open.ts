/**
 * From a `--device` spec to an open {@link IotlbDevice}. Only the backend asked for is loaded:
 * the kernel backend pulls in the FFI library, which the emulated device never needs.
 */
import type {IotlbDevice} from './device.js'
import {EmulatedDevice} from './emulated/device.js'
import {defaultStatePath} from './emulated/store.js'
import {DeviceError} from './errors.js'

export interface OpenOptions {
  /** Keep the device for a whole session (batch): lock the state file once, flush at the end. */
  hold?: boolean
  env?: NodeJS.ProcessEnv
}

export type DeviceTarget = {kind: 'emulated'; path: string} | {kind: 'kernel'; path: string} | {kind: 'remote'; socket: string}

export function resolveDevice(spec: string, env: NodeJS.ProcessEnv = process.env): DeviceTarget {
  if (spec === 'emu') return {kind: 'emulated', path: defaultStatePath(env)}
  if (spec.startsWith('emu:')) return {kind: 'emulated', path: spec.slice(4)}
  if (spec.startsWith('unix:')) return {kind: 'remote', socket: spec.slice(5)}
  return {kind: 'kernel', path: spec}
}

export async function openDevice(spec: string, options: OpenOptions = {}): Promise<IotlbDevice> {
  const target = resolveDevice(spec, options.env)
  switch (target.kind) {
    case 'emulated': {
      return EmulatedDevice.open(target.path, spec, {hold: options.hold})
    }

    case 'remote': {
      // A connection, not the device: closing it leaves the holder's device open.
      return (await import('./remote/client.js')).RemoteDevice.connect(target.socket, spec)
    }

    case 'kernel': {
      // Behind a dynamic import: the FFI (koffi) loads only for real devices.
      return (await import('./kernel/device.js')).KernelDevice.open(target.path, spec, {env: options.env})
    }

    default: {
      throw new DeviceError('open', 'ENODEV', `${spec}: no backend for this kind of device`)
    }
  }
}
