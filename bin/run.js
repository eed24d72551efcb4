#!/usr/bin/env node
import {main} from '../dist/cli/main.js'

if (!(await main(process.argv.slice(2)))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
