/**
 * `--device unix:PATH`: a device held by `vhost-iotlb hold` in another process, reached over its
 * socket (protocol in ./wire.ts). Each operation is a call the holder runs on its device, so the
 * device, and a real kernel's IOTLB with it, outlives this process.
 *
 * The holder's errors come back as the same classes with the same codes and messages, so a command
 * through the holder prints and exits as it would on the device itself. Closing this device closes
 * the connection; the held device stays open.
 */
import * as net from 'node:net'
import {resolve} from 'node:path'

import type {
  DeviceInfo,
  DumpOptions,
  DumpResult,
  ExerciseOptions,
  ExerciseResult,
  ExerciseSetup,
  InvalidateRequest,
  InvalidateResult,
  IotlbDevice,
  IotlbEvent,
  ListenOptions,
  ListenResult,
  MissHandler,
  ProbeResult,
  ResetResult,
  SetFdResult,
  SetRequestEntryResult,
  TranslateOptions,
  TranslateResult,
  UpdateRequest,
  UpdateResult,
} from '../device.js'
import type {IotlbEntry, ModelName} from '../entry.js'
import {DeviceError} from '../errors.js'
import {
  type HelloDevice,
  LineSplitter,
  MAX_REPLY_LINE,
  METHODS,
  type MethodName,
  type MethodParams,
  type MethodResult,
  PROTOCOL_VERSION,
  ProtocolError,
  type ServerMessage,
  encodeLine,
  errorFromWire,
  issueText,
  parseServerLine,
} from './wire.js'

/** Longest a socket address can be (sun_path less its NUL); Node 20 would cut a longer one silently. */
const SOCKET_PATH_MAX = 107
/** A holder that accepts but does not say hello within this is stuck (stopped, or not a holder). */
const HELLO_TIMEOUT_MS = 5000
/** How long close() waits for the holder to see the hang-up before cutting the connection. */
const CLOSE_TIMEOUT_MS = 1000

export interface ConnectOptions {
  helloTimeoutMs?: number
}

/** What the holder said about itself when we connected. */
export interface Holder {
  pid: number
  device: HelloDevice
}

/** Hooks a call can have while it runs: a translate's miss, a listen's or an exercise's events. */
interface Hooks {
  miss?(request: IotlbEntry): Promise<boolean>
  event?(seq: number, event: IotlbEvent): Promise<void>
  setup?(setup: ExerciseSetup): void | Promise<void>
}

/** What listen and exercise have in common: events answered and printed here, as they come. */
interface StreamOptions {
  signal: AbortSignal
  answer?(event: IotlbEvent): Promise<UpdateResult | undefined>
  onEvent(event: IotlbEvent, answer: UpdateResult | undefined): void | Promise<void>
}

interface Pending {
  method: MethodName
  resolve(value: unknown): void
  reject(error: unknown): void
  hooks?: Hooks
  /** Hook work for this call, in order; the call's result waits for it. */
  chain: Promise<void>
  /** A hook failed: the call fails with this once the holder has finished it. */
  failure?: unknown
}

export class RemoteDevice implements IotlbDevice {
  readonly info: DeviceInfo
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly splitter = new LineSplitter(MAX_REPLY_LINE)
  /** Set once the connection is unusable: every later call fails with it. */
  private broken: Error | undefined
  private hello: {resolve(holder: Holder): void; reject(error: unknown): void} | undefined

  private constructor(
    private readonly socket: net.Socket,
    /** The socket path as the user gave it, for messages. */
    private readonly path: string,
    spec: string,
  ) {
    this.info = {kind: 'remote', spec, model: 'unknown'}
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('error', () => {})
    socket.on('close', () => this.fail(new DeviceError(`unix:${path}`, 'ECONNRESET', 'the holder closed the connection')))
  }

  /**
   * Connects to the holder at `socket` (a path; relative to the working directory) and checks that
   * it speaks this protocol version. Throws {@link DeviceError} when nothing holds a device there
   * (`ENOENT`, `ECONNREFUSED`), and {@link ProtocolError} on a version mismatch.
   */
  static async connect(socket: string, spec: string, options: ConnectOptions = {}): Promise<RemoteDevice> {
    const path = resolve(socket)
    if (Buffer.byteLength(path) > SOCKET_PATH_MAX) {
      throw new DeviceError('connect', 'ENAMETOOLONG', `${socket} is longer than the ${SOCKET_PATH_MAX} bytes a unix socket address holds`)
    }

    const connection = net.connect(path)
    await new Promise<void>((done, reject) => {
      connection.once('connect', () => {
        connection.off('error', reject)
        done()
      })
      connection.once('error', (error) => reject(connectError(socket, error)))
    })
    const device = new RemoteDevice(connection, socket, spec)
    try {
      const holder = await device.greet(options.helloTimeoutMs ?? HELLO_TIMEOUT_MS)
      device.holder = holder
      device.info.model = holder.device.model
    } catch (error) {
      connection.destroy()
      throw error
    }

    return device
  }

  /** The holder's pid and device, as it said when we connected. */
  holder: Holder | undefined

  private greet(timeoutMs: number): Promise<Holder> {
    return new Promise<Holder>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new DeviceError('connect', 'ETIMEDOUT', `${this.path} accepted the connection but did not say hello within ${timeoutMs} ms; is it a vhost-iotlb hold?`))
      }, timeoutMs)
      this.hello = {
        resolve(holder) {
          clearTimeout(timer)
          resolve(holder)
        },
        reject(error) {
          clearTimeout(timer)
          reject(error)
        },
      }
      this.write({type: 'hello', version: PROTOCOL_VERSION})
    })
  }

  private write(message: Record<string, unknown>): void {
    if (!this.socket.destroyed) this.socket.write(encodeLine(message))
  }

  private onData(chunk: string): void {
    let messages: ServerMessage[]
    try {
      messages = this.splitter.push(chunk).map((line) => parseServerLine(line))
    } catch (error) {
      // A holder that sends what we cannot read cannot be trusted with what follows either.
      this.fail(error instanceof Error ? error : new ProtocolError(String(error)))
      this.socket.destroy()
      return
    }

    for (const message of messages) this.onMessage(message)
  }

  private onMessage(message: ServerMessage): void {
    switch (message.type) {
      case 'hello': {
        if (message.version === PROTOCOL_VERSION) {
          this.hello?.resolve({pid: message.pid, device: message.device})
        } else {
          this.hello?.reject(
            new ProtocolError(
              `unix:${this.path} speaks protocol ${message.version} and this vhost-iotlb speaks ${PROTOCOL_VERSION}: run hold and the commands from the same version`,
            ),
          )
          this.socket.destroy()
        }

        this.hello = undefined
        return
      }

      case 'error': {
        const error = errorFromWire(message.error)
        if (message.id === null) {
          // About the connection as a whole (our hello, or a line it could not place).
          this.fail(error)
          this.socket.destroy()
          return
        }

        this.settle(message.id, (pending) => pending.reject(pending.failure ?? error))
        return
      }

      case 'result': {
        this.info.model = message.model
        this.settle(message.id, (pending) => {
          if (pending.failure !== undefined) return pending.reject(pending.failure)
          const parsed = METHODS[pending.method].result.safeParse(message.result)
          if (parsed.success) pending.resolve(parsed.data)
          else pending.reject(new ProtocolError(`malformed message: ${pending.method} result.${issueText(parsed.error.issues)}`))
        })
        return
      }

      case 'miss': {
        const {id, request} = message
        this.hook(id, async (pending) => {
          let answered = false
          try {
            answered = pending.hooks?.miss ? await pending.hooks.miss(request) : false
          } catch (error) {
            pending.failure ??= error
          }

          this.write({type: 'miss-answer', id, answered})
        })
        return
      }

      case 'event': {
        const {id, seq, event} = message
        this.hook(id, async (pending) => {
          try {
            if (pending.failure === undefined) await pending.hooks?.event?.(seq, event)
          } catch (error) {
            pending.failure ??= error
            this.write({type: 'cancel', id})
          }
        })
        return
      }

      case 'setup': {
        const {id, setup} = message
        this.hook(id, async (pending) => {
          try {
            await pending.hooks?.setup?.(setup)
          } catch (error) {
            pending.failure ??= error
            this.write({type: 'cancel', id})
          }
        })
      }
    }
  }

  /** Runs hook work for call `id` after the work before it. */
  private hook(id: number, work: (pending: Pending) => Promise<void>): void {
    const pending = this.pending.get(id)
    if (!pending) return
    pending.chain = pending.chain.then(() => work(pending))
  }

  /** Ends call `id` once its hook work is done. */
  private settle(id: number, end: (pending: Pending) => void): void {
    const pending = this.pending.get(id)
    if (!pending) return
    this.pending.delete(id)
    void pending.chain.then(() => end(pending))
  }

  /** The connection is gone or unusable: every call in flight, and every later one, fails. */
  private fail(error: Error): void {
    this.broken ??= error
    this.hello?.reject(error)
    this.hello = undefined
    for (const [id, pending] of this.pending) {
      this.pending.delete(id)
      void pending.chain.then(() => pending.reject(pending.failure ?? error))
    }
  }

  /** Sends a call; `started` learns its id before any reply can arrive. */
  private call<M extends MethodName>(method: M, params: MethodParams<M>, hooks?: Hooks, started?: (id: number) => void): Promise<MethodResult<M>> {
    if (this.broken) return Promise.reject(this.broken)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, {method, resolve: resolve as (value: unknown) => void, reject, hooks, chain: Promise.resolve()})
      try {
        this.write({type: 'call', id, method, params})
      } catch (error) {
        this.pending.delete(id)
        reject(error)
        return
      }

      started?.(id)
    })
  }

  setIotlbFd(fd: number | 'auto'): Promise<SetFdResult> {
    return this.call('setIotlbFd', [fd])
  }

  setRequestEntry(address: bigint | 'auto'): Promise<SetRequestEntryResult> {
    return this.call('setRequestEntry', [address])
  }

  update(request: UpdateRequest): Promise<UpdateResult> {
    return this.call('update', [request])
  }

  invalidate(request: InvalidateRequest): Promise<InvalidateResult> {
    return this.call('invalidate', [request])
  }

  /**
   * With `onMiss`, a miss comes back to this process while the holder's translation waits: the
   * handler answers it (its UPDATE is a call of its own on this connection) and the holder resumes.
   */
  translate(iova: bigint, len: bigint, options: TranslateOptions = {}): Promise<TranslateResult> {
    const onMiss: MissHandler | undefined = options.onMiss
    return this.call('translate', [iova, len, {onMiss: onMiss !== undefined}], onMiss ? {miss: onMiss} : undefined)
  }

  dump(options: DumpOptions): Promise<DumpResult> {
    return this.call('dump', [{all: options.all, slot: options.slot}])
  }

  reset(model: ModelName): Promise<ResetResult> {
    return this.call('reset', [model])
  }

  probe(): Promise<ProbeResult> {
    return this.call('probe', [])
  }

  /**
   * The holder's device listens; each event comes here, where `answer` and `onEvent` run in order,
   * and the answer goes back before the holder looks for the next event. Aborting the signal sends
   * a cancel; the holder then ends the listen and its result arrives as usual.
   */
  listen(options: ListenOptions): Promise<ListenResult> {
    return this.stream('listen', [{count: options.count, answer: options.answer !== undefined}], options)
  }

  /**
   * The held device sets up its virtqueue and walks the misses; the setup, each event and each
   * miss for the miss handler come here as they happen, as with {@link listen}.
   */
  exercise(options: ExerciseOptions): Promise<ExerciseResult> {
    // The device asks onMiss only when there is no answer function; say the same to the holder.
    const onMiss = options.answer ? undefined : options.onMiss
    const params = {count: options.count, quietMs: options.quietMs, answer: options.answer !== undefined, onMiss: onMiss !== undefined}
    return this.stream('exercise', [params], options, {setup: options.onSetup, miss: onMiss})
  }

  private async stream<M extends 'listen' | 'exercise'>(method: M, params: MethodParams<M>, options: StreamOptions, extra: Hooks = {}): Promise<MethodResult<M>> {
    const {signal} = options
    let id: number | undefined
    const cancel = () => {
      if (id !== undefined) this.write({type: 'cancel', id})
    }

    const hooks: Hooks = {
      ...extra,
      event: async (seq, event) => {
        let answer: UpdateResult | undefined
        try {
          answer = options.answer ? await options.answer(event) : undefined
          await options.onEvent(event, answer)
        } finally {
          // Always reply, even after a failure, so the holder's loop is never left waiting.
          if (id !== undefined) this.write({type: 'event-answer', id, seq, result: answer ?? null})
        }
      },
    }

    signal.addEventListener('abort', cancel, {once: true})
    try {
      return await this.call(method, params, hooks, (started) => {
        id = started
        if (signal.aborted) cancel()
      })
    } finally {
      signal.removeEventListener('abort', cancel)
    }
  }

  async flush(): Promise<void> {
    await this.call('flush', [])
  }

  /** Hangs up. The held device stays open for the next command. */
  async close(): Promise<void> {
    this.broken ??= new DeviceError(`unix:${this.path}`, 'EBADF', 'this connection to the holder is closed')
    if (this.socket.destroyed) return
    await new Promise<void>((done) => {
      const timer = setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS)
      this.socket.once('close', () => {
        clearTimeout(timer)
        done()
      })
      this.socket.end()
    })
  }
}

function connectError(socket: string, error: unknown): DeviceError {
  const code = (error as NodeJS.ErrnoException).code ?? 'EIO'
  switch (code) {
    case 'ENOENT':
    case 'ECONNREFUSED': {
      return new DeviceError('connect', code, `nothing holds a device at ${socket}; start \`vhost-iotlb hold --socket ${socket}\``, {cause: error})
    }

    case 'EACCES': {
      return new DeviceError('connect', code, `${socket}: permission denied (a holder's socket is private to the user who started it)`, {cause: error})
    }

    default: {
      return new DeviceError('connect', code, `cannot connect to ${socket}: ${(error as Error).message}`, {cause: error})
    }
  }
}
