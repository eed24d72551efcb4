/**
 * The holder's side of `--device unix:PATH`: serves one open {@link IotlbDevice} to any number of
 * clients over a unix stream socket (protocol in ./wire.ts).
 *
 * Why serialize: the device is one piece of state (on a real kernel, one fd) and a command's
 * operation must see it as it left it, as if commands ran one after another. So device operations
 * from all clients take turns in the order their requests arrived. Two operations step out of line:
 * - a `translate` whose miss is being answered by its client gives up its turn while it waits, as
 *   the kernel's waiter sleeps, because the UPDATE that answers it is another request (often on the
 *   same connection) that must be able to run;
 * - a `listen` or an `exercise` waits for events indefinitely, so it runs beside the queue; the
 *   UPDATEs its client answers with are ordinary requests and take their turn.
 *
 * The socket file is private to the user (mode 0600) and appears only once it is listening: it is
 * bound under a temporary name and hard-linked into place, which fails if anything exists at the
 * path, so a holder never replaces a live socket or a file that is not a socket. A socket nobody
 * answers on (its holder was killed) is moved aside and replaced.
 */
import {randomBytes} from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import {basename, dirname, join} from 'node:path'

import type {IotlbDevice, IotlbEvent, UpdateResult} from '../device.js'
import type {IotlbEntry} from '../entry.js'
import {DeviceError} from '../errors.js'
import {
  type ClientMessage,
  LineSplitter,
  MAX_REQUEST_LINE,
  METHODS,
  type MethodName,
  type MethodParams,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeLine,
  errorToWire,
  isMethod,
  issueText,
  parseClientLine,
  parseServerLine,
  salvageId,
} from './wire.js'

/** `sizeof(sockaddr_un.sun_path)` minus the terminating NUL; Node 20 cuts longer paths silently. */
export const SOCKET_PATH_MAX = 107

/** How long a probe of an existing socket waits for its holder to answer. */
const PROBE_TIMEOUT_MS = 1000
/** How long shutdown lets a client read its last reply before the connection is cut. */
const DRAIN_TIMEOUT_MS = 500

/** Takes turns in arrival order. */
class Turns {
  private tail: Promise<void> = Promise.resolve()

  /** Resolves once every earlier turn has ended, with the function that ends this one. */
  take(): Promise<() => void> {
    let end!: () => void
    const ended = new Promise<void>((resolve) => (end = resolve))
    const previous = this.tail
    this.tail = previous.then(() => ended)
    return previous.then(() => end)
  }
}

/** A turn that can be given up and taken again (a translate waiting for its miss to be answered). */
class Turn {
  private end: (() => void) | undefined

  private constructor(private readonly turns: Turns) {}

  static async take(turns: Turns): Promise<Turn> {
    const turn = new Turn(turns)
    turn.end = await turns.take()
    return turn
  }

  release(): void {
    this.end?.()
    this.end = undefined
  }

  async retake(): Promise<void> {
    this.end = await this.turns.take()
  }
}

type Waiter = (value: boolean | UpdateResult | null) => void

/** One client connection. */
class Connection {
  hello = false
  closed = false
  /** Running listens and exercises, by call id, so `cancel` can stop them. */
  readonly streams = new Map<number, AbortController>()
  /** Replies the holder waits for: `m<id>` for a miss, `e<id>:<seq>` for an event. */
  readonly waiters = new Map<string, Waiter>()
  private readonly splitter = new LineSplitter(MAX_REQUEST_LINE)

  constructor(
    readonly socket: net.Socket,
    private readonly onLine: (connection: Connection, line: string) => void,
  ) {
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      let lines: string[]
      try {
        lines = this.splitter.push(chunk)
      } catch (error) {
        // The rest of the stream cannot be framed: say why and hang up.
        this.send({type: 'error', id: null, error: errorToWire(error)})
        socket.end()
        return
      }

      for (const line of lines) this.onLine(this, line)
    })
    // A client that vanishes mid-write is routine; the close handler cleans up.
    socket.on('error', () => {})
    socket.on('close', () => this.drop())
  }

  send(message: Record<string, unknown>): void {
    if (this.closed || this.socket.destroyed) return
    let line: string
    try {
      line = encodeLine(message)
    } catch (error) {
      // A result the codec cannot carry is a bug in a backend: report it instead of the result.
      const id = typeof message.id === 'number' ? message.id : null
      line = encodeLine({type: 'error', id, error: errorToWire(error)})
    }

    this.socket.write(line)
  }

  /** Waits for the client's reply to a miss or an event; a vanished client answers nothing. */
  wait(key: string): Promise<boolean | UpdateResult | null> {
    if (this.closed) return Promise.resolve(null)
    return new Promise((resolve) => {
      this.waiters.set(key, (value) => {
        this.waiters.delete(key)
        resolve(value)
      })
    })
  }

  answer(key: string, value: boolean | UpdateResult | null): void {
    this.waiters.get(key)?.(value)
  }

  /** Stops whatever this client was waiting on: its listens end, its waits get no answer. */
  drop(): void {
    this.closed = true
    for (const controller of this.streams.values()) controller.abort()
    for (const waiter of [...this.waiters.values()]) waiter(null)
  }

  /** Hands a miss to the client's miss handler and waits for its verdict. */
  async askMiss(id: number, request: IotlbEntry): Promise<boolean> {
    if (this.closed) return false
    this.send({type: 'miss', id, request})
    return (await this.wait(`m${id}`)) === true
  }
}

/** How a stream reaches its client: each event goes there to be answered and printed. */
type RoundTrip = (event: IotlbEvent) => Promise<UpdateResult | undefined>

/** What a holder did, for its closing line. */
export interface ServeStats {
  connections: number
  requests: number
}

/**
 * Serves `device` on a unix socket until {@link HoldServer.close}. Never closes the device: that
 * is the holder's business, after the socket is gone.
 */
export class HoldServer {
  readonly stats: ServeStats = {connections: 0, requests: 0}
  private readonly turns = new Turns()
  private readonly connections = new Set<Connection>()
  private readonly active = new Set<Promise<void>>()
  private closing: Promise<void> | undefined

  private constructor(
    private readonly device: IotlbDevice,
    private readonly server: net.Server,
    /** The absolute socket path. */
    readonly socket: string,
    /** The socket's inode, so shutdown removes only our own socket file. */
    private readonly identity: {dev: number; ino: number},
  ) {
    server.on('connection', (socket) => this.accept(socket))
  }

  /**
   * Creates the socket at `path` (absolute) and starts serving. Throws {@link DeviceError}:
   * `EADDRINUSE` when another holder answers there, `EEXIST` when the path is not a socket,
   * `ENAMETOOLONG` when the path does not fit a socket address.
   */
  static async start(device: IotlbDevice, path: string): Promise<HoldServer> {
    if (Buffer.byteLength(path) > SOCKET_PATH_MAX) {
      throw new DeviceError('bind', 'ENAMETOOLONG', `${path} is longer than the ${SOCKET_PATH_MAX} bytes a unix socket address holds`)
    }

    const {server, identity} = await claimSocket(path)
    return new HoldServer(device, server, path, identity)
  }

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy()
      return
    }

    this.stats.connections += 1
    const connection = new Connection(socket, (conn, line) => this.onLine(conn, line))
    this.connections.add(connection)
    socket.on('close', () => this.connections.delete(connection))
    const {kind, spec, model} = this.device.info
    connection.send({type: 'hello', version: PROTOCOL_VERSION, pid: process.pid, device: {kind, spec, model}})
  }

  private onLine(connection: Connection, line: string): void {
    // Blank lines carry nothing; tolerating them keeps a hand-typed session (socat) forgiving.
    if (line.trim() === '') return
    let message: ClientMessage
    try {
      message = parseClientLine(line)
    } catch (error) {
      connection.send({type: 'error', id: salvageId(line), error: errorToWire(error)})
      return
    }

    switch (message.type) {
      case 'hello': {
        if (message.version !== PROTOCOL_VERSION) {
          const error = new ProtocolError(
            `unix:${this.socket} speaks protocol ${PROTOCOL_VERSION} and this vhost-iotlb speaks ${message.version}: run hold and the commands from the same version`,
          )
          connection.send({type: 'error', id: null, error: errorToWire(error)})
          connection.socket.end()
          return
        }

        connection.hello = true
        return
      }

      case 'call': {
        const {id} = message
        if (!connection.hello) {
          connection.send({type: 'error', id, error: errorToWire(new ProtocolError('malformed message: a call before hello'))})
          return
        }

        if (this.closing) {
          const error = new DeviceError(`unix:${this.socket}`, 'ESHUTDOWN', 'the holder is shutting down')
          connection.send({type: 'error', id, error: errorToWire(error)})
          return
        }

        this.stats.requests += 1
        const done = this.call(connection, id, message.method, message.params).then(
          (result) => connection.send({type: 'result', id, result, model: this.device.info.model}),
          (error: unknown) => connection.send({type: 'error', id, error: errorToWire(error)}),
        )
        this.active.add(done)
        void done.finally(() => this.active.delete(done))
        return
      }

      case 'cancel': {
        connection.streams.get(message.id)?.abort()
        return
      }

      case 'miss-answer': {
        connection.answer(`m${message.id}`, message.answered)
        return
      }

      case 'event-answer': {
        connection.answer(`e${message.id}:${message.seq}`, message.result)
      }
    }
  }

  /** Runs one call; what it resolves to is the result's wire value. */
  private async call(connection: Connection, id: number, method: string, raw: unknown[]): Promise<unknown> {
    if (!isMethod(method)) throw new ProtocolError(`malformed message: no method ${JSON.stringify(method)}`)
    const device = this.device
    switch (method) {
      case 'setIotlbFd': {
        const [fd] = params(method, raw)
        return this.inTurn(() => device.setIotlbFd(fd))
      }

      case 'setRequestEntry': {
        const [address] = params(method, raw)
        return this.inTurn(() => device.setRequestEntry(address))
      }

      case 'update': {
        const [request] = params(method, raw)
        return this.inTurn(() => device.update(request))
      }

      case 'invalidate': {
        const [request] = params(method, raw)
        return this.inTurn(() => device.invalidate(request))
      }

      case 'translate': {
        const [iova, len, {onMiss}] = params(method, raw)
        return this.translate(connection, id, iova, len, onMiss)
      }

      case 'dump': {
        const [options] = params(method, raw)
        return this.inTurn(() => device.dump(options))
      }

      case 'reset': {
        const [model] = params(method, raw)
        return this.inTurn(() => device.reset(model))
      }

      case 'probe': {
        params(method, raw)
        return this.inTurn(() => device.probe())
      }

      case 'listen': {
        const [options] = params(method, raw)
        return this.stream(connection, id, (signal, roundTrip) =>
          device.listen({
            signal,
            count: options.count,
            answer: options.answer ? roundTrip : undefined,
            onEvent: options.answer ? () => {} : async (event) => void (await roundTrip(event)),
          }),
        )
      }

      case 'exercise': {
        const [options] = params(method, raw)
        if (!device.exercise) throw new DeviceError('exercise', 'EOPNOTSUPP', `${device.info.spec} has no virtqueue this tool can kick`)
        const exercise = device.exercise.bind(device)
        return this.stream(connection, id, (signal, roundTrip) =>
          exercise({
            signal,
            count: options.count,
            quietMs: options.quietMs,
            onSetup: (setup) => connection.send({type: 'setup', id, setup}),
            answer: options.answer ? roundTrip : undefined,
            onMiss: options.onMiss ? (request) => connection.askMiss(id, request) : undefined,
            onEvent: options.answer ? () => {} : async (event) => void (await roundTrip(event)),
          }),
        )
      }

      case 'flush': {
        params(method, raw)
        await this.inTurn(() => device.flush())
        return null
      }
    }
  }

  private async inTurn<T>(operation: () => Promise<T>): Promise<T> {
    const turn = await Turn.take(this.turns)
    try {
      return await operation()
    } finally {
      turn.release()
    }
  }

  private async translate(connection: Connection, id: number, iova: bigint, len: bigint, forward: boolean): Promise<unknown> {
    const turn = await Turn.take(this.turns)
    try {
      const onMiss = async (request: IotlbEntry): Promise<boolean> => {
        if (connection.closed || this.closing) return false
        // Give up the turn: the UPDATE that answers this miss is a request of its own.
        turn.release()
        try {
          return await connection.askMiss(id, request)
        } finally {
          await turn.retake()
        }
      }

      return await this.device.translate(iova, len, forward ? {onMiss} : {})
    } finally {
      turn.release()
    }
  }

  /**
   * Runs a listen or an exercise beside the queue until it ends or its client cancels or hangs up.
   * Each event is sent to the client, which answers and prints it; its reply paces the loop.
   */
  private async stream<T>(connection: Connection, id: number, run: (signal: AbortSignal, roundTrip: RoundTrip) => Promise<T>): Promise<T> {
    const controller = new AbortController()
    connection.streams.set(id, controller)
    if (connection.closed || this.closing) controller.abort()
    let seq = 0
    const roundTrip: RoundTrip = async (event) => {
      const key = `e${id}:${seq}`
      connection.send({type: 'event', id, seq, event})
      seq += 1
      const reply = await connection.wait(key)
      return typeof reply === 'object' && reply !== null ? reply : undefined
    }

    try {
      return await run(controller.signal, roundTrip)
    } finally {
      connection.streams.delete(id)
    }
  }

  /**
   * Stops serving: refuses new requests, ends listens and pending miss answers, lets operations
   * already running finish and reply, hangs up, and removes the socket file if it is still ours.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.removeSocket()
    for (const connection of this.connections) {
      for (const controller of connection.streams.values()) controller.abort()
      for (const waiter of [...connection.waiters.values()]) waiter(null)
    }

    await Promise.allSettled([...this.active])
    await Promise.all(
      [...this.connections].map(
        (connection) =>
          new Promise<void>((resolve) => {
            const {socket} = connection
            if (socket.destroyed) return resolve()
            const timer = setTimeout(() => socket.destroy(), DRAIN_TIMEOUT_MS)
            socket.once('close', () => {
              clearTimeout(timer)
              resolve()
            })
            socket.end()
          }),
      ),
    )
    await stopped
  }

  /** Unlinks the socket path unless it now names another holder's socket. */
  private removeSocket(): void {
    try {
      const stat = fs.lstatSync(this.socket)
      if (stat.dev === this.identity.dev && stat.ino === this.identity.ino) fs.unlinkSync(this.socket)
    } catch {
      // Already gone.
    }
  }
}

function params<M extends MethodName>(method: M, raw: unknown[]): MethodParams<M> {
  const parsed = METHODS[method].params.safeParse(raw)
  if (!parsed.success) throw new ProtocolError(`malformed message: ${method}: params.${issueText(parsed.error.issues)}`)
  return parsed.data as MethodParams<M>
}

function errnoOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? 'EIO'
}

/** Binds a listening socket at `path` with mode 0600 from the first instant. */
function bindPrivate(path: string): Promise<net.Server> {
  const server = net.createServer()
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    // The bind happens inside listen(), synchronously: the umask covers it and nothing else.
    const umask = process.umask(0o177)
    try {
      server.listen(path)
    } finally {
      process.umask(umask)
    }

    server.once('listening', () => {
      server.off('error', reject)
      resolve(server)
    })
  })
}

type Probe = {state: 'live'; pid: number | undefined} | {state: 'stale'} | {state: 'gone'} | {state: 'refused'; code: string}

/** Asks whoever listens on `path` to say hello. */
export function probeSocket(path: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = net.connect(path)
    let pid: number | undefined
    let text = ''
    const finish = (probe: Probe) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(probe)
    }

    // Connected but silent (stopped with SIGSTOP, or not one of ours) still means taken.
    const timer = setTimeout(() => finish({state: 'live', pid}), timeoutMs)
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      text += chunk
      const end = text.indexOf('\n')
      if (end === -1) return
      try {
        const hello = parseServerLine(text.slice(0, end))
        if (hello.type === 'hello') pid = hello.pid
      } catch {
        // Something else listens there; it is taken all the same.
      }

      finish({state: 'live', pid})
    })
    socket.on('error', (error) => {
      const code = errnoOf(error)
      if (code === 'ECONNREFUSED') finish({state: 'stale'})
      else if (code === 'ENOENT') finish({state: 'gone'})
      else finish({state: 'refused', code})
    })
  })
}

/**
 * Binds under a temporary name beside `path` and hard-links it into place. link() fails if
 * anything is at the path, so the check and the claim are one step; a stale socket found there
 * is moved aside and the link retried.
 */
async function claimSocket(path: string): Promise<{server: net.Server; identity: {dev: number; ino: number}}> {
  const dir = dirname(path)
  // libuv reports a missing directory as EACCES: look first, so the error names the real cause.
  try {
    if (!fs.statSync(dir).isDirectory()) throw new DeviceError('bind', 'ENOTDIR', `${dir} is not a directory`)
  } catch (error) {
    if (error instanceof DeviceError) throw error
    throw new DeviceError('bind', errnoOf(error), `cannot create a socket in ${dir}`, {cause: error})
  }

  const temp = join(dir, `.${basename(path).slice(0, 16)}.${process.pid}.${randomBytes(3).toString('hex')}`)
  // A temporary name that would not fit: bind at the path itself, after the same checks.
  const direct = Buffer.byteLength(temp) > SOCKET_PATH_MAX
  for (let attempt = 0; attempt < 5; attempt++) {
    if (direct) await inspectExisting(path)
    let server: net.Server
    try {
      server = await bindPrivate(direct ? path : temp)
    } catch (error) {
      const code = errnoOf(error)
      if (direct && code === 'EADDRINUSE') continue
      throw new DeviceError('bind', code, `cannot create a socket in ${dir}`, {cause: error})
    }

    const bound = direct ? path : temp
    fs.chmodSync(bound, 0o600)
    const {dev, ino} = fs.lstatSync(bound)
    if (direct) return {server, identity: {dev, ino}}
    try {
      fs.linkSync(temp, path)
      return {server, identity: {dev, ino}}
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') {
        server.close()
        throw new DeviceError('link', errnoOf(error), `cannot put the socket at ${path}: ${(error as Error).message}`, {cause: error})
      }
    } finally {
      // Closing the server later unlinks the name it was bound to, which is this temporary one.
      fs.rmSync(temp, {force: true})
    }

    await new Promise<void>((resolve) => server.close(() => resolve()))
    await inspectExisting(path)
  }

  throw new DeviceError('bind', 'EADDRINUSE', `${path} keeps being taken by another process; gave up`)
}

/** Throws if `path` holds something we must not replace; moves a stale socket aside. */
async function inspectExisting(path: string): Promise<void> {
  let stat: fs.Stats
  try {
    stat = fs.lstatSync(path)
  } catch {
    return
  }

  if (!stat.isSocket()) throw new DeviceError('bind', 'EEXIST', `${path} exists and is not a socket; not replacing it`)
  const probe = await probeSocket(path)
  switch (probe.state) {
    case 'live': {
      const who = probe.pid === undefined ? 'another process' : `vhost-iotlb hold (pid ${probe.pid})`
      throw new DeviceError('bind', 'EADDRINUSE', `${path} is held by ${who}; stop it or choose another --socket`)
    }

    case 'refused': {
      throw new DeviceError('bind', probe.code, `${path} is a socket this user cannot probe; not replacing it`)
    }

    case 'gone': {
      return
    }

    case 'stale': {
      moveAsideIfSame(path, stat)
    }
  }
}

/**
 * Removes the stale socket `seen`, and only it: rename() first, so if another holder has just put
 * its live socket at the path, that is what we moved, and it goes straight back.
 */
function moveAsideIfSame(path: string, seen: fs.Stats): void {
  const aside = `${path}.stale.${process.pid}.${randomBytes(3).toString('hex')}`
  try {
    fs.renameSync(path, aside)
  } catch {
    return
  }

  const moved = fs.lstatSync(aside)
  if (moved.dev !== seen.dev || moved.ino !== seen.ino) {
    try {
      fs.linkSync(aside, path)
    } catch {
      // The path was taken again meanwhile; the next attempt will see by whom.
    }
  }

  fs.rmSync(aside, {force: true})
}
