// bench/ort.ts — ONNX Runtime as a peer on the same device: the GEMV/GEMM products of the kernel
// rows, run by onnxruntime-node's WebGPU execution provider on single-node models built in memory
// (src/bench/onnx.ts), on the same weights the project's kernels use:
//
//   ort-f32            MatMul, f32 A and B (B = Wᵀ)
//   ort-f16            MatMul, f16 A and B (A rounded to f16 as for the project's tiled_f16)
//   ort-int4.g<G>      MatMulNBits, 4-bit, block G, f32 A, f32 scales, zero points: the project's
//                      packed int4 weight (formats.ts), bytes mapped by packedToMatMulNBits
//   ort-int4-acc4.g<G> the same with accuracy_level = 4 (ORT quantizes A to int8: its dp4a path)
//
// Each model is first run on ORT's CPU EP and checked against the float64 reference (the byte
// layout of B / scales / zero_points is right), then created on the WebGPU EP with CPU fallback
// disabled (so no node silently runs on the CPU), checked again, and only then timed. Times are
// the wall time of `session.run` with inputs and outputs on the host: they include the upload of A
// and the readback of Y, which the project's rows do not. `overhead_ms` is the same run for an
// elementwise Add of A (one trivial kernel, the same upload and a readback of M·K values): about
// the fixed part of each ORT time.
//
// onnxruntime-node is an optional dependency: when it is missing, or its WebGPU EP does not load,
// every ORT row says `unavailable: <reason>` and the bench goes on.

import { createRequire } from "node:module";
import { f16ArrayToF32, f32ArrayToF16 } from "../common/half.ts";
import { addModel, matmulModel, matmulNBitsModel } from "./onnx.ts";
import type { BenchDType, BenchRow, PeerContext } from "./kernels.ts";
import { median } from "./timer.ts";

/** The part of onnxruntime-node's API used here. */
interface OrtTensor {
  readonly data: Float32Array | Uint16Array | ArrayLike<number>;
}
interface OrtSession {
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface OrtModule {
  InferenceSession: { create(model: Uint8Array, opts: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: "float32" | "float16", data: Float32Array | Uint16Array, dims: number[]) => OrtTensor;
  env: { versions?: Record<string, string>; logLevel?: string };
}

export interface OrtRuntime {
  ort: OrtModule;
  /** "onnxruntime-node 1.30.0 (webgpu EP)" */
  label: string;
}

/** Variant names and their dtype; int4 variants run once per group size. */
export const ORT_VARIANTS = [
  { variant: "ort-f32", dtype: "f32" },
  { variant: "ort-f16", dtype: "f16" },
  { variant: "ort-int4", dtype: "int4" },
  { variant: "ort-int4-acc4", dtype: "int4" },
] as const satisfies readonly { variant: string; dtype: BenchDType }[];

/**
 * Validation bounds: f32 accumulation; int8 A (accuracy_level 4); f16 A and B, where ORT's WebGPU
 * kernels also accumulate in f16, so the error grows with K (9e-3 measured at K = 4096). The CPU EP
 * check holds the f16 model to the same bound; the layout itself is checked by the f32 / int4 rows.
 */
const TOL = { f32: 1e-4, acc4: 2e-2, f16: (K: number) => Math.max(5e-3, 3e-4 * Math.sqrt(K)) } as const;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

const opened = new Map<string, Promise<OrtRuntime | { unavailable: string }>>();

/** The package loaded by default. */
export const ORT_PACKAGE = "onnxruntime-node";

/**
 * Loads onnxruntime-node (or the package `name`) and checks that its WebGPU EP runs a one-node
 * model, once per process. Never throws: a missing package or EP is `{ unavailable: reason }`.
 */
export function openOrt(name: string = ORT_PACKAGE): Promise<OrtRuntime | { unavailable: string }> {
  const cached = opened.get(name);
  if (cached) return cached;
  const p = (async (): Promise<OrtRuntime | { unavailable: string }> => {
    let ort: OrtModule;
    try {
      ort = createRequire(import.meta.url)(name) as OrtModule;
    } catch (e) {
      return { unavailable: `${name} is not installed (${firstLine(e)}); it is an optional dependency: ONNXRUNTIME_NODE_INSTALL=skip npm install (the variable skips its postinstall, which fetches CUDA binaries from outside the npm registry)` };
    }
    const version = ort.env.versions?.node ?? ort.env.versions?.common ?? "?";
    ort.env.logLevel = "error";
    try {
      const s = await ort.InferenceSession.create(addModel(8), sessionOptions("webgpu"));
      const y = await s.run({ A: new ort.Tensor("float32", new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), [1, 8]) });
      await s.release();
      if ((y.Y.data as Float32Array)[7] !== 16) return { unavailable: `onnxruntime-node ${version}: the WebGPU EP computed a wrong result on a test model` };
    } catch (e) {
      return { unavailable: `onnxruntime-node ${version}: WebGPU EP failed to load (${firstLine(e)})` };
    }
    return { ort, label: `onnxruntime-node ${version} (webgpu EP)` };
  })();
  opened.set(name, p);
  return p;
}

/** The ORT rows of one (shape, M): validated on the CPU EP and the WebGPU EP, then timed. `pkg`: the package to load. */
export async function benchOrt(p: PeerContext, pkg: string = ORT_PACKAGE): Promise<BenchRow[]> {
  const jobs = plannedJobs(p);
  if (!jobs.length) return [];
  const rt = await openOrt(pkg);
  if (!("ort" in rt)) {
    p.log(`  ${p.shape.label} M=${p.M} onnxruntime: unavailable: ${rt.unavailable}`);
    return jobs.map((j) => ({ ...baseRow(p, j, NaN), unavailable: rt.unavailable }));
  }
  const { ort } = rt;
  const { M } = p;
  const { n: N, k: K } = p.shape;
  const x32 = p.x.map((x) => new ort.Tensor("float32", x, [M, K]));
  const x16h = p.x.map((x) => f32ArrayToF16(x));
  const x16 = x16h.map((x) => new ort.Tensor("float16", x, [M, K]));
  const x16ref = f16ArrayToF32(x16h[0]);
  const rows: BenchRow[] = [];
  const overhead = await timeRuns(ort, addModel(K), (r) => ({ A: x32[r % 3] }), p.warmup, p.reps).catch(() => null);
  for (const j of jobs) {
    const f16 = j.variant === "ort-f16";
    const model = await j.model();
    const feeds = (r: number) => ({ A: f16 ? x16[r % 3] : x32[r % 3] });
    const xref = f16 ? x16ref : p.x[0];
    const base: BenchRow = { ...baseRow(p, j, j.bytes), peer: rt.label, ...(overhead ? { overhead_ms: overhead.median } : {}) };
    // 1. ORT's CPU EP on the same model: the initializers mean what the project's weights mean.
    let cpuErr: number;
    try {
      const s = await ort.InferenceSession.create(model, sessionOptions("cpu"));
      cpuErr = p.error(outputF32(await s.run(feeds(0))), xref, j.ref);
      await s.release();
    } catch (e) {
      rows.push({ ...base, unavailable: `ORT CPU EP: ${firstLine(e)}` });
      continue;
    }
    base.cpu_rel_err = cpuErr;
    if (!(cpuErr <= j.tol)) {
      p.log(`  ${p.shape.label} M=${M} ${j.dtype} ${j.name}: FAILED on ORT's CPU EP (rel err ${cpuErr.toExponential(2)} > ${j.tol}); not timed`);
      rows.push({ ...base, rel_err: cpuErr, error: `ORT CPU EP relative error ${cpuErr} exceeds ${j.tol}: the ONNX initializers do not match the packed weight` });
      continue;
    }
    // 2. The WebGPU EP: validate, then time.
    let s: OrtSession;
    try {
      s = await ort.InferenceSession.create(model, sessionOptions("webgpu"));
    } catch (e) {
      const reason = `WebGPU EP: ${firstLine(e)}`;
      p.log(`  ${p.shape.label} M=${M} ${j.dtype} ${j.name}: unavailable: ${reason}`);
      rows.push({ ...base, unavailable: reason });
      continue;
    }
    try {
      const err = p.error(outputF32(await s.run(feeds(0))), xref, j.ref);
      if (!(err <= j.tol)) {
        p.log(`  ${p.shape.label} M=${M} ${j.dtype} ${j.name}: FAILED validation (rel err ${err.toExponential(2)} > ${j.tol}); not timed`);
        rows.push({ ...base, rel_err: err, error: `relative error ${err} exceeds ${j.tol}` });
        continue;
      }
      const t = await timeSession(s, (r) => feeds(r + 1), Math.max(0, p.warmup - 1), p.reps);
      rows.push({
        ...base, rel_err: err, median_ms: t.median, min_ms: t.min, wall_median_ms: t.median,
        gbps: j.bytes / (t.median * 1e6), gflops: (2 * M * N * K) / (t.median * 1e6),
      });
      p.log(`  ${p.shape.label} M=${M} ${j.dtype.padEnd(4)} ${j.name.padEnd(18)} ${t.median.toFixed(3)} ms (min ${t.min.toFixed(3)}), err ${err.toExponential(1)} [onnxruntime]`);
    } catch (e) {
      const reason = `WebGPU EP run: ${firstLine(e)}`;
      p.log(`  ${p.shape.label} M=${M} ${j.dtype} ${j.name}: unavailable: ${reason}`);
      rows.push({ ...base, unavailable: reason });
    } finally {
      await s.release();
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

interface Job {
  name: string;
  variant: string;
  dtype: BenchDType;
  group?: number;
  bytes: number;
  tol: number;
  ref: Float32Array;
  model: () => Promise<Uint8Array>;
}

function plannedJobs(p: PeerContext): Job[] {
  const { n: N, k: K } = p.shape;
  const jobs: Job[] = [];
  if (p.include("f32", "ort-f32")) jobs.push({ name: "ort-f32", variant: "ort-f32", dtype: "f32", bytes: N * K * 4, tol: TOL.f32, ref: p.refs.f32, model: async () => matmulModel(p.w32(), N, K) });
  if (p.include("f16", "ort-f16") && p.refs.f16) jobs.push({ name: "ort-f16", variant: "ort-f16", dtype: "f16", bytes: N * K * 2, tol: TOL.f16(K), ref: p.refs.f16, model: async () => matmulModel(await p.w16(), N, K) });
  for (const acc4 of [false, true]) {
    const variant = acc4 ? "ort-int4-acc4" : "ort-int4";
    if (!p.include("int4", variant)) continue;
    for (const q of p.refs.int4) {
      if (q.host.K % q.host.G) continue; // MatMulNBits has no ragged last block
      const ng = q.host.K / q.host.G;
      const bytes = (q.host.N * q.host.K) / 2 + q.host.N * ng * 4 + (q.host.zeros ? q.host.N * Math.ceil(ng / 2) : 0);
      jobs.push({
        name: `${variant}.g${q.group}`, variant, dtype: "int4", group: q.group, bytes, tol: acc4 ? TOL.acc4 : TOL.f32, ref: q.ref,
        model: async () => matmulNBitsModel(q.host, { dtype: "float", ...(acc4 ? { accuracyLevel: 4 } : {}) }),
      });
    }
  }
  return jobs;
}

function baseRow(p: PeerContext, j: Job, bytes: number): BenchRow {
  return {
    name: j.name, dtype: j.dtype, ...(j.group ? { group: j.group } : {}), variant: j.variant, kind: p.kind, m: p.M, n: p.shape.n, k: p.shape.k,
    median_ms: NaN, min_ms: NaN, wall_median_ms: NaN, timer: "wall", reps: p.reps, weight_bytes: bytes,
    gbps: NaN, pct_copy: null, gflops: NaN, speedup_vs_f16: null, rel_err: NaN, tol: j.tol,
  };
}

function sessionOptions(ep: "cpu" | "webgpu"): Record<string, unknown> {
  return {
    executionProviders: [ep],
    logSeverityLevel: 3,
    ...(ep === "webgpu" ? { extra: { session: { disable_cpu_ep_fallback: "1" } } } : {}),
  };
}

function outputF32(out: Record<string, OrtTensor>): Float32Array {
  const d = out.Y.data;
  return d instanceof Uint16Array ? f16ArrayToF32(d) : Float32Array.from(d as ArrayLike<number>);
}

async function timeSession(s: OrtSession, feeds: (rep: number) => Record<string, OrtTensor>, warmup: number, reps: number): Promise<{ median: number; min: number }> {
  const ms: number[] = [];
  for (let r = 0; r < warmup + reps; r++) {
    const f = feeds(r);
    const t0 = performance.now();
    await s.run(f);
    if (r >= warmup) ms.push(performance.now() - t0);
  }
  return { median: median(ms), min: Math.min(...ms) };
}

async function timeRuns(ort: OrtModule, model: Uint8Array, feeds: (rep: number) => Record<string, OrtTensor>, warmup: number, reps: number): Promise<{ median: number; min: number }> {
  const s = await ort.InferenceSession.create(model, sessionOptions("webgpu"));
  try {
    return await timeSession(s, feeds, Math.max(1, warmup), reps);
  } finally {
    await s.release();
  }
}

function firstLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  // ORT messages carry a source location prefix: keep the reason after it.
  return s.split("\n")[0].replace(/^\[[^\]]*\]\s*/, "").slice(0, 300);
}
