#!/usr/bin/env node
// Plain command runs take the fast path: the bundle scripts/build.js makes of src/cli/main.ts,
// which never loads oclif (importing @oclif/core alone costs more than a whole command). Help,
// completion, --version and VHOST_IOTLB_OCLIF=1 fall through to oclif, which runs dist/.
import {main} from '../dist/fast/main.js'

if (!(await main(process.argv.slice(2)))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
