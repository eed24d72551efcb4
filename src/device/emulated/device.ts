/**
 * The emulated RFC device behind {@link IotlbDevice}: the pure model of model.ts, kept in a state
 * file between commands.
 *
 * Two ways to hold it:
 * - per operation (one-shot commands, the REPL): each mutating call locks, reloads, applies,
 *   publishes and unlocks, so concurrent processes interleave without losing updates;
 * - held (batch): locked and loaded once, saved by flush() and close().
 *
 * Every model operation either throws before changing anything or completes, so a failed
 * command leaves the file byte-identical.
 */
import {setTimeout as sleep} from 'node:timers/promises'

import type {
  DeviceInfo,
  DumpOptions,
  DumpResult,
  ExerciseResult,
  InvalidateRequest,
  InvalidateResult,
  IotlbDevice,
  IotlbEvent,
  ListenOptions,
  ListenResult,
  ProbeResult,
  ResetResult,
  SetFdResult,
  SetRequestEntryResult,
  TranslateOptions,
  TranslateResult,
  UpdateRequest,
  UpdateResult,
  Warning,
} from '../device.js'
import {
  type IotlbEntry,
  type ModelName,
  PAGE_MASK,
  PAGE_SIZE,
  VHOST_IOTLB_INVALID,
  VHOST_IOTLB_INVALIDATE,
  VHOST_IOTLB_MISS,
  VHOST_IOTLB_SIZE,
  VHOST_IOTLB_VALID,
  cloneEntry,
  encodeEntry,
} from '../entry.js'
import {DeviceError, StateFileError, UsageError} from '../errors.js'
import {ListenTally} from '../listen.js'
import {LEN_MAX, type ModelState, RfcIotlb, TranslateWalk, freshState} from './model.js'
import {serializeState} from './state.js'
import {type Loaded, StateLock, loadState, saveState, unchangedSince} from './store.js'

/** How often a listener looks at the state file: a miss is seen within this many ms. */
const LISTEN_POLL_MS = 20

export interface EmulatedOptions {
  /** Lock and load once for the device's lifetime (batch). */
  hold?: boolean
  lockTimeoutMs?: number
}

export class EmulatedDevice implements IotlbDevice {
  readonly info: DeviceInfo
  private loaded: Loaded = {state: undefined, snapshot: undefined}
  private heldLock: StateLock | undefined
  private dirty = false

  private constructor(
    readonly path: string,
    spec: string,
    private readonly options: EmulatedOptions,
  ) {
    this.info = {kind: 'emulated', spec, model: 'rfc'}
  }

  static async open(path: string, spec: string, options: EmulatedOptions = {}): Promise<EmulatedDevice> {
    const device = new EmulatedDevice(path, spec, options)
    if (options.hold) device.heldLock = await StateLock.acquire(path, options.lockTimeoutMs)
    try {
      device.refresh()
    } catch (error) {
      device.heldLock?.release()
      throw error
    }

    return device
  }

  /** Re-reads the file unless it is unchanged since the last read or write. */
  private refresh(): ModelState {
    if (!this.loaded.state || !unchangedSince(this.path, this.loaded.snapshot)) {
      const loaded = loadState(this.path)
      if (loaded.state) {
        this.loaded = loaded
      } else {
        // No file is a fresh device; saving one unchanged would create a file for nothing.
        const state = freshState('rfc')
        this.loaded = {state, snapshot: {text: serializeState(state), stamp: ''}}
      }
    }

    const state = this.loaded.state!
    this.info.model = state.model
    return state
  }

  /** Runs `apply` on current state and publishes the result, under the lock. */
  private async mutate<T>(apply: (model: RfcIotlb) => T): Promise<T> {
    if (this.heldLock) {
      const result = apply(new RfcIotlb(this.loaded.state!))
      this.dirty = true
      this.info.model = this.loaded.state!.model
      return result
    }

    const lock = await StateLock.acquire(this.path, this.options.lockTimeoutMs)
    try {
      const state = this.refresh()
      const result = apply(new RfcIotlb(state))
      this.publish(lock, state)
      return result
    } catch (error) {
      // The in-memory copy may be ahead of the file now; read it again next time.
      this.loaded = {state: undefined, snapshot: undefined}
      throw error
    } finally {
      lock.release()
    }
  }

  private publish(lock: StateLock, state: ModelState): void {
    if (!lock.held()) {
      throw new StateFileError('ELOCKLOST', this.path, 'lost its lock to another process; nothing written')
    }

    this.loaded = {state, snapshot: saveState(this.path, state, this.loaded.snapshot)}
    this.info.model = state.model
  }

  private read(): ModelState {
    return this.heldLock ? this.loaded.state! : this.refresh()
  }

  async setIotlbFd(fd: number | 'auto'): Promise<SetFdResult> {
    if (fd === 'auto') {
      throw new UsageError('set-fd: the emulated device records the fd number userspace passes; give it (or -1 to clear)')
    }

    const iotlb_fd = await this.mutate((model) => model.setIotlbFd(fd))
    return {iotlb_fd}
  }

  async setRequestEntry(address: bigint | 'auto'): Promise<SetRequestEntryResult> {
    if (address === 'auto') {
      throw new UsageError('set-request-entry: the emulated device has no memory to allocate; give the user address the kernel would write to')
    }

    const request_entry = await this.mutate((model) => model.setRequestEntry(address))
    return {request_entry}
  }

  async update(request: UpdateRequest): Promise<UpdateResult> {
    if (request.userspace_addr === 'auto') {
      throw new UsageError('update: the emulated device needs --uaddr ADDR, the user address the entry maps to')
    }

    const entry: IotlbEntry = {
      iova: request.iova,
      size: request.size,
      userspace_addr: request.userspace_addr,
      perm: request.perm,
      type: request.type,
      valid: request.valid ? VHOST_IOTLB_VALID : VHOST_IOTLB_INVALID,
      u8_padding: 0,
      padding: 0,
    }
    const {slot, completed} = await this.mutate((model) => model.updateIotlb(entry))
    const warnings: Warning[] = []
    if ((request.iova & (PAGE_SIZE - 1n)) !== 0n) {
      warnings.push({
        code: 'unaligned-iova',
        message: `iova 0x${request.iova.toString(16)} is not page-aligned: translate_iotlb() compares a slot with iova & PAGE_MASK (0x${(request.iova & PAGE_MASK).toString(16)}), so this entry can never hit`,
      })
    }

    return {slot, entry, completed_miss: completed, ...(warnings.length > 0 ? {warnings} : {})}
  }

  async invalidate(request: InvalidateRequest): Promise<InvalidateResult> {
    if (request.size !== undefined && request.size !== 0n) {
      throw new UsageError('invalidate: the RFC invalidates one slot by exact iova and has no range; --size is for upstream devices')
    }

    const entry: IotlbEntry = {
      iova: request.iova,
      size: 0n,
      userspace_addr: 0n,
      perm: 0,
      type: VHOST_IOTLB_INVALIDATE,
      valid: VHOST_IOTLB_INVALID,
      u8_padding: 0,
      padding: 0,
    }
    const {slot, written} = await this.mutate((model) => model.updateIotlb(entry))
    return {slot, invalidated: written}
  }

  async translate(iova: bigint, len: bigint, options: TranslateOptions = {}): Promise<TranslateResult> {
    if (len > LEN_MAX) throw new DeviceError('translate_iotlb', 'EINVAL', `len 0x${len.toString(16)} does not fit the u32 parameter`)
    const walk = new TranslateWalk(iova, len)
    let result = await this.mutate((model) => walk.run(model))
    while (result.status === 'miss' && options.onMiss) {
      // The kernel's waiter sleeps here; the handler plays userspace and may answer with UPDATE.
      const answered = await options.onMiss(cloneEntry(result.request))
      if (!answered) break
      result = await this.mutate((model) => walk.resume(model))
    }

    return result
  }

  async dump(options: DumpOptions): Promise<DumpResult> {
    const state = this.read()
    const entries = []
    for (let slot = 0; slot < VHOST_IOTLB_SIZE; slot++) {
      const entry = state.iotlb[slot]!
      const shown = options.slot === undefined ? options.all || entry.type !== 0 : slot === options.slot
      if (shown) entries.push({slot, ...entry})
    }

    return {
      model: state.model,
      shadow: false,
      page_size: Number(PAGE_SIZE),
      slots: VHOST_IOTLB_SIZE,
      iotlb_fd: state.iotlb_fd,
      eventfd_signals: state.eventfd_signals,
      request_entry: state.request_entry,
      pending: cloneEntry(state.pending),
      request_bytes: state.request_bytes ? Uint8Array.from(state.request_bytes) : null,
      waiting: new RfcIotlb(state).waiting,
      entries,
    }
  }

  async reset(model: ModelName): Promise<ResetResult> {
    await this.mutate((current) => {
      const fresh = freshState(model)
      Object.assign(current.state, fresh)
    })
    return {model}
  }

  async probe(): Promise<ProbeResult> {
    const state = this.read()
    return {
      spec: this.info.spec,
      kind: 'emulated',
      protocol: 'rfc',
      rfc_ioctls: true,
      features: null,
      backend_features: null,
      access_platform: false,
      device_iotlb: false,
      msg_v1: false,
      msg_v2: false,
      batch: false,
      asid: false,
      msg_version: null,
      notes: [
        `the RFC device emulated in ${this.path}, model ${state.model}`,
        'VHOST_SET_IOTLB_FD, VHOST_SET_IOTLB_REQUEST_ENTRY and VHOST_UPDATE_IOTLB as in the patch; no feature negotiation (the RFC has none)',
      ],
    }
  }

  /**
   * The userspace side of the RFC: waits for the eventfd count to rise (other processes'
   * `translate` posting misses to the state file) and reads the request at the request entry.
   * A miss already outstanding when listening starts is reported first, as an eventfd with a
   * non-zero count would be.
   */
  async listen(options: ListenOptions): Promise<ListenResult> {
    const {signal} = options
    let seen = -1
    const tally = new ListenTally(options)
    while (!signal.aborted) {
      const state = this.read()
      if (state.eventfd_signals !== seen && state.pending.type === VHOST_IOTLB_MISS) {
        seen = state.eventfd_signals
        const event: IotlbEvent = {
          type: 'miss',
          iova: state.pending.iova,
          perm: state.pending.perm,
          raw: state.request_bytes ? Uint8Array.from(state.request_bytes) : encodeEntry(state.pending),
        }
        if (await tally.deliver(event)) return tally.result('count')
        continue
      }

      seen = state.eventfd_signals
      try {
        await sleep(LISTEN_POLL_MS, undefined, {signal})
      } catch {
        break
      }
    }

    return tally.result('signal')
  }

  async exercise(): Promise<ExerciseResult> {
    throw new DeviceError('exercise', 'EOPNOTSUPP', 'the emulated RFC device has no virtqueue to kick; use translate')
  }

  async flush(): Promise<void> {
    if (this.heldLock && this.dirty) {
      this.publish(this.heldLock, this.loaded.state!)
      this.dirty = false
    }
  }

  async close(): Promise<void> {
    try {
      await this.flush()
    } finally {
      this.heldLock?.release()
      this.heldLock = undefined
    }
  }
}

