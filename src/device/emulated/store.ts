/**
 * Where the emulated device lives between commands: a JSON file, read with validation, written
 * atomically (temp file, fsync, rename) and only while holding `PATH.lock`.
 *
 * The lock is a file created with O_EXCL that names its holder (pid and process start time, so a
 * recycled pid is not mistaken for the holder). A holder that died (kill -9) leaves the file
 * behind; the next process sees the holder is gone and breaks the lock by renaming it aside
 * first, so that two processes breaking the same stale lock cannot both win.
 */
import * as fs from 'node:fs'
import {dirname} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {LockTimeoutError, StateFileError} from '../errors.js'
import {type ModelState} from './model.js'
import {parseStateText, serializeState} from './state.js'

export const DEFAULT_LOCK_TIMEOUT_MS = 10_000

/** The default state file: `$VHOST_IOTLB_STATE`, else under `$XDG_STATE_HOME`, else `~/.local/state`. */
export function defaultStatePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VHOST_IOTLB_STATE) return env.VHOST_IOTLB_STATE
  const base = env.XDG_STATE_HOME || `${env.HOME || '/root'}/.local/state`
  return `${base}/vhost-iotlb/emu.json`
}

let uniqueCount = 0

/**
 * A name part that no other process, and no earlier call, uses: pid, time, a counter and a
 * little randomness. Not crypto's randomBytes: loading node:crypto cost every one-shot command
 * about 5 ms of start-up (the crypto binding and streams), and these names need to be unique,
 * not secret.
 */
function unique(): string {
  return `${process.pid}-${Date.now().toString(36)}-${(uniqueCount++).toString(36)}${Math.random().toString(36).slice(2, 8)}`
}

/** What a load saw, so a later load can skip parsing an unchanged file. */
interface Snapshot {
  text: string
  stamp: string
}

export interface Loaded {
  state: ModelState | undefined
  snapshot: Snapshot | undefined
}

function statStamp(stat: fs.Stats): string {
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`
}

function fsError(path: string, error: unknown, doing: string): StateFileError {
  const code = (error as NodeJS.ErrnoException).code ?? 'EIO'
  const reason = (error as Error).message.replace(/^[A-Z]+: /, '')
  return new StateFileError(code, path, `cannot ${doing}: ${reason}`, {cause: error})
}

/**
 * Reads and validates the state file. A missing file is a fresh device (state undefined); a
 * directory, a FIFO, an unreadable or corrupt file is a StateFileError.
 */
export function loadState(path: string): Loaded {
  let fd: number
  try {
    // O_NONBLOCK so a FIFO planted at the path cannot hang the command.
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {state: undefined, snapshot: undefined}
    throw fsError(path, error, 'open it')
  }

  try {
    const stat = fs.fstatSync(fd)
    if (stat.isDirectory()) throw new StateFileError('EISDIR', path, 'is a directory, not a state file')
    if (!stat.isFile()) throw new StateFileError('EFTYPE', path, 'is not a regular file')
    let text: string
    try {
      text = fs.readFileSync(fd, 'utf8')
    } catch (error) {
      throw fsError(path, error, 'read it')
    }

    try {
      return {state: parseStateText(text), snapshot: {text, stamp: statStamp(stat)}}
    } catch (error) {
      throw new StateFileError('EBADSTATE', path, `${(error as Error).message}; left untouched`, {cause: error})
    }
  } finally {
    fs.closeSync(fd)
  }
}

/** True when the file still has the stamp of `snapshot` (same inode, size and times). */
export function unchangedSince(path: string, snapshot: Snapshot | undefined): boolean {
  if (!snapshot) return false
  try {
    return statStamp(fs.statSync(path)) === snapshot.stamp
  } catch {
    return false
  }
}

/** Writes the state so that a reader sees the old file or the new one, never a mix. */
export function saveState(path: string, state: ModelState, previous: Snapshot | undefined): Snapshot {
  const text = serializeState(state)
  if (previous && previous.text === text) return previous
  try {
    fs.mkdirSync(dirname(path), {recursive: true})
  } catch (error) {
    throw fsError(path, error, 'create its directory')
  }

  const temp = `${path}.tmp-${unique()}`
  try {
    const fd = fs.openSync(temp, 'wx', 0o644)
    try {
      fs.writeFileSync(fd, text)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }

    fs.renameSync(temp, path)
  } catch (error) {
    fs.rmSync(temp, {force: true})
    throw fsError(path, error, 'write it')
  }

  return {text, stamp: statStamp(fs.statSync(path))}
}

// ---- the lock ------------------------------------------------------------------------------

/** Field 22 of /proc/PID/stat: start time in clock ticks since boot; empty when unreadable. */
function startTime(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may contain spaces and parentheses: count from its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? ''
  } catch {
    return ''
  }
}

function holderAlive(token: string): boolean {
  const [pidText, started] = token.split(' ')
  const pid = Number(pidText)
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }

  // A live pid with another start time is a recycled pid, not the holder.
  const now = startTime(pid)
  return !started || !now || now === started
}

function readToken(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}

export class StateLock {
  private constructor(
    readonly path: string,
    private readonly token: string,
  ) {}

  /** Takes the lock for `statePath`, waiting up to `timeoutMs` for a live holder. */
  static async acquire(statePath: string, timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): Promise<StateLock> {
    const path = `${statePath}.lock`
    const token = `${process.pid} ${startTime(process.pid)} ${unique()}`
    const began = Date.now()
    let delay = 1
    let madeDirectory = false
    for (;;) {
      try {
        createLock(path, token)
        return new StateLock(path, token)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'ENOENT' && !madeDirectory) {
          madeDirectory = true
          try {
            fs.mkdirSync(dirname(path), {recursive: true})
          } catch (mkdirError) {
            throw fsError(statePath, mkdirError, 'create its directory')
          }

          continue
        }

        if (code !== 'EEXIST') throw fsError(statePath, error, 'lock it')
      }

      const holder = readToken(path)
      if (holder === undefined) continue // released between our create and our read
      if (!holder.includes(' ') || !holderAlive(holder)) {
        breakStale(path, holder)
        continue
      }

      const waited = Date.now() - began
      if (waited >= timeoutMs) throw new LockTimeoutError(statePath, `pid ${holder.split(' ')[0]}`, waited)
      await sleep(delay)
      delay = Math.min(delay * 2, 25)
    }
  }

  /** Still ours? Checked right before the rename that publishes a new state. */
  held(): boolean {
    return readToken(this.path) === this.token
  }

  release(): void {
    if (this.held()) fs.rmSync(this.path, {force: true})
  }
}

/**
 * Creates the lock file already holding its token: the token goes to a private file that link()
 * then publishes, failing with EEXIST if a lock exists. Creating the lock with O_EXCL and then
 * writing the token left a moment in which a waiter could read an empty lock, judge it stale and
 * break a live holder's lock (found by the concurrency test: updates failed with ELOCKLOST).
 */
function createLock(path: string, token: string): void {
  const temp = `${path}.new-${unique()}`
  fs.writeFileSync(temp, token, {flag: 'wx', mode: 0o644})
  try {
    fs.linkSync(temp, path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    // A file system without hard links: fall back to the create-then-write lock.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error
    fs.writeFileSync(path, token, {flag: 'wx', mode: 0o644})
  } finally {
    fs.rmSync(temp, {force: true})
  }
}

/**
 * Removes a lock whose holder is gone. It is renamed aside first and checked: if what we moved is
 * not the stale token we judged (another process broke it and locked in between), it is put
 * back with link(), which fails rather than clobber a third process's lock.
 */
function breakStale(path: string, staleToken: string): void {
  const aside = `${path}.stale-${unique()}`
  try {
    fs.renameSync(path, aside)
  } catch {
    return // someone else moved it first
  }

  const moved = readToken(aside)
  if (moved !== staleToken) {
    try {
      fs.linkSync(aside, path)
    } catch {
      // A new lock exists already; the holder we displaced will find its lock gone at publish.
    }
  }

  fs.rmSync(aside, {force: true})
}
