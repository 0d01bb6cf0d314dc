#!/usr/bin/env node
// dawn_quiet.mjs — runs a command with Dawn's start-up noise removed from its stderr.
// Dawn (native code) prints "Warning: maxDynamic*BuffersPerPipelineLayout artificially reduced …"
// at every device creation; native writes cannot be filtered in-process, so the command runs as a
// child whose stderr passes through this filter. Everything else, exit code and signals included,
// passes through unchanged.
//   node bin/dawn_quiet.mjs vitest run        (npm test)
//   import { runQuiet } from "./dawn_quiet.mjs"  (bin/wgq.mjs)
import { spawn } from "node:child_process";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const NOISE = /^Warning: maxDynamic\w+PerPipelineLayout artificially reduced/;

/** Spawns `cmd args`, filters its stderr line by line, resolves with its exit code. */
export function runQuiet(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      stdio: ["inherit", "inherit", "pipe"],
      env: { ...process.env, WGQ_STDERR_TTY: process.stderr.isTTY ? "1" : "" },
      ...opts,
    });
    let rest = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      const keep = lines.filter((l) => !NOISE.test(l));
      if (keep.length) process.stderr.write(keep.join("\n") + "\n");
    });
    child.stderr.on("end", () => {
      if (rest && !NOISE.test(rest)) process.stderr.write(rest);
    });
    // Ctrl-C reaches the child through the terminal's process group; a signal sent to this process
    // alone is passed on. Either way the child cleans up and its exit code is ours.
    const ignore = () => child.kill("SIGINT");
    process.on("SIGINT", ignore);
    process.on("SIGTERM", () => child.kill("SIGTERM"));
    process.on("SIGHUP", () => child.kill("SIGHUP"));
    child.on("error", (e) => {
      process.stderr.write(`cannot run ${cmd}: ${e.message}\n`);
      resolve(127);
    });
    child.on("close", (code, signal) => {
      process.off("SIGINT", ignore);
      resolve(code ?? ({ SIGINT: 130, SIGHUP: 129, SIGTERM: 143, SIGKILL: 137 }[signal] ?? 1));
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [cmd, ...args] = process.argv.slice(2);
  if (!cmd) {
    process.stderr.write("usage: node bin/dawn_quiet.mjs <command> [args…]\n");
    process.exit(1);
  }
  // The package's own node_modules/.bin is searched too (as npm scripts do), so
  // `node bin/dawn_quiet.mjs vitest run` works outside npm.
  const bin = join(dirname(dirname(fileURLToPath(import.meta.url))), "node_modules", ".bin");
  const env = { ...process.env, PATH: [process.env.PATH, bin].filter(Boolean).join(delimiter), WGQ_STDERR_TTY: process.stderr.isTTY ? "1" : "" };
  process.exit(await runQuiet(cmd, args, { shell: process.platform === "win32", env }));
}
