#!/usr/bin/env -S node --import tsx
// Runs the TypeScript sources through oclif, for development without a build.
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
