// bench/bench.ts — runs `wgq bench` (src/cli/commands/bench.ts) directly, without the CLI's other
// commands: the same options, the same output and result files.
//
//   npx tsx bench/bench.ts --only gemv --json
//   node bin/dawn_quiet.mjs npx tsx bench/bench.ts --shapes small     (Dawn's start-up warnings removed)

import { CommanderError } from "commander";
import { benchCommand } from "../src/cli/commands/bench.ts";

try {
  await benchCommand().exitOverride().parseAsync(process.argv);
} catch (e) {
  if (!(e instanceof CommanderError)) throw e; // commander already printed usage errors and help
  process.exitCode = e.exitCode;
}
