/**
 * What outlives one command: the open devices, the output streams and, in the REPL, the
 * terminal interaction. A one-shot run is a session of one command; batch and the REPL keep one
 * session for every line, so a real device's fd stays open between lines.
 */
import type {IotlbDevice} from '../device/device.js'
import {UsageError} from '../device/errors.js'
import {openDevice} from '../device/open.js'
import type {Context, Interaction} from './spec.js'

export interface Io {
  out(text: string): void
  err(text: string): void
  /** Colour allowed: stdout is a terminal and NO_COLOR is unset. */
  color: boolean
}

export function processIo(): Io {
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    color: Boolean(process.stdout.isTTY) && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb',
  }
}

export interface SessionOptions {
  io: Io
  /** Lock and load the device once (batch). */
  hold?: boolean
  /** The session's device: lines that name another one are refused. */
  device?: string
  interaction?: Interaction
  env?: NodeJS.ProcessEnv
}

export class Session implements Context {
  readonly io: Io
  readonly interaction?: Interaction
  private readonly devices = new Map<string, IotlbDevice>()

  constructor(private readonly options: SessionOptions) {
    this.io = options.io
    this.interaction = options.interaction
  }

  get color(): boolean {
    return this.io.color
  }

  private boundEnv?: NodeJS.ProcessEnv

  /** The environment lines are parsed with: a bound session answers for VHOST_IOTLB_DEVICE. */
  get env(): NodeJS.ProcessEnv {
    const env = this.options.env ?? process.env
    if (this.options.device === undefined) return env
    // Built once: batch reads it for every line of a million-line trace.
    this.boundEnv ??= {...env, VHOST_IOTLB_DEVICE: this.options.device}
    return this.boundEnv
  }

  async device(spec: string): Promise<IotlbDevice> {
    const fixed = this.options.device
    if (fixed !== undefined && spec !== fixed) {
      throw new UsageError(`--device ${spec}: this session is bound to ${fixed}`)
    }

    const key = fixed ?? spec
    let device = this.devices.get(key)
    if (!device) {
      device = await openDevice(key, {hold: this.options.hold, env: this.env})
      this.devices.set(key, device)
    }

    return device
  }

  /** Saves what succeeded so far, keeping devices open. */
  async flush(): Promise<void> {
    for (const device of this.devices.values()) await device.flush()
  }

  async close(): Promise<void> {
    const devices = [...this.devices.values()]
    this.devices.clear()
    let failure: unknown
    for (const device of devices) {
      try {
        await device.close()
      } catch (error) {
        failure ??= error
      }
    }

    if (failure) throw failure
  }
}
