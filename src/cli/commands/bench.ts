// cli/commands/bench.ts — `wgq bench`: the benchmark suite of src/bench/run.ts on this machine's
// WebGPU device. Prints Markdown tables (or, with --json, exactly one JSON object) on stdout,
// progress on stderr, and writes bench/results/<device>.{json,md,svg}. Run it alone: timings on a
// shared or software adapter move with whatever else uses the CPU.

import { Command, InvalidArgumentError } from "commander";
import { createContext } from "../../gpu/context.ts";
import { type BenchOnly, runBench, type ShapeSet } from "../../bench/run.ts";
import { markdown } from "../../bench/report.ts";
import { intOption } from "../util.ts";

interface BenchCliOptions {
  only?: BenchOnly;
  shapes: ShapeSet;
  full?: boolean;
  reps: number;
  json?: boolean;
  out?: string;
  write: boolean;
  timestamps: boolean;
  quiet?: boolean;
  ort: boolean;
  layers?: number;
  prefill: number;
  awq?: boolean;
  stories?: string;
}

export function benchCommand(): Command {
  return new Command("bench")
    .description("benchmark the matmul kernels (GEMV/GEMM, f32/f16/int8/int4, every variant) against the device's roofline and ONNX Runtime; end-to-end decode/prefill tokens/s; quantization time")
    .option("--only <part>", "run only gemv, gemm, roofline, ort (ONNX Runtime vs the project's kernels, GEMV M=1), e2e (decode/prefill tokens/s) or quant (RTN time per block)", choice("--only", ["gemv", "gemm", "roofline", "ort", "e2e", "quant"]))
    .option("--shapes <set>", "llama (4096², 11008×4096, 4096×11008, 2048²) or small (tiny smoke-test shapes)", choice("--shapes", ["llama", "small"]), "llama")
    .option("--full", "every variant at every M, and GEMM M=512 on the big shapes (slow on software adapters)")
    .option("--reps <n>", "timed repetitions per row (>= 7 for published numbers)", intOption("--reps", 1), 7)
    .option("--json", "print one JSON object { device, settings, roofline, results } instead of tables")
    .option("--out <dir>", "folder for <device>.json/.md/.svg (default bench/results/)")
    .option("--no-write", "write no result files")
    .option("--no-timestamps", "time with the wall clock even when timestamp-query exists")
    .option("--no-ort", "leave out the ONNX Runtime (onnxruntime-node, WebGPU EP) rows beside GEMV")
    .option("--layers <n>", "e2e: blocks of the 1B-shaped synthetic model (default 16 on GPUs, 2 on software adapters)", intOption("--layers", 1))
    .option("--prefill <n>", "e2e: tokens per prefill forward", intOption("--prefill", 1), 128)
    .option("--awq", "quant: also time AWQ (int4 g128) per block (minutes per block on software adapters)")
    .option("--stories <dir>", "e2e: stories260K folder (default ../shared/models/stories260K beside the repository; skipped when absent)")
    .option("--quiet", "no progress lines on stderr")
    .addHelpText("after", "\nExamples:\n  wgq bench                       # everything, tables + bench/results/<device>.*\n  wgq bench --only gemv --json    # the project's GEMV rows only, machine-readable\n  wgq bench --only ort            # ONNX Runtime vs the project's kernels, GEMV M=1\n  wgq bench --only e2e --layers 4 # decode/prefill tokens/s, 1B shape cut to 4 blocks\n  wgq bench --only quant --awq    # RTN and AWQ seconds per block\n  wgq bench --shapes small        # smoke test")
    .action(async (opts: BenchCliOptions) => {
      const ctx = await createContext();
      const t0 = performance.now();
      const log = opts.quiet ? undefined : (m: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${m}\n`);
      try {
        const { report, files } = await runBench(ctx, {
          only: opts.only ?? null,
          shapes: opts.shapes,
          full: opts.full ?? false,
          reps: opts.reps,
          outDir: opts.write ? (opts.out ?? undefined) : null,
          timestamps: opts.timestamps,
          ort: opts.ort,
          layers: opts.layers,
          prefillTokens: opts.prefill,
          awq: opts.awq ?? false,
          ...(opts.stories ? { storiesDir: opts.stories } : {}),
          log,
        });
        process.stdout.write(opts.json ? JSON.stringify(report) + "\n" : markdown(report) + "\n");
        const failed = report.results.filter((r) => r.error);
        if (files.length) log?.(`wrote ${files.join(", ")}`);
        if (failed.length) {
          process.stderr.write(`${failed.length} kernel(s) FAILED validation against the reference: ${failed.map((r) => `${r.dtype} ${r.name} ${r.n}x${r.k} M=${r.m}`).join("; ")}\n`);
          process.exitCode = 3;
        }
      } finally {
        ctx.gpu.destroy();
      }
    });
}

function choice<T extends string>(name: string, values: readonly T[]) {
  return (v: string): T => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`${name} must be one of ${values.join(", ")}`);
    return v as T;
  };
}
