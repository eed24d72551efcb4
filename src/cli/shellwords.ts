/**
 * Splits a batch or REPL line into argv the way a POSIX shell would, so that a line pasted from a
 * terminal runs the same there as here: blanks separate words, 'single quotes' keep everything
 * literally, "double quotes" keep everything but a backslash before $ ` " or \, a
 * backslash outside quotes keeps the next character, and `#` at the start of a word comments
 * out the rest of the line. There is no expansion of any kind ($VAR, globs, ~).
 *
 * Batch replays traces of a million lines, so plain lines (no quote, backslash or `#`) take a
 * fast path that allocates nothing but the words.
 */
import {UsageError} from '../device/errors.js'

/** Characters that make a line need the full scanner. */
const SPECIAL = /["'\\#]/
const BLANKS = /[ \t\r\n\f\v]+/
/** Inside double quotes a backslash escapes only these (POSIX). */
const DQ_ESCAPABLE = '$`"\\'

function isBlank(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n' || c === '\f' || c === '\v'
}

/** Where the scanner stopped when the line ended early: the completer needs to know. */
export type OpenState = 'single' | 'double' | 'escape' | undefined

export interface Scan {
  words: string[]
  /** The unfinished last word (no blank after it yet), cooked; undefined after a blank. */
  partial?: string
  /** Offset in the line where the unfinished word starts. */
  partialStart?: number
  /** An unterminated quote or trailing backslash. */
  open: OpenState
}

/** The scanner behind both entry points; never throws. */
export function scanWords(line: string): Scan {
  const words: string[] = []
  let word = ''
  let inWord = false
  let start = 0
  let open: OpenState
  const length = line.length
  for (let i = 0; i < length; i++) {
    const c = line[i]!
    if (isBlank(c)) {
      if (inWord) {
        words.push(word)
        word = ''
        inWord = false
      }

      continue
    }

    if (!inWord) {
      if (c === '#') return {words, open: undefined}
      inWord = true
      start = i
    }

    if (c === "'") {
      const end = line.indexOf("'", i + 1)
      if (end === -1) {
        word += line.slice(i + 1)
        open = 'single'
        break
      }

      word += line.slice(i + 1, end)
      i = end
    } else if (c === '"') {
      let j = i + 1
      for (; j < length && line[j] !== '"'; j++) {
        if (line[j] === '\\' && j + 1 < length && DQ_ESCAPABLE.includes(line[j + 1]!)) j++
        word += line[j]
      }

      if (j >= length) {
        open = 'double'
        break
      }

      i = j
    } else if (c === '\\') {
      if (i + 1 >= length) {
        open = 'escape'
        break
      }

      word += line[++i]
    } else {
      word += c
    }
  }

  if (inWord) return {words, partial: word, partialStart: start, open}
  return {words, open}
}

const OPEN_MESSAGE: Record<Exclude<OpenState, undefined>, string> = {
  single: "unterminated ' quote",
  double: 'unterminated " quote',
  escape: 'the line ends in a backslash',
}

/**
 * A whole line to argv. Blank and comment-only lines give []. An unterminated quote or a
 * trailing backslash is a UsageError: guessing where the user meant it to end could run the
 * wrong command.
 */
export function splitWords(line: string): string[] {
  if (!SPECIAL.test(line)) {
    const words = line.split(BLANKS)
    if (words[0] === '') words.shift()
    if (words.length > 0 && words[words.length - 1] === '') words.pop()
    return words
  }

  const scan = scanWords(line)
  if (scan.open) throw new UsageError(OPEN_MESSAGE[scan.open])
  if (scan.partial !== undefined) scan.words.push(scan.partial)
  return scan.words
}

/** Quotes a word so that {@link splitWords} gives it back unchanged (for echoing argv). */
export function quoteWord(word: string): string {
  if (word !== '' && /^[\w@%+=:,./-]+$/.test(word)) return word
  return `'${word.replaceAll("'", `'\\''`)}'`
}
