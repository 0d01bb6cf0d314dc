#!/usr/bin/env node
// wgq — the webgpu-quant command line. Runs src/cli/main.ts through tsx (no build step) in a child
// process whose stderr is cleaned of Dawn's start-up warnings (see dawn_quiet.mjs).
import { fileURLToPath } from "node:url";
import { runQuiet } from "./dawn_quiet.mjs";

const main = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");
// WGQ_PARENT_PID lets the child notice when this wrapper is gone (src/cli/main.ts).
process.exitCode = await runQuiet(process.execPath, ["--import", tsx, main, ...process.argv.slice(2)], {
  env: { ...process.env, WGQ_STDERR_TTY: process.stderr.isTTY ? "1" : "", WGQ_PARENT_PID: String(process.pid) },
});
