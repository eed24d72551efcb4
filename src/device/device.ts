/**
 * The one interface every backend implements: the emulated RFC device, a real vhost character
 * device, and a device held by another process behind a socket. Commands call these operations
 * and never ask which backend they hold.
 *
 * Results are plain data with bigint u64s; src/format turns them into JSON and text.
 */
import type {IotlbEntry, ModelName} from './entry.js'

/** A note that a known defect of the patch changed this result, or a caveat the user needs. */
export interface Warning {
  code: string
  message: string
}

export interface DeviceInfo {
  kind: 'emulated' | 'kernel' | 'remote'
  /** The `--device` spec the device was opened with. */
  spec: string
  /** Emulated: which arithmetic; kernel: which protocol it speaks. */
  model: string
}

export interface SetFdResult {
  iotlb_fd: number | null
  warnings?: Warning[]
}

export interface SetRequestEntryResult {
  request_entry: bigint
  warnings?: Warning[]
}

export interface UpdateRequest {
  iova: bigint
  size: bigint
  /** 'auto': backed by memory the tool allocates (real devices only). */
  userspace_addr: bigint | 'auto'
  perm: number
  /** Raw `flags.type`; VHOST_IOTLB_UPDATE unless the user provokes another. */
  type: number
  valid: boolean
  /** The user accepts that a real kernel will access a raw userspace_addr of this process. */
  unsafe_uaddr?: boolean
}

export interface UpdateResult {
  slot: number
  entry: IotlbEntry
  completed_miss: boolean
  warnings?: Warning[]
}

export interface InvalidateRequest {
  iova: bigint
  /** Upstream INVALIDATE takes a range; the RFC matches one iova. */
  size?: bigint
}

export interface InvalidateResult {
  slot: number
  invalidated: boolean
  /** Upstream devices: how many ranges of the shadow the invalidation removed. */
  removed?: number
  warnings?: Warning[]
}

export interface IovSegment {
  iova: bigint
  userspace_addr: bigint
  len: bigint
}

/**
 * `shadow`: worked out from the tool's record of what it wrote to a real device, which the kernel
 * cannot be asked about; a shadow miss means the kernel would post a MISS, not that it did.
 */
export type TranslateResult =
  | {status: 'ok'; iova: bigint; len: bigint; iov: IovSegment[]; shadow?: boolean; warnings?: Warning[]}
  | {status: 'miss'; iova: bigint; request: IotlbEntry; request_bytes: Uint8Array; shadow?: boolean; warnings?: Warning[]}
  | {status: 'fault'; errno: string; reason: string; shadow?: boolean; warnings?: Warning[]}

/**
 * Called when a translation misses and the request has been posted. Resolve true once an UPDATE
 * for the page has been applied (the kernel's waiter then wakes), false to leave it pending.
 */
export type MissHandler = (request: IotlbEntry) => Promise<boolean>

export interface TranslateOptions {
  onMiss?: MissHandler
}

export interface SlotEntry extends IotlbEntry {
  slot: number
}

export interface DumpOptions {
  all?: boolean
  slot?: number
}

export interface DumpResult {
  model: string
  /** True when the table is the tool's record of what it wrote, not read back from a kernel. */
  shadow: boolean
  page_size: number
  slots: number
  iotlb_fd: number | null
  eventfd_signals: number
  request_entry: bigint | null
  pending: IotlbEntry
  /** The 32 bytes the device last wrote at the request entry (RFC), if any. */
  request_bytes: Uint8Array | null
  waiting: boolean
  entries: SlotEntry[]
  warnings?: Warning[]
}

export interface ResetResult {
  /** Emulated: the arithmetic chosen; real devices: the protocol, which a reset cannot change. */
  model: ModelName | string
  /** Real devices: how many mappings this tool made were invalidated (the kernel has no reset). */
  invalidated?: number
  warnings?: Warning[]
}

/** What a device supports, as far as it can be asked. */
export interface ProbeResult {
  spec: string
  kind: DeviceInfo['kind']
  /** `rfc`: the RFC's ioctls; `upstream`: vhost_msg over read/write on the fd. */
  protocol: 'rfc' | 'upstream'
  rfc_ioctls: boolean
  /** VHOST_GET_FEATURES, when the device has it. */
  features: bigint | null
  /** VHOST_GET_BACKEND_FEATURES, when the device has it. */
  backend_features: bigint | null
  /** VIRTIO_F_ACCESS_PLATFORM (bit 33) offered: device IOTLB available upstream. */
  access_platform: boolean
  /** VHOST_F_DEVICE_IOTLB (bit 63) offered (older kernels). */
  device_iotlb: boolean
  msg_v1: boolean
  msg_v2: boolean
  batch: boolean
  asid: boolean
  /** Which message version this tool writes, or null when messages are not used. */
  msg_version: 1 | 2 | null
  notes: string[]
}

/** A request the device posted: a miss, or (upstream) an access failure. */
export interface IotlbEvent {
  type: 'miss' | 'access_fail'
  iova: bigint
  perm: number
  /** Upstream v2: the address space id. */
  asid?: number
  /** The bytes as read from the device (32-byte entry, or 72-byte message). */
  raw: Uint8Array
}

export interface ListenOptions {
  /** Stops the loop; resolved promptly. */
  signal: AbortSignal
  /** Answers an event (an UPDATE through this device), or returns undefined to leave it. */
  answer?(event: IotlbEvent): Promise<UpdateResult | undefined>
  /** Called for each event, in order, after `answer` ran. */
  onEvent(event: IotlbEvent, answer: UpdateResult | undefined): void | Promise<void>
  /** Stop after this many misses. */
  count?: number
}

export interface ListenResult {
  events: number
  answered: number
  stopped: 'count' | 'signal'
}

/** The virtqueue `exercise` set up on a real vhost-net device to make the kernel miss. */
export interface ExerciseSetup {
  queue: number
  /** Ring entries (VHOST_SET_VRING_NUM). */
  num: number
  /** The ring addresses given to VHOST_SET_VRING_ADDR: IOVAs, translated through the IOTLB. */
  desc: bigint
  avail: bigint
  used: bigint
  /** The tap interface the kernel created for the backend. */
  tap: string
  /** The UPDATE that mapped the used ring before the backend was attached. */
  used_mapped: UpdateResult
}

export interface ExerciseOptions {
  signal: AbortSignal
  /** Called once the queue is set up and kicked, before the first miss is read. */
  onSetup?(setup: ExerciseSetup): void | Promise<void>
  /** Answers a miss (an UPDATE through this device), or returns undefined to leave it. */
  answer?(event: IotlbEvent): Promise<UpdateResult | undefined>
  /** Used when `answer` is absent: the REPL asks a person, who answers with an `update` line. */
  onMiss?: MissHandler
  /** Called for each event, in order, after it was answered (or not). */
  onEvent(event: IotlbEvent, answer: UpdateResult | undefined): void | Promise<void>
  /** Stop after this many misses; 0 sets up and kicks but reads nothing. */
  count?: number
  /** After an answer, how long the kernel may stay silent before it counts as quiet. */
  quietMs?: number
}

export interface ExerciseResult {
  setup: ExerciseSetup
  events: number
  answered: number
  /**
   * `quiet`: no further message came; `count`: --count reached; `unanswered`: a miss was left
   * without an answer, so the kernel waits; `signal`: interrupted.
   */
  stopped: 'quiet' | 'count' | 'unanswered' | 'signal'
  /** How long the kernel had been silent when the run ended as quiet. */
  quiet_ms?: number
}

export interface IotlbDevice {
  readonly info: DeviceInfo
  /** VHOST_SET_IOTLB_FD; -1 clears; 'auto': an eventfd the tool creates and owns (real devices). */
  setIotlbFd(fd: number | 'auto'): Promise<SetFdResult>
  /** VHOST_SET_IOTLB_REQUEST_ENTRY; 'auto' lets the tool allocate the buffer the kernel writes. */
  setRequestEntry(address: bigint | 'auto'): Promise<SetRequestEntryResult>
  /** VHOST_UPDATE_IOTLB with the given type (UPDATE normally). */
  update(request: UpdateRequest): Promise<UpdateResult>
  /** VHOST_UPDATE_IOTLB with type INVALIDATE. */
  invalidate(request: InvalidateRequest): Promise<InvalidateResult>
  /** translate_iotlb(): what the device's DMA of `len` bytes at `iova` would use. */
  translate(iova: bigint, len: bigint, options?: TranslateOptions): Promise<TranslateResult>
  dump(options: DumpOptions): Promise<DumpResult>
  reset(model: ModelName): Promise<ResetResult>
  /** What the device offers: protocol, features, message versions. */
  probe(): Promise<ProbeResult>
  /** Reports (and with `answer`, answers) each request the device posts until stopped. */
  listen(options: ListenOptions): Promise<ListenResult>
  /**
   * Sets up a virtqueue whose rings the IOTLB cannot translate yet, kicks it, and reports (and
   * answers) the misses the kernel posts. Real vhost-net devices only; others refuse.
   */
  exercise?(options: ExerciseOptions): Promise<ExerciseResult>
  /** Makes what succeeded durable (state file) without closing. */
  flush(): Promise<void>
  close(): Promise<void>
}
