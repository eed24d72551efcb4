import t from 'tap'

import {UsageError} from '../../src/device/errors.js'
import {quoteWord, scanWords, splitWords} from '../../src/cli/shellwords.js'

// [line, argv] as `sh -c 'printf "%s\n" LINE'` would give them.
const CASES: Array<[string, string[]]> = [
  ['', []],
  ['   \t ', []],
  ['# only a comment', []],
  ['   # indented comment', []],
  ['dump', ['dump']],
  ['  update   --iova 0x1000\t--size 4k  ', ['update', '--iova', '0x1000', '--size', '4k']],
  ['dump\r', ['dump']],
  ['translate 0x1000 # why: first page', ['translate', '0x1000']],
  ['set-fd -1#not a comment', ['set-fd', '-1#not', 'a', 'comment']],
  ["update --uaddr '0x7f00 0000'", ['update', '--uaddr', '0x7f00 0000']],
  ['update --uaddr "0x7f00_0000"', ['update', '--uaddr', '0x7f00_0000']],
  ["a'b'c\"d\"e", ['abcde']],
  ["''", ['']],
  ['""', ['']],
  ["'# not a comment'", ['# not a comment']],
  ["'it''s'", ['its']],
  ["'a\\b'", ['a\\b']],
  ['"a\\"b"', ['a"b']],
  ['"a\\\\b"', ['a\\b']],
  ['"a\\$b"', ['a$b']],
  ['"a\\nb"', ['a\\nb']],
  ["\"it's\"", ["it's"]],
  ["'say \"hi\"'", ['say "hi"']],
  ['a\\ b', ['a b']],
  ['a\\#b \\#c', ['a#b', '#c']],
  ['\\\'x', ["'x"]],
  ['"$HOME" ~ *', ['$HOME', '~', '*']],
]

t.test('splits lines as a POSIX shell would', async (t) => {
  for (const [line, argv] of CASES) t.same(splitWords(line), argv, JSON.stringify(line))
})

t.test('an unterminated quote or a trailing backslash is a usage error', async (t) => {
  for (const [line, message] of [
    ["update --uaddr '0x1", "unterminated ' quote"],
    ['update --uaddr "0x1', 'unterminated " quote'],
    ['"a\\"', 'unterminated " quote'],
    ['dump \\', 'the line ends in a backslash'],
  ] as const) {
    t.throws(() => splitWords(line), new UsageError(message), JSON.stringify(line))
  }
})

t.test('scanWords reports the unfinished word for completion', async (t) => {
  t.same(scanWords('update --io'), {words: ['update'], partial: '--io', partialStart: 7, open: undefined})
  t.same(scanWords('update '), {words: ['update'], open: undefined})
  t.same(scanWords("update --uaddr '0x"), {words: ['update', '--uaddr'], partial: '0x', partialStart: 15, open: 'single'})
  t.same(scanWords('dump # --all'), {words: ['dump'], open: undefined})
})

t.test('quoteWord round-trips through splitWords', async (t) => {
  for (const word of ['plain', '0x7f00_0000', '', 'two words', "it's", 'a"b', '#x', 'back\\slash', 'tab\there']) {
    t.same(splitWords(quoteWord(word)), [word], JSON.stringify(word))
  }

  t.equal(quoteWord('--iova'), '--iova')
})
