// cli/main.ts — `wgq`, the webgpu-quant command line (run through bin/wgq.mjs).
// Exit codes: 0 success, 1 usage error, 2 input error (bad file/config), 3 device error.
// Errors print as one sentence plus a hint; --debug adds the stack.

import { Command, CommanderError } from "commander";
import { WgqError } from "../errors.ts";
import { webGpuExceptionError } from "../gpu/device.ts";
import { benchCommand } from "./commands/bench.ts";
import { calibrateCommand } from "./commands/calibrate.ts";
import { demoCommand } from "./commands/demo.ts";
import { doctorCommand } from "./commands/doctor.ts";
import { evalCommand } from "./commands/eval.ts";
import { generateCommand } from "./commands/generate.ts";
import { inspectCommand } from "./commands/inspect.ts";
import { quantizeCommand } from "./commands/quantize.ts";
import { qatCommand } from "./commands/qat.ts";

const program = new Command("wgq")
  .description("webgpu-quant: quantize Llama-family LLMs on the GPU through WebGPU")
  .option("--debug", "print stack traces on errors")
  .showHelpAfterError("(add --help for usage)")
  .exitOverride();

program.addCommand(doctorCommand());
program.addCommand(evalCommand());
program.addCommand(generateCommand());
program.addCommand(inspectCommand());
program.addCommand(calibrateCommand());
program.addCommand(quantizeCommand());
program.addCommand(qatCommand());
program.addCommand(demoCommand());
program.addCommand(benchCommand());

// Run by bin/wgq.mjs as its child: when that wrapper dies without passing a signal on (e.g. it was
// killed with SIGKILL), stop as on SIGHUP instead of running on unseen.
const wrapper = Number(process.env.WGQ_PARENT_PID);
delete process.env.WGQ_PARENT_PID;
if (wrapper > 0) {
  setInterval(() => {
    if (process.ppid !== wrapper) process.kill(process.pid, "SIGHUP");
  }, 500).unref();
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  process.exitCode = report(e, program.opts().debug === true);
}

function report(e: unknown, debug: boolean): number {
  if (e instanceof CommanderError) {
    // commander already printed its message (help, version, or a usage error)
    return e.exitCode === 0 ? 0 : 1;
  }
  // A DOMException / GPU error object that escaped from WebGPU: a device error (exit 3), not a bug report.
  const gpuError = webGpuExceptionError(e);
  if (gpuError) {
    if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    e = gpuError;
  }
  if (e instanceof WgqError) {
    process.stderr.write(`error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    return e.exitCode;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(`error: ${err.message}\n`);
  process.stderr.write(debug ? `${err.stack}\n` : "hint: this is unexpected; rerun with --debug and report the output\n");
  return 1;
}
