// train/adamw.ts — AdamW on GPU-resident f32 tensors (shaders/train/adamw.wgsl), the squared gradient
// norm for clipping (GPU partial sums, added on the host in float64), and the host-side learning-rate
// schedules. Everything is deterministic for a given input: fixed summation orders, no atomics.
//
//   const norm = await gradNorm(ctx, grads);               // global L2 norm over all gradients
//   const gradScale = clipFactor(norm, 1.0);               // min(1, maxNorm / (norm + 1e-6))
//   const lr = learningRate(t, { kind: "cosine", lr: 1e-4, warmup: 100, total: 1000 });
//   const b = new CommandBatch(ctx.gpu, "adamw");
//   for (const p of params) await adamwStep(ctx, b, p, t, { lr, weightDecay: 0.01, gradScale });
//   b.submit();

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { sumPartials } from "../nn/reduce.ts";

const FILE = "train/adamw.wgsl";
const WG = 256;
/** Elements per partial sum of squares. */
const CHUNK = 1024;

export interface AdamWOptions {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (p -= lr·wd·p); default 0. */
  weightDecay?: number;
  /** Multiplies every gradient before the update (gradient clipping, loss-scale undo); default 1. */
  gradScale?: number;
}

/** One parameter tensor with its gradient and moments, all f32 with the same element count. */
export interface AdamWTensors {
  param: GpuTensor;
  grad: GpuTensor;
  m: GpuTensor;
  v: GpuTensor;
}

const NO_STEP = { lr: 0, beta1: 0, beta2: 0, eps: 0, weight_decay: 0, bc1: 1, bc2: 1, grad_scale: 1 };

function flat(t: GpuTensor, n: number, what: string): GpuTensor {
  if (t.dtype !== "f32" || t.numel !== n) throw new TensorError(t.label, `AdamW ${what} must be f32 with ${n} elements, got ${t.dtype} [${t.shape}]`);
  return t.view(`${t.label}.flat`, [n], 0);
}

/**
 * Records one AdamW update of `t.param` (step `step` = 1, 2, ... — the bias-correction exponent):
 * m, v updated in place; p -= lr·(m̂/(sqrt(v̂)+eps) + weightDecay·p).
 */
export async function adamwStep(ctx: GpuContext, batch: CommandBatch, t: AdamWTensors, step: number, opts: AdamWOptions): Promise<void> {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, gradScale = 1 } = opts;
  if (!Number.isInteger(step) || step < 1) throw new UsageError(`AdamW step must be an integer >= 1 (got ${step})`);
  for (const [name, x] of Object.entries({ lr, beta1, beta2, eps, weightDecay, gradScale })) {
    if (!Number.isFinite(x)) throw new UsageError(`AdamW ${name} must be finite (got ${x})`);
  }
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) throw new UsageError(`AdamW betas must be in [0, 1) (got ${beta1}, ${beta2})`);
  const n = t.param.numel;
  const p = flat(t.param, n, "param");
  const views = { grad: flat(t.grad, n, "grad"), m: flat(t.m, n, "m"), v: flat(t.v, n, "v") };
  if (n === 0) return;
  const k = await ctx.kernels.get(FILE, "step", { WG_SIZE: WG });
  const params = {
    nparts: 0, part0: 0, lr, beta1, beta2, eps, weight_decay: weightDecay,
    bc1: 1 - beta1 ** step, bc2: 1 - beta2 ** step, grad_scale: gradScale,
  };
  for (const w of p.rowWindows()) {
    const at = (x: GpuTensor) => ({ tensor: x, byteOffset: w.byteOffset, byteSize: w.byteSize });
    batch.dispatch(k, { param: at(p), grad: at(views.grad), m: at(views.m), v: at(views.v) }, { ...params, n: w.rows }, k.grid1d(Math.ceil(w.rows / WG)));
  }
}

/**
 * Records the partial sums of grad² into a new f32 tensor (returned; the caller reads and destroys
 * it). Add its values in float64, in order, for the exact-order sum of squares (sumPartials).
 */
export async function gradSumSquares(ctx: GpuContext, batch: CommandBatch, grad: GpuTensor): Promise<GpuTensor> {
  const n = grad.numel;
  const g = flat(grad, n, "grad");
  const windows = n ? g.rowWindows() : [];
  const counts = windows.map((w) => Math.max(1, Math.ceil(w.rows / CHUNK)));
  const total = counts.reduce((a, b) => a + b, 0);
  const partials = GpuTensor.empty(ctx.gpu, [Math.max(total, 1)], "f32", `${grad.label}.sumsq`);
  if (!total) return partials;
  const k = await ctx.kernels.get(FILE, "sumsq", { WG_SIZE: WG });
  let part0 = 0;
  windows.forEach((w, i) => {
    batch.dispatch(
      k,
      { grad: { tensor: g, byteOffset: w.byteOffset, byteSize: w.byteSize }, partials },
      { ...NO_STEP, n: w.rows, nparts: counts[i], part0 },
      k.grid1d(Math.ceil(counts[i] / WG)),
    );
    part0 += counts[i];
  });
  return partials;
}

/** Global L2 norm sqrt(Σ over all tensors of Σ g²); submits its own batch and waits for the result. */
export async function gradNorm(ctx: GpuContext, grads: readonly GpuTensor[]): Promise<number> {
  const b = new CommandBatch(ctx.gpu, "grad_norm");
  const parts: GpuTensor[] = [];
  try {
    for (const g of grads) parts.push(await gradSumSquares(ctx, b, g));
    b.submit();
    let s = 0;
    for (const p of parts) s += sumPartials((await p.toHost()) as Float32Array);
    return Math.sqrt(s);
  } finally {
    for (const p of parts) p.destroy();
  }
}

/** The gradient multiplier for norm clipping: min(1, maxNorm / (norm + 1e-6)) (PyTorch's clip_grad_norm_). */
export function clipFactor(norm: number, maxNorm: number): number {
  if (!Number.isFinite(norm)) throw new UsageError(`gradient norm is not finite (${norm})`);
  return Math.min(1, maxNorm / (norm + 1e-6));
}

export interface LrSchedule {
  /** constant after warm-up, cosine decay to minLr, or linear decay to minLr. */
  kind: "constant" | "cosine" | "linear";
  /** Peak learning rate. */
  lr: number;
  /** Total optimizer steps (the decay ends at step `total`). */
  total: number;
  /** Linear warm-up steps (default 0): lr · step / warmup for step <= warmup. */
  warmup?: number;
  /** Final learning rate of the decay (default 0). */
  minLr?: number;
}

/**
 * Learning rate at optimizer step `step` (1-based, the same t AdamW uses): linear warm-up from
 * lr/warmup to lr over steps 1..warmup, then with progress p = (step − warmup)/(total − warmup)
 * clamped to [0, 1]: cosine minLr + (lr − minLr)·(1 + cos(πp))/2, linear lr − (lr − minLr)·p,
 * or constant lr.
 */
export function learningRate(step: number, s: LrSchedule): number {
  const warmup = s.warmup ?? 0;
  const minLr = s.minLr ?? 0;
  if (!Number.isInteger(step) || step < 1) throw new UsageError(`learning-rate step must be an integer >= 1 (got ${step})`);
  if (!Number.isInteger(warmup) || warmup < 0 || !(s.total >= warmup)) throw new UsageError(`schedule needs 0 <= warmup (${warmup}) <= total (${s.total})`);
  if (step <= warmup) return (s.lr * step) / warmup;
  if (s.kind === "constant") return s.lr;
  const span = s.total - warmup;
  const p = span > 0 ? Math.min(1, (step - warmup) / span) : 1;
  if (s.kind === "cosine") return minLr + (s.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * p));
  return s.lr - (s.lr - minLr) * p;
}
