// bench/kernels.ts — GEMV / GEMM timings of every matmul kernel the project ships, on one device:
// y (M, N) = x (M, K) · W (N, K)ᵀ with W as f32 or f16 (src/nn/matmul.ts) or packed int8 / int4 g32 /
// int4 g128 through every qmatmul variant the device can run (src/quant/matmul.ts). Each row is first
// checked against the float64 reference on (the dequantized) W over sampled outputs, and only timed
// if it agrees; then warm-up + reps runs with x rotated over 3 inputs and W over up to 4 copies (so
// no run finds its operands in a cache the previous run warmed). Weights are random in [-1, 1), x in
// [-1, 1): never zeros.

import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { convertF32ToF16 } from "../nn/convert.ts";
import { DENSE_VARIANTS, denseVariantUnavailable, matmul } from "../nn/matmul.ts";
import { groupsPerRow, type HostPackedWeight, packedBytes, quantSpec, type QuantSpec, wordsPerRow, zeroWordsPerRow } from "../quant/formats.ts";
import { qmatmul, QMATMUL_ALL_VARIANTS, type QMatmulAnyVariant, variantUnavailable } from "../quant/matmul.ts";
import { dequantizePacked } from "../quant/pack.ts";
import { destroyPacked, downloadPacked, emptyPacked, type GpuPackedWeight } from "../quant/packed.ts";
import { quantizeRtn } from "../quant/rtn.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "../common/half.ts";
import { randomF32 } from "../common/random.ts";
import type { BenchTimer } from "./timer.ts";

export type BenchDType = "f32" | "f16" | "int8" | "int4";

/**
 * One timed (or rejected) row: a kernel on one shape and M (kind gemv / gemm), a peer library's
 * product on the same shape (`peer` set: src/bench/ort.ts), a whole-model step (kind e2e:
 * src/bench/e2e.ts) or a quantization time (kind quant: src/bench/quant_time.ts).
 */
export interface BenchRow {
  /** Kernel: "matmul" (nn) or a qmatmul variant, with ".g<G>" for int4; "ort-…" for ONNX Runtime; "decode" / "prefill"; "rtn" / "awq". */
  name: string;
  dtype: BenchDType;
  /** int4 group size. */
  group?: number;
  variant: string;
  kind: "gemv" | "gemm" | "e2e" | "quant";
  m: number;
  n: number;
  k: number;
  median_ms: number;
  min_ms: number;
  /** Median wall time (submit -> done), for comparison with the GPU timer. */
  wall_median_ms: number;
  timer: string;
  reps: number;
  /** Bytes of W as stored (packed: qweight + scales + zeros). */
  weight_bytes: number;
  /** weight_bytes / median time, GB/s (1e9). */
  gbps: number;
  /** gbps as % of the WGSL copy bandwidth (read + write) of the roofline probe; null without it. */
  pct_copy: number | null;
  gflops: number;
  /** median of the f16 kernel at the same shape and M / this median; null when f16 did not run. */
  speedup_vs_f16: number | null;
  /** ||y - ref|| / ||ref|| over the sampled outputs, and the bound it had to meet. */
  rel_err: number;
  tol: number;
  best?: boolean;
  /** Set when the row failed validation (then it is not timed: times are NaN). */
  error?: string;
  /** Set when the row could not run here (a peer library or its backend is missing): the reason. Times are NaN. */
  unavailable?: string;
  /** Peer rows: the library that ran it ("onnxruntime-node 1.30.0 (webgpu EP)"). */
  peer?: string;
  /** Peer rows: the same library's time for a trivial model with the same input (its fixed cost per run), ms. */
  overhead_ms?: number;
  /** Peer rows: relative error of the same model on the peer's CPU backend (checks the weight layout). */
  cpu_rel_err?: number;
  /** Peer rows: median of the project's fastest kernel of the same dtype (and int4 group), shape and M / this median. */
  vs_best_project?: number | null;
  /** Peer rows: that kernel of the project (its name; its median is median_ms · vs_best_project). */
  project_kernel?: string;
  /** e2e and quant rows: the model ("synthetic:1b", "stories260K") and the blocks (layers) it had. */
  model?: string;
  layers?: number;
  /** e2e rows: tokens per forward (M) / median seconds per forward. */
  tokens_per_s?: number;
  /** quant rows: seconds per block (median) and per 1e9 weights of the blocks' linears. */
  seconds_per_block?: number;
  seconds_per_billion?: number;
  params_per_block?: number;
}

/** What a peer library (src/bench/ort.ts) gets for one (shape, M): the same weights and inputs as the kernel rows. */
export interface PeerContext {
  shape: Shape;
  kind: "gemv" | "gemm";
  M: number;
  /** The 3 inputs x (M, K) the kernel rows rotate over. */
  x: Float32Array[];
  /** W (N, K) f32 row-major, and its f16 bits as the project's f16 rows use them. */
  w32: () => Float32Array;
  w16: () => Promise<Uint16Array>;
  /** Reference rows of W at the sampled outputs: f32, f16-rounded, and dequantized int4 per group size (with the full packed weight). */
  refs: { f32: Float32Array; f16: Float32Array | null; int4: { group: number; host: HostPackedWeight; ref: Float32Array }[] };
  /** ||y − x·Wsᵀ|| / ||x·Wsᵀ|| over the sampled rows and columns. */
  error: (y: Float32Array, x: Float32Array, ws: Float32Array) => number;
  include: (dtype: BenchDType, variant: string) => boolean;
  reps: number;
  warmup: number;
  log: (msg: string) => void;
}

export interface Shape {
  n: number;
  k: number;
  label: string;
}

export interface KernelBenchPlan {
  shapes: Shape[];
  /** M values per shape and kind (gemv: M <= 8). */
  ms: (shape: Shape) => { gemv: number[]; gemm: number[] };
  /** Which variants to run for (dtype, variant, M); default all the device can run. */
  include?: (dtype: BenchDType, variant: string, m: number, shape: Shape) => boolean;
  reps: number;
  warmup: number;
  /** WGSL copy GB/s of the roofline (for pct_copy). */
  copyGbps: number | null;
  log: (msg: string) => void;
  /** A peer library's rows for each (shape, M), after the kernel rows (src/bench/ort.ts benchOrt). */
  peer?: (p: PeerContext) => Promise<BenchRow[]>;
  /** Variant names of the peer, for `include` (the weights it needs are made when any is included). */
  peerVariants?: readonly { variant: string; dtype: BenchDType }[];
}

/** Validation bounds: f32 accumulation; f16 activations; int8 activations (dp4a flavours). */
export const TOLERANCE = { exact: 1e-4, f16x: 3e-3, int8x: 2e-2 } as const;

/** Weights smaller than this rotate over copies (up to 4) that together exceed it: last-level caches. */
const WEIGHT_ROTATION_BYTES = 32 << 20;
const SAMPLE_COLS = 48;
const SAMPLE_ROWS = 8;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Runs the plan; rows in (shape, kind, M, dtype, variant) order, "best" not yet marked. */
export async function benchKernels(ctx: GpuContext, timer: BenchTimer, plan: KernelBenchPlan): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const shape of plan.shapes) {
    const { gemv, gemm } = plan.ms(shape);
    if (!gemv.length && !gemm.length) continue;
    const t0 = performance.now();
    const set = await makeWeights(ctx, shape, plan);
    plan.log(`shape ${shape.label} (N=${shape.n}, K=${shape.k}): weights ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      for (const [kind, list] of [["gemv", gemv], ["gemm", gemm]] as const) {
        for (const m of list) rows.push(...(await benchShapeM(ctx, timer, plan, set, kind, m)));
      }
    } finally {
      set.destroy();
    }
  }
  return rows;
}

/** Marks "best": true on the fastest valid kernel row (gemv / gemm, not a peer's) of each (dtype, n, k, m). */
export function markBest(rows: BenchRow[]): void {
  const best = new Map<string, BenchRow>();
  for (const r of rows) {
    if (r.error || r.unavailable || r.peer || (r.kind !== "gemv" && r.kind !== "gemm") || !Number.isFinite(r.median_ms)) continue;
    const key = `${r.dtype}|${r.n}|${r.k}|${r.m}`;
    const b = best.get(key);
    if (!b || r.median_ms < b.median_ms) best.set(key, r);
  }
  for (const r of rows) delete r.best;
  for (const r of best.values()) r.best = true;
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

interface DenseW { dtype: "f32" | "f16"; copies: GpuTensor[]; bytes: number; ref: Float32Array }
interface PackedW { dtype: "int8" | "int4"; group?: number; spec: QuantSpec; copies: GpuPackedWeight[]; bytes: number; ref: Float32Array; host?: HostPackedWeight }
/** wf: the host W, kept when a peer runs. */
interface WeightSet { shape: Shape; cols: number[]; dense: DenseW[]; packed: PackedW[]; wf: Float32Array | null; destroy(): void }

/** Random W (N, K) on the GPU as f32, f16, int8, int4 g32 / g128; host reference rows for the sampled columns. */
async function makeWeights(ctx: GpuContext, shape: Shape, plan: KernelBenchPlan): Promise<WeightSet> {
  const { gpu } = ctx;
  const { n: N, k: K } = shape;
  const cols = sampleCols(N);
  const wf = fastRandom(N * K, N * 31 + K);
  const sampled = new Float32Array(cols.length * K);
  cols.forEach((c, i) => sampled.set(wf.subarray(c * K, (c + 1) * K), i * K));
  const w32 = GpuTensor.fromHost(gpu, wf, [N, K], "f32", `W${shape.label}.f32`);
  const owned: (() => void)[] = [];
  const copiesOf = (bytes: number) => Math.max(1, Math.min(4, Math.ceil(WEIGHT_ROTATION_BYTES / bytes)));
  const dense: DenseW[] = [];
  const packed: PackedW[] = [];
  try {
    const variants = ["matmul", ...QMATMUL_ALL_VARIANTS, ...(plan.peer ? (plan.peerVariants ?? []).map((p) => p.variant) : [])];
    const want = (d: BenchDType) => !plan.include || variants.some((v) => plan.include!(d, v, 1, shape) || plan.include!(d, v, 16, shape));
    if (want("f32")) {
      const n = copiesOf(N * K * 4);
      const copies = [w32];
      const b = new CommandBatch(gpu, "bench.copies");
      for (let i = 1; i < n; i++) {
        const t = GpuTensor.empty(gpu, [N, K], "f32", `W${shape.label}.f32.${i}`);
        b.copy(w32, t);
        copies.push(t);
      }
      b.submit();
      dense.push({ dtype: "f32", copies, bytes: N * K * 4, ref: sampled });
      owned.push(() => copies.slice(1).forEach((t) => t.destroy()));
    }
    if (want("f16")) {
      const copies: GpuTensor[] = [];
      const b = new CommandBatch(gpu, "bench.f16");
      for (let i = 0; i < copiesOf(N * K * 2); i++) {
        const t = GpuTensor.empty(gpu, [N, K], "f16", `W${shape.label}.f16.${i}`);
        await convertF32ToF16(ctx, b, w32, t);
        copies.push(t);
      }
      b.submit();
      dense.push({ dtype: "f16", copies, bytes: N * K * 2, ref: f16ArrayToF32(f32ArrayToF16(sampled)) });
      owned.push(() => copies.forEach((t) => t.destroy()));
    }
    for (const [dtype, bits, G] of [["int8", 8, undefined], ["int4", 4, 32], ["int4", 4, 128]] as const) {
      if (!want(dtype)) continue;
      const spec = quantSpec(bits, N, K, G, false);
      const copies: GpuPackedWeight[] = [];
      owned.push(() => copies.forEach(destroyPacked));
      copies.push(await quantizeRtn(ctx, w32, { bits, groupSize: G, sym: false }));
      const b = new CommandBatch(gpu, "bench.packed_copies"); // copies: buffer copies, not re-quantization
      for (let i = 1; i < copiesOf(packedBytes(spec).total); i++) {
        const c = emptyPacked(gpu, spec, `W${shape.label}.${dtype}.${i}`);
        b.copy(copies[0].qweight, c.qweight).copy(copies[0].scales, c.scales);
        if (c.zeros) b.copy(copies[0].zeros!, c.zeros);
        copies.push(c);
      }
      b.submit();
      const host = await downloadPacked(copies[0]);
      const ref = dequantizePacked(pickRows(host, cols));
      packed.push({ dtype, group: G, spec, copies, bytes: packedBytes(spec).total, ref, ...(plan.peer && dtype === "int4" ? { host } : {}) });
    }
    await gpu.sync();
  } catch (e) {
    owned.forEach((f) => f());
    w32.destroy();
    throw e;
  }
  return {
    shape,
    cols,
    dense,
    packed,
    wf: plan.peer ? wf : null,
    destroy: () => {
      owned.forEach((f) => f());
      w32.destroy();
    },
  };
}

async function benchShapeM(ctx: GpuContext, timer: BenchTimer, plan: KernelBenchPlan, set: WeightSet, kind: "gemv" | "gemm", M: number): Promise<BenchRow[]> {
  const { gpu } = ctx;
  const { n: N, k: K, label } = set.shape;
  const xh = [0, 1, 2].map((i) => randomF32(M * K, 1000 * M + i + K));
  const x = xh.map((h, i) => GpuTensor.fromHost(gpu, h, [M, K], "f32", `x${i}`));
  const x16h = xh.map((h) => f32ArrayToF16(h));
  const x16 = x16h.map((h, i) => GpuTensor.fromHost(gpu, h, [M, K], "f16", `x16.${i}`));
  const y = [0, 1].map((i) => GpuTensor.empty(gpu, [M, N], "f32", `y${i}`));
  const y16 = [0, 1].map((i) => GpuTensor.empty(gpu, [M, N], "f16", `y16.${i}`));
  const mRows = sampleRows(M);
  const x32ref = f16ArrayToF32(f32ArrayToF16(xh[0])); // f16-rounded x for tiled_f16
  const rows: BenchRow[] = [];
  const include = (d: BenchDType, v: string) => !plan.include || plan.include(d, v, M, set.shape);
  try {
    const jobs: { dtype: BenchDType; group?: number; variant: string; bytes: number; tol: number; ref: Float32Array; f16x: boolean; record: (rep: number, b: CommandBatch) => Promise<unknown> }[] = [];
    for (const d of set.dense) {
      for (const v of DENSE_VARIANTS) {
        const name = v === "tiled" ? "matmul" : "matmul_sg";
        if (!include(d.dtype, name) || denseVariantUnavailable(gpu, v, M)) continue;
        jobs.push({ dtype: d.dtype, variant: name, bytes: d.bytes, tol: TOLERANCE.exact, ref: d.ref, f16x: false, record: (r, b) => matmul(ctx, b, x[r % 3], d.copies[r % d.copies.length], y[r % 2], { variant: v }) });
      }
    }
    for (const p of set.packed) {
      for (const v of QMATMUL_ALL_VARIANTS) {
        const f16x = v === "tiled_f16";
        if (!include(p.dtype, v) || variantUnavailable(gpu, v, p.spec, M, f16x ? "f16" : "f32")) continue;
        const tol = f16x ? TOLERANCE.f16x : v === "dp4a" || v === "kmajor_dp4a" ? TOLERANCE.int8x : TOLERANCE.exact;
        const variant = v as QMatmulAnyVariant;
        jobs.push({
          dtype: p.dtype, group: p.group, variant: v, bytes: p.bytes, tol, ref: p.ref, f16x,
          record: (r, b) => qmatmul(ctx, b, f16x ? x16[r % 3] : x[r % 3], p.copies[r % p.copies.length], f16x ? y16[r % 2] : y[r % 2], { variant }),
        });
      }
    }
    for (const j of jobs) {
      const name = j.group ? `${j.variant}.g${j.group}` : j.variant;
      // Validate (rep 0 uses x[0], copy 0, y[0]); this run also compiles and repacks.
      const b = new CommandBatch(gpu, "bench.validate");
      await j.record(0, b);
      b.submit();
      const out = j.f16x ? f16ArrayToF32((await y16[0].toHost()) as Uint16Array) : ((await y[0].toHost()) as Float32Array);
      const err = sampledError(out, j.f16x ? x32ref : xh[0], j.ref, set.cols, mRows, N, K);
      const base: BenchRow = {
        name, dtype: j.dtype, ...(j.group ? { group: j.group } : {}), variant: j.variant, kind, m: M, n: N, k: K,
        median_ms: NaN, min_ms: NaN, wall_median_ms: NaN, timer: timer.kind, reps: plan.reps, weight_bytes: j.bytes,
        gbps: NaN, pct_copy: null, gflops: NaN, speedup_vs_f16: null, rel_err: err, tol: j.tol,
      };
      if (!(err <= j.tol)) {
        plan.log(`  ${label} M=${M} ${j.dtype} ${name}: FAILED validation (rel err ${err.toExponential(2)} > ${j.tol}); not timed`);
        rows.push({ ...base, error: `relative error ${err} exceeds ${j.tol}` });
        continue;
      }
      // The validation run was the first warm-up (JIT, repack); rep indices go on from 1 so the
      // rotation of x, y and W copies continues from it.
      const s = await timer.measure((r, b) => j.record(r + 1, b), { warmup: Math.max(0, plan.warmup - 1), reps: plan.reps });
      const row: BenchRow = {
        ...base, median_ms: s.median, min_ms: s.min, wall_median_ms: s.wallMedian, timer: s.timer,
        gbps: j.bytes / (s.median * 1e6), gflops: (2 * M * N * K) / (s.median * 1e6),
      };
      row.pct_copy = plan.copyGbps ? (100 * row.gbps) / plan.copyGbps : null;
      rows.push(row);
      plan.log(`  ${label} M=${M} ${j.dtype.padEnd(4)} ${name.padEnd(18)} ${s.median.toFixed(3)} ms (min ${s.min.toFixed(3)}), err ${err.toExponential(1)}`);
    }
  } finally {
    for (const t of [...x, ...x16, ...y, ...y16]) t.destroy();
  }
  // the baseline: the fastest f16 kernel at this shape and M
  const f16 = rows.filter((r) => r.dtype === "f16" && !r.error && Number.isFinite(r.median_ms)).sort((a, b) => a.median_ms - b.median_ms)[0];
  for (const r of rows) if (f16 && !r.error) r.speedup_vs_f16 = f16.median_ms / r.median_ms;
  if (plan.peer && set.wf) {
    const dense16 = set.dense.find((d) => d.dtype === "f16");
    const wf = set.wf;
    const peerRows = await plan.peer({
      shape: set.shape, kind, M, x: xh,
      w32: () => wf,
      w16: async () => (dense16 ? ((await dense16.copies[0].toHost()) as Uint16Array) : f32ArrayToF16(wf)),
      refs: {
        f32: set.dense.find((d) => d.dtype === "f32")?.ref ?? pickDense(wf, set.cols, K),
        f16: dense16?.ref ?? null,
        int4: set.packed.filter((p) => p.dtype === "int4" && p.host).map((p) => ({ group: p.group!, host: p.host!, ref: p.ref })),
      },
      error: (yv, xv, ws) => sampledError(yv, xv, ws, set.cols, mRows, N, K),
      include: (d, v) => include(d, v),
      reps: plan.reps,
      warmup: plan.warmup,
      log: plan.log,
    });
    for (const r of peerRows) {
      if (r.error || r.unavailable) continue;
      const own = rows.filter((o) => o.dtype === r.dtype && o.group === r.group && !o.error && Number.isFinite(o.median_ms));
      const fastest = own.sort((a, b) => a.median_ms - b.median_ms)[0];
      r.vs_best_project = fastest ? fastest.median_ms / r.median_ms : null;
      if (fastest) r.project_kernel = fastest.name;
      if (f16) r.speedup_vs_f16 = f16.median_ms / r.median_ms;
      r.pct_copy = plan.copyGbps ? (100 * r.gbps) / plan.copyGbps : null;
    }
    rows.push(...peerRows);
  }
  return rows;
}

/**
 * n floats uniform in (-1, 1), never 0, from a 32-bit LCG (seeded): ~6x faster than
 * src/common/random.ts for the 45M weights of an 11008x4096 matrix; quality is irrelevant for timing.
 */
function fastRandom(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  let a = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    bits[i] = 0x40000000 | ((a >>> 9) | 1); // [2, 4) with an odd mantissa, so v - 3 != 0
  }
  for (let i = 0; i < n; i++) out[i] -= 3;
  return out;
}

/** Up to SAMPLE_COLS output columns spread over 0..N-1, first and last included. */
function sampleCols(N: number): number[] {
  const n = Math.min(N, SAMPLE_COLS);
  return [...new Set(Array.from({ length: n }, (_, i) => Math.round((i * (N - 1)) / Math.max(n - 1, 1))))];
}
function sampleRows(M: number): number[] {
  const n = Math.min(M, SAMPLE_ROWS);
  return [...new Set(Array.from({ length: n }, (_, i) => Math.round((i * (M - 1)) / Math.max(n - 1, 1))))];
}

/** Rows `cols` of W (N, K) f32, concatenated. */
function pickDense(w: Float32Array, cols: number[], K: number): Float32Array {
  const out = new Float32Array(cols.length * K);
  cols.forEach((c, i) => out.set(w.subarray(c * K, (c + 1) * K), i * K));
  return out;
}

/** The rows `rows` of a packed weight as a packed weight of its own (for a partial dequantized reference). */
function pickRows(p: HostPackedWeight, rows: number[]): HostPackedWeight {
  const KW = wordsPerRow(p);
  const ng = groupsPerRow(p);
  const ZW = zeroWordsPerRow(p);
  const n = rows.length;
  const qweight = new Uint32Array(n * KW);
  const halvesIn = new Uint16Array(p.scales.buffer, p.scales.byteOffset, p.N * ng);
  const scales = new Uint32Array(Math.ceil((n * ng) / 2));
  const halves = new Uint16Array(scales.buffer, 0, n * ng);
  const zeros = p.zeros ? new Uint32Array(n * ZW) : null;
  rows.forEach((r, i) => {
    qweight.set(p.qweight.subarray(r * KW, (r + 1) * KW), i * KW);
    halves.set(halvesIn.subarray(r * ng, (r + 1) * ng), i * ng);
    if (zeros) zeros.set(p.zeros!.subarray(r * ZW, (r + 1) * ZW), i * ZW);
  });
  return { ...p, N: n, qweight, scales, zeros };
}

/** ||y - ref|| / ||ref|| over rows mRows x sampled columns; ref = x · Wsᵀ in float64 (Ws = sampled rows of W). */
function sampledError(y: Float32Array, x: Float32Array, ws: Float32Array, cols: number[], mRows: number[], N: number, K: number): number {
  let num = 0;
  let den = 0;
  for (const m of mRows) {
    cols.forEach((c, i) => {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k] * ws[i * K + k];
      const v = y[m * N + c];
      if (!Number.isFinite(v)) num = Infinity;
      num += (v - acc) ** 2;
      den += acc * acc;
    });
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}
