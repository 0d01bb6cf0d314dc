// bench/run.ts — the benchmark suite behind `wgq bench` / `npm run bench`: roofline probes, then
// GEMV (M = 1, 4, 8) and GEMM (M = 16, 128, 512) rows for every dtype and kernel variant on Llama
// shapes, "best" marks, and the report files (bench/results/<device>.json, .svg, .md).
//
// What runs by default (everything, at every M on every shape, is --full):
//   shapes "llama": N×K = 4096×4096, 11008×4096 (gate/up), 4096×11008 (down), 2048×2048 (1B-wide)
//   GEMV  M = 1, 4, 8 on 4096×4096 and 2048×2048, M = 1 on the two 11008 shapes; on CPU adapters
//         the GPU-shaped variants (subgroup, dp4a, tiled_f16) run at M = 1 on the square shapes only.
//         This keeps `wgq bench --only gemv` within about a minute on lavapipe (2 cores).
//   GEMM  M = 16 on every shape, M = 128 and 512 on 2048×2048 (--full: M = 16, 128, 512 everywhere;
//         on lavapipe M = 128 on 4096×4096 is already ~2 s per run, so --full takes the better part
//         of an hour there)
//   roofline: all probes with --only roofline or a plain run; GEMV/GEMM-only runs measure just the
//         copy bandwidth (the yardstick of "% copy")
//   shapes "small": tiny ragged shapes for a smoke test (seconds in all)
// Benchmarks share nothing with `npm test`; test/bench/ only checks that this runs on tiny shapes.

import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { GpuContext } from "../gpu/context.ts";
import { type BenchDType, benchKernels, type BenchRow, markBest, type PeerContext, type Shape } from "./kernels.ts";
import { type BenchReport, deviceSlug, markdown, svgPlot } from "./report.ts";
import { roofline, type RooflineResult } from "./roofline.ts";
import { BenchTimer } from "./timer.ts";
import { benchOrt, ORT_VARIANTS } from "./ort.ts";
import { benchE2e } from "./e2e.ts";
import { benchQuantTime } from "./quant_time.ts";

export type BenchOnly = "gemv" | "gemm" | "roofline" | "ort" | "e2e" | "quant";
export type ShapeSet = "llama" | "small";

export interface BenchOptions {
  only?: BenchOnly | null;
  shapes?: ShapeSet;
  /** Every variant at every M, and GEMM M = 512 on every shape. */
  full?: boolean;
  /** Timed repetitions per row (>= 7 unless a smoke test asks for fewer). Default 7. */
  reps?: number;
  warmup?: number;
  /** Folder for <device>.json/.svg/.md; null writes nothing. Default bench/results/. */
  outDir?: string | null;
  /** Use timestamp-query when present (default true). */
  timestamps?: boolean;
  /** ONNX Runtime peer rows beside the GEMV rows of a full run or --only ort (default true; src/bench/ort.ts). */
  ort?: boolean;
  /** The package ORT is loaded from (default onnxruntime-node; tests name a missing one). */
  ortPackage?: string;
  /** e2e: blocks of the 1B-shaped model (default: all 16 on GPUs, E2E_CPU_LAYERS on CPU adapters). */
  layers?: number;
  /** e2e: tokens of the prefill rows (default 128). */
  prefillTokens?: number;
  /** quant: also time AWQ per block (minutes per block on software adapters). */
  awq?: boolean;
  /** e2e: folder of stories260K (default ../shared/models/stories260K beside the repository; skipped when absent). */
  storiesDir?: string | null;
  /** e2e / quant: the synthetic preset of the "1B" rows (default "1b"; tests use "tiny"). */
  preset?: string;
  /** Progress lines (stderr in the CLI). */
  log?: (msg: string) => void;
}

export const SHAPES: Record<ShapeSet, Shape[]> = {
  llama: [
    { n: 4096, k: 4096, label: "4096x4096" },
    { n: 11008, k: 4096, label: "11008x4096" },
    { n: 4096, k: 11008, label: "4096x11008" },
    { n: 2048, k: 2048, label: "2048x2048" },
  ],
  small: [
    { n: 130, k: 256, label: "130x256" },
    { n: 64, k: 384, label: "64x384" },
  ],
};

/** Blocks of the 1B-shaped e2e model on CPU adapters unless --layers says otherwise. */
export const E2E_CPU_LAYERS = 2;

export const DEFAULT_RESULTS_DIR = fileURLToPath(new URL("../../bench/results/", import.meta.url));

/** Variants shaped for GPUs (workgroup reductions, row-major dp4a, f16 activations). */
const GPU_SHAPED = new Set(["subgroup", "dp4a", "tiled_f16"]);
const ORT_NAMES = new Set<string>(ORT_VARIANTS.map((v) => v.variant));

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Runs the suite on ctx's device; returns the report and the files written. */
export async function runBench(ctx: GpuContext, opts: BenchOptions = {}): Promise<{ report: BenchReport; files: string[] }> {
  const { gpu } = ctx;
  const log = opts.log ?? (() => {});
  const only = opts.only ?? null;
  const shapeSet = opts.shapes ?? "llama";
  const small = shapeSet === "small";
  const full = opts.full ?? false;
  const reps = opts.reps ?? 7;
  const warmup = opts.warmup ?? 1;
  const timer = new BenchTimer(gpu, { timestamps: opts.timestamps });
  const cpu = gpu.adapterInfo.kind === "cpu";
  // Software adapters run the 1B-shaped e2e model cut to a few blocks (minutes instead of hours).
  const layers = opts.layers ?? (cpu && !small ? E2E_CPU_LAYERS : undefined);
  let roof: RooflineResult | null = null;
  let results: BenchRow[] = [];
  try {
    const kernels = !only || only === "gemv" || only === "gemm" || only === "ort";
    if (!only || only === "roofline" || kernels) {
      // The copy bandwidth is the yardstick of every row (% copy), so GEMV/GEMM runs measure it too.
      const copyOnly = only === "gemv" || only === "gemm" || only === "ort";
      log(`roofline probes (${small ? "4 MiB" : "64 MiB"} copies${copyOnly ? ", copy bandwidth only" : ""})`);
      roof = await roofline(ctx, timer, { copyBytes: small ? 4 << 20 : 64 << 20, reps, fmaIters: small ? 256 : 2048, copyOnly });
    }
    if (kernels) {
      const largest = Math.max(...SHAPES[shapeSet].map((s) => s.n * s.k));
      // ONNX Runtime rows: in the full run and --only ort (--only gemv keeps to the project's GEMVs)
      const ortOn = (opts.ort ?? true) && (!only || only === "ort");
      // On CPU adapters the GPU-shaped variants, and ONNX Runtime, run at M = 1 on the square shapes only.
      const narrow = (m: number, s: Shape) => full || !cpu || (m === 1 && (small || s.n === s.k));
      results = await benchKernels(ctx, timer, {
        shapes: SHAPES[shapeSet],
        ms: (s) => ({
          gemv: only === "gemm" ? [] : only === "ort" ? [1] : full || small || s.n === s.k ? [1, 4, 8] : [1],
          gemm: only === "gemv" || only === "ort" ? [] : small ? [16] : full || s.n * s.k < largest / 4 ? [16, 128, 512] : [16],
        }),
        include: (_d: BenchDType, v: string, m: number, s: Shape) =>
          ORT_NAMES.has(v) ? ortOn && m <= 8 && narrow(m, s) : m > 8 || !GPU_SHAPED.has(v) || narrow(m, s),
        reps,
        warmup,
        copyGbps: roof?.copy_gbps ?? null,
        log,
        ...(ortOn ? { peer: (p: PeerContext) => benchOrt(p, opts.ortPackage), peerVariants: ORT_VARIANTS } : {}),
      });
      markBest(results);
    }
    const preset = opts.preset ?? (small ? "tiny" : "1b");
    if (!only || only === "e2e") {
      log(`end to end: synthetic:${preset}${layers !== undefined ? ` cut to ${layers} layers` : ""}, f16 / int8 / int4 g128, decode and ${opts.prefillTokens ?? 128}-token prefill`);
      results.push(...(await benchE2e(ctx, {
        preset, layers, prefillTokens: opts.prefillTokens, decodeSteps: reps, prefillReps: cpu ? Math.min(2, reps) : reps,
        ...(opts.storiesDir !== undefined ? { storiesDir: opts.storiesDir } : {}), log,
      })));
    }
    if (!only || only === "quant") {
      log(`quantization time: RTN${opts.awq ? " and AWQ" : ""} per block of synthetic:${preset}`);
      results.push(...(await benchQuantTime(ctx, { preset, blocks: cpu || small ? 2 : 4, awq: opts.awq ?? false, log })));
    }
  } finally {
    timer.destroy();
  }
  const report: BenchReport = {
    device: { ...gpu.adapterInfo, features: [...gpu.features].sort(), timer: timer.kind },
    settings: { reps, warmup, shapes: shapeSet, only, full, date: new Date().toISOString(), ort: (opts.ort ?? true) && (!only || only === "gemv" || only === "ort"), ...(layers !== undefined ? { layers } : {}) },
    roofline: roof,
    results,
  };
  const files: string[] = [];
  if (opts.outDir !== null) {
    const dir = opts.outDir ?? DEFAULT_RESULTS_DIR;
    mkdirSync(dir, { recursive: true });
    // A partial run (--only, small shapes) does not overwrite the full run's files.
    const suffix = [only, small ? "small" : null, full ? "full" : null].filter(Boolean).join("-");
    const stem = `${dir.replace(/\/?$/, "/")}${deviceSlug(gpu.adapterInfo)}${suffix ? `.${suffix}` : ""}`;
    writeFileSync(`${stem}.json`, JSON.stringify(report, null, 2) + "\n");
    writeFileSync(`${stem}.md`, markdown(report) + "\n");
    files.push(`${stem}.json`, `${stem}.md`);
    if (results.some((x) => x.best)) {
      writeFileSync(`${stem}.svg`, svgPlot(report));
      files.push(`${stem}.svg`);
    }
  }
  return { report, files };
}
