/**
 * REPL history that outlives the shell: `$VHOST_IOTLB_HISTORY`, else `history` next to the
 * default state file. One line per entry, oldest first, appended as lines are entered so that
 * two shells open at once both keep theirs; trimmed to the newest entries when loaded.
 */
import * as fs from 'node:fs'
import {dirname, join} from 'node:path'

import {defaultStatePath} from '../device/emulated/store.js'

export const HISTORY_SIZE = 1000

export function historyPath(env: NodeJS.ProcessEnv): string {
  return env.VHOST_IOTLB_HISTORY || join(dirname(defaultStatePath(env)), 'history')
}

export class History {
  private last: string | undefined

  private constructor(
    readonly path: string,
    /** Newest first, as node:readline wants it. */
    readonly entries: string[],
    private readonly report: (message: string) => void,
  ) {
    this.last = entries[0]
  }

  /** Reads the file (a missing one is an empty history); problems are reported, never fatal. */
  static load(path: string, report: (message: string) => void): History {
    let lines: string[] = []
    try {
      lines = fs.readFileSync(path, 'utf8').split('\n').filter((line) => line !== '')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') report(`history ${path}: ${(error as Error).message}`)
    }

    const history = new History(path, lines.slice(-HISTORY_SIZE).reverse(), report)
    // Keep the file from growing without bound; rewritten atomically so a crash loses nothing.
    if (lines.length > 2 * HISTORY_SIZE) history.rewrite()
    return history
  }

  /** Records a line the user entered; repeats of the previous line and blank lines are not kept. */
  add(line: string): void {
    if (line.trim() === '' || line === this.last) return
    this.last = line
    try {
      fs.mkdirSync(dirname(this.path), {recursive: true})
      fs.appendFileSync(this.path, `${line}\n`, {mode: 0o600})
    } catch (error) {
      this.report(`history ${this.path}: ${(error as Error).message}`)
    }
  }

  private rewrite(): void {
    const temp = `${this.path}.tmp-${process.pid}`
    try {
      fs.writeFileSync(temp, [...this.entries].reverse().map((line) => `${line}\n`).join(''), {mode: 0o600})
      fs.renameSync(temp, this.path)
    } catch (error) {
      fs.rmSync(temp, {force: true})
      this.report(`history ${this.path}: ${(error as Error).message}`)
    }
  }
}
