/**
 * The `--map FILE` flag that listen and exercise share: its schema and the loading of the file,
 * whose lines map.ts validates.
 */
import {readFile} from 'node:fs/promises'

import * as z from 'zod/mini'

import {showInput} from '../device/entry.js'
import {UsageError} from '../device/errors.js'
import {type MapRange, parseMap} from '../device/map.js'

export const mapFileSchema = z.string().check(
  z.refine((text) => text.length > 0 && !text.includes('\0'), {error: (issue) => `--map: ${showInput(issue.input)} is not a file name`}),
)

/** Reads and validates a map file; an unreadable file is a usage error, like a bad line. */
export async function loadMapFile(path: string): Promise<MapRange[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new UsageError(`--map: cannot read ${path}: ${(error as Error).message}`)
  }

  return parseMap(text, path)
}
