// train/backward.ts — gradient kernels for training through a Llama block (shaders/train/backward_*.wgsl).
// Every tensor is f32, row-major; T = tokens. Each op records its dispatches into a CommandBatch
// (nothing is read back); scratch tensors are owned by the batch and freed after its submit.
// Outputs may not alias inputs unless stated (WebGPU forbids a buffer bound for reading and writing
// in one dispatch). CPU float64 references: src/ref/backward.ts.
//
//   linearBackward(ctx, b, x, w, dy, dx, dW, opts)
//       y[T, N] = x[T, K] · W[N, K]ᵀ  ->  dx[T, K] = dy · W,  dW[N, K] = dyᵀ · x.
//       dx or dW may be null (not needed). opts.accumulate adds into dW, opts.accumulateDx into dx.
//       W and dW are bound in windows of rows when they exceed one storage binding (x, dy, dx must
//       each fit one binding).
//   rmsnormBackward(ctx, b, x, w, dy, dx, dw, eps, opts)
//       y = x / sqrt(mean(x²) + eps) * w per row of H  ->  dx[T, H], dw[H] (summed over rows).
//       dx or dw may be null. opts.accumulate adds into dw, opts.accumulateDx into dx.
//   ropeBackward(ctx, b, dx, invFreq, T, nh, pos0, seq = 0)
//       In place on the gradient dx[T, nh·D] of the rotated q or k: rotation by the negative angle,
//       same positions as nn/rope.ts (pos0 + t, or pos0 + t % seq for packed sequences).
//   swigluBackward(ctx, b, g, u, dh, dg, du)
//       h = silu(g) * u  ->  dg = dh · u · σ(g)(1 + g(1 − σ(g))),  du = dh · silu(g).
//   Residual add (h = a + f(a)): no kernel; the gradient of a is dh plus the gradient through f,
//       so add branch gradients with src/nn/elementwise.ts addInPlace(ctx, b, dA, dBranch), or pass
//       accumulateDx to the op that produces the branch gradient (linear, RMSNorm).
//   embeddingBackward(ctx, b, idsHost, dOut, dE, opts)
//       out[t] = E[ids[t]]  ->  dE[V, H] = Σ_t onehot(ids[t]) dOut[t]. The ids stay on the host: it
//       builds a CSR list of positions per distinct id; one invocation per (distinct id, column) sums
//       its rows in ascending t — no atomics, deterministic. Without opts.accumulate dE is zeroed
//       first; with it the sums are added. dE is bound in row windows when it exceeds one binding.
//   crossEntropyBackward(ctx, b, logits, targets, dlogits, lossSum, opts)
//       loss = mean over scored rows of −log softmax(logits[t])[targets[t]]; targets u32, IGNORE_INDEX
//       (0xffffffff, or any id >= V) = row not scored. dlogits = (softmax − onehot) · s with
//       s = 1 / scored rows (opts.scale replaces it, e.g. 1 / tokens of a whole accumulated batch);
//       unscored rows get 0. lossSum (f32, at least 2) receives [NLL sum, scored rows].
//       dlogits may be the logits tensor itself (computed in place). Then linearBackward on
//       (x, W_head, dlogits) gives dx and dW of the LM head.
//   mseBackward(ctx, b, y, ref, dy, lossSum, opts)
//       loss = mean((y − ref)²) over n elements -> dy = 2 (y − ref) · s, s = 1 / n unless opts.scale;
//       lossSum (f32, at least 2) receives [Σ (y − ref)², n].

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { addInPlace, transpose } from "../nn/elementwise.ts";
import { matmulWt, matmulWtPreferred } from "../nn/matmul.ts";

/** Target id marking a row with no loss (crossEntropyBackward). */
export const IGNORE_INDEX = 0xffffffff;

const LINEAR = "train/backward_linear.wgsl";
const NORM = "train/backward_norm.wgsl";
const POINTWISE = "train/backward_pointwise.wgsl";
const LOSS = "train/backward_loss.wgsl";

const WG = 64;
const GEMM_WG = 8;
const GEMM_TILE = 4;
/** Pairs folded per invocation by sum_pairs. */
const SUM_CHUNK = 256;
/** Elements per invocation in mse_grad. */
const MSE_CHUNK = 16;

function requireF32(t: GpuTensor, what: string, numel?: number): void {
  t.assertAlive();
  if (t.dtype !== "f32") throw new TensorError(t.label, `${what} must be f32, got ${t.dtype}`);
  if (numel !== undefined && t.numel !== numel) throw new TensorError(t.label, `${what} must hold ${numel} elements, got [${t.shape}]`);
}

function sameBuffer(a: GpuTensor, b: GpuTensor): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteSize && b.byteOffset < a.byteOffset + a.byteSize;
}

function noAlias(out: GpuTensor, inputs: GpuTensor[], op: string): void {
  for (const t of inputs) {
    if (sameBuffer(out, t)) throw new TensorError(out.label, `${op}: output overlaps input ${t.label}`);
  }
}

function checkScale(scale: number | undefined, op: string): void {
  if (scale !== undefined && !Number.isFinite(scale)) throw new UsageError(`${op}: scale must be a finite number, got ${scale}`);
}

// ---------------------------------------------------------------------------------------------
// linear

export interface LinearBackwardOptions {
  /** Add the weight gradient into dW instead of overwriting it. */
  accumulate?: boolean;
  /** Add the input gradient into dx instead of overwriting it. */
  accumulateDx?: boolean;
  /** Caps the rows of W / dW bound at once (exercises the windowed path in tests). */
  windowRows?: number;
}

/** dx (T, K) = dy (T, N) · W (N, K); dW (N, K) = dyᵀ · x (T, K). x and w 2-D; dx / dW may be null. */
export async function linearBackward(
  ctx: GpuContext, batch: CommandBatch,
  x: GpuTensor, w: GpuTensor, dy: GpuTensor, dx: GpuTensor | null, dW: GpuTensor | null,
  opts: LinearBackwardOptions = {},
): Promise<void> {
  if (x.shape.length !== 2) throw new TensorError(x.label, `linearBackward x must be [T, K], got [${x.shape}]`);
  if (w.shape.length !== 2) throw new TensorError(w.label, `linearBackward W must be [N, K], got [${w.shape}]`);
  const [T, K] = x.shape;
  const [N, Kw] = w.shape;
  requireF32(x, "linearBackward x");
  requireF32(w, "linearBackward W");
  if (Kw !== K) throw new TensorError(w.label, `K mismatch: W [${w.shape}] vs x [${x.shape}]`);
  requireF32(dy, "linearBackward dy", T * N);
  if (dx) {
    requireF32(dx, "linearBackward dx", T * K);
    noAlias(dx, [x, w, dy], "linearBackward dx");
  }
  if (dW) {
    requireF32(dW, "linearBackward dW", N * K);
    noAlias(dW, [x, w, dy], "linearBackward dW");
  }
  if (T === 0 || K === 0) return;
  // CPU adapters: the transposed-weight subgroup GEMM (nn/matmul_wt.wgsl) is several times faster. dx = dy · W
  // takes W [N, K] as it is; dW = dyᵀ · x needs dyᵀ (a transpose of T·N values).
  if (opts.windowRows === undefined && matmulWtPreferred(ctx.gpu, T, K, N) && matmulWtPreferred(ctx.gpu, N, K, T)) {
    const tmp = (shape: number[], label: string) => {
      const t = GpuTensor.empty(ctx.gpu, shape, "f32", label);
      batch.own(t);
      return t;
    };
    const dy2 = dy.shape.length === 2 && dy.shape[0] === T ? dy : dy.view(dy.label, [T, N], 0);
    if (dx) {
      const dx2 = dx.view(dx.label, [T, K], 0);
      if (opts.accumulateDx) {
        const part = tmp([T, K], `${dx.label}.part`);
        await matmulWt(ctx, batch, dy2, w, part);
        await addInPlace(ctx, batch, dx2, part);
      } else {
        await matmulWt(ctx, batch, dy2, w, dx2);
      }
    }
    if (dW) {
      const dyT = tmp([N, T], `${dy.label}.t`);
      await transpose(ctx, batch, dy2, dyT);
      if (opts.accumulate) {
        const part = tmp([N, K], `${dW.label}.part`);
        await matmulWt(ctx, batch, dyT, x, part);
        await addInPlace(ctx, batch, dW, part);
      } else {
        await matmulWt(ctx, batch, dyT, x, dW.view(dW.label, [N, K], 0));
      }
    }
    return;
  }
  const k = await ctx.kernels.get(LINEAR, "gemm", { WG_X: GEMM_WG, WG_Y: GEMM_WG });
  let maxRows = GEMM_TILE * GEMM_WG * ctx.gpu.limits.maxComputeWorkgroupsPerDimension;
  if (opts.windowRows !== undefined) maxRows = Math.min(maxRows, opts.windowRows);
  const windows = N === 0 ? [] : w.rowWindows({ rowBytes: K * 4, maxRows });
  const grid = (M: number, P: number) => k.grid2d(Math.ceil(P / GEMM_TILE), Math.ceil(M / GEMM_TILE));
  if (dx) {
    if (!windows.length && !opts.accumulateDx) {
      throw new UsageError("linearBackward: N = 0 leaves dx undefined", "zero dx yourself or pass accumulateDx");
    }
    windows.forEach((win, i) => {
      batch.dispatch(
        k,
        { a: dy, b: { tensor: w, byteOffset: win.byteOffset, byteSize: win.byteSize }, c: dx },
        { M: T, P: K, R: win.rows, a_off: win.firstRow, a_rs: N, a_cs: 1, acc: i > 0 || opts.accumulateDx ? 1 : 0 },
        grid(T, K),
      );
    });
  }
  if (dW) {
    for (const win of windows) {
      batch.dispatch(
        k,
        { a: dy, b: x, c: { tensor: dW, byteOffset: win.byteOffset, byteSize: win.byteSize } },
        { M: win.rows, P: K, R: T, a_off: win.firstRow, a_rs: 1, a_cs: N, acc: opts.accumulate ? 1 : 0 },
        grid(win.rows, K),
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

export interface RmsnormBackwardOptions {
  /** Add into dw instead of overwriting it. */
  accumulate?: boolean;
  /** Add into dx instead of overwriting it. */
  accumulateDx?: boolean;
}

/** dx (T, H) and dw (H) of y = x / sqrt(mean x² + eps) * w; x, dy, dx hold T·H elements. */
export async function rmsnormBackward(
  ctx: GpuContext, batch: CommandBatch,
  x: GpuTensor, w: GpuTensor, dy: GpuTensor, dx: GpuTensor | null, dw: GpuTensor | null, eps: number,
  opts: RmsnormBackwardOptions = {},
): Promise<void> {
  requireF32(w, "rmsnormBackward w");
  const H = w.numel;
  const T = x.numel / H;
  requireF32(x, "rmsnormBackward x");
  if (!Number.isInteger(T)) throw new TensorError(x.label, `rmsnormBackward: x [${x.shape}] is not a whole number of rows of ${H}`);
  requireF32(dy, "rmsnormBackward dy", T * H);
  if (dx) {
    requireF32(dx, "rmsnormBackward dx", T * H);
    noAlias(dx, [x, w, dy], "rmsnormBackward dx");
  }
  if (dw) {
    requireF32(dw, "rmsnormBackward dw", H);
    noAlias(dw, [x, w, dy], "rmsnormBackward dw");
  }
  if (!Number.isFinite(eps) || eps < 0) throw new UsageError(`rmsnormBackward: eps must be a finite number >= 0, got ${eps}`);
  if (H === 0 || (!dx && !dw)) return;
  if (T === 0) {
    if (dw && !opts.accumulate) throw new UsageError("rmsnormBackward: T = 0 leaves dw undefined", "pass accumulate");
    return;
  }
  const stats = GpuTensor.empty(ctx.gpu, [T, 2], "f32", "rmsnorm.grad.stats");
  batch.own(stats);
  const params = (acc: boolean | undefined) => ({ T, H, eps, acc: acc ? 1 : 0 });
  const rows = await ctx.kernels.get(NORM, "rms_rows", { WG_SIZE: WG });
  batch.dispatch(rows, { x, w, dy, stats }, params(false), rows.grid1d(Math.ceil(T / WG)));
  if (dx) {
    const k = await ctx.kernels.get(NORM, "rms_dx", { WG_SIZE: WG });
    batch.dispatch(k, { x, w, dy, stats, dx }, params(opts.accumulateDx), k.grid1d(Math.ceil((T * H) / WG)));
  }
  if (dw) {
    const k = await ctx.kernels.get(NORM, "rms_dw", { WG_SIZE: WG });
    batch.dispatch(k, { x, dy, stats, dw }, params(opts.accumulate), k.grid(H));
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE, SwiGLU

/** In place: dx (T, nh, D) <- rotation of dx by −angle (the transpose of nn/rope.ts at the same positions). */
export async function ropeBackward(
  ctx: GpuContext, batch: CommandBatch, dx: GpuTensor, invFreq: GpuTensor, T: number, nh: number, pos0: number, seq = 0,
): Promise<void> {
  requireF32(invFreq, "ropeBackward invFreq");
  const D = invFreq.numel * 2;
  requireF32(dx, "ropeBackward dx", T * nh * D);
  noAlias(dx, [invFreq], "ropeBackward");
  if (T * nh * D === 0) return;
  const k = await ctx.kernels.get(POINTWISE, "rope_backward", { WG_SIZE: WG });
  batch.dispatch(k, { g: dx, inv_freq: invFreq }, { T, nh, D, pos0, seq }, k.grid2d((nh * D) / 2, T));
}

/** dg, du of h = silu(g) * u, given dh (all the same element count). */
export async function swigluBackward(
  ctx: GpuContext, batch: CommandBatch, g: GpuTensor, u: GpuTensor, dh: GpuTensor, dg: GpuTensor, du: GpuTensor,
): Promise<void> {
  const n = g.numel;
  requireF32(g, "swigluBackward g");
  for (const [t, what] of [[u, "u"], [dh, "dh"], [dg, "dg"], [du, "du"]] as const) requireF32(t, `swigluBackward ${what}`, n);
  noAlias(dg, [g, u, dh, du], "swigluBackward dg");
  noAlias(du, [g, u, dh], "swigluBackward du");
  if (n === 0) return;
  const k = await ctx.kernels.get(POINTWISE, "swiglu_backward", { WG_SIZE: WG });
  batch.dispatch(k, { gate: g, up: u, dh, dgate: dg, dup: du }, { n }, k.grid1d(Math.ceil(n / WG)));
}

// ---------------------------------------------------------------------------------------------
// embedding

export interface EmbeddingBackwardOptions {
  /** Add into dE instead of overwriting it (rows of ids not present are then left as they are). */
  accumulate?: boolean;
  /** Caps the rows of dE bound at once (exercises the windowed path in tests). */
  windowRows?: number;
}

/**
 * CSR of the positions of each distinct id: [ids ascending (U) | starts (U + 1) | positions (T)].
 * Exported for tests.
 */
export function embeddingCsr(ids: Uint32Array): { csr: Uint32Array; distinct: number } {
  const T = ids.length;
  const order = Array.from({ length: T }, (_, i) => i).sort((a, b) => ids[a] - ids[b] || a - b);
  const distinct: number[] = [];
  const starts: number[] = [];
  order.forEach((t, k) => {
    if (k === 0 || ids[t] !== ids[order[k - 1]]) {
      distinct.push(ids[t]);
      starts.push(k);
    }
  });
  starts.push(T);
  const U = distinct.length;
  const csr = new Uint32Array(2 * U + 1 + T);
  csr.set(distinct, 0);
  csr.set(starts, U);
  csr.set(order, 2 * U + 1);
  return { csr, distinct: U };
}

/** dE (V, H) (+)= scatter of dOut (T, H) rows by ids (T, on the host). */
export async function embeddingBackward(
  ctx: GpuContext, batch: CommandBatch, idsHost: Uint32Array, dOut: GpuTensor, dE: GpuTensor, opts: EmbeddingBackwardOptions = {},
): Promise<void> {
  if (dE.shape.length !== 2) throw new TensorError(dE.label, `embeddingBackward dE must be [V, H], got [${dE.shape}]`);
  const [V, H] = dE.shape;
  const T = idsHost.length;
  requireF32(dE, "embeddingBackward dE");
  requireF32(dOut, "embeddingBackward dOut", T * H);
  noAlias(dE, [dOut], "embeddingBackward");
  for (let t = 0; t < T; t++) {
    if (idsHost[t] >= V) throw new TensorError(dE.label, `embeddingBackward: id ${idsHost[t]} at position ${t} is outside the vocabulary of ${V}`);
  }
  if (V * H === 0) return;
  const windows = dE.rowWindows({ rowBytes: H * 4, maxRows: opts.windowRows });
  const { csr, distinct: U } = embeddingCsr(idsHost);
  const ids = csr.subarray(0, U);
  let csrT: GpuTensor | null = null;
  if (U) {
    csrT = GpuTensor.fromHost(ctx.gpu, csr, [csr.length], "u32", "embedding.grad.csr");
    batch.own(csrT);
  }
  const zero = await ctx.kernels.get(POINTWISE, "emb_zero", { WG_SIZE: WG });
  const scatter = await ctx.kernels.get(POINTWISE, "emb_scatter", { WG_SIZE: WG });
  const maxDim = ctx.gpu.limits.maxComputeWorkgroupsPerDimension;
  let u = 0;
  for (const win of windows) {
    const de = { tensor: dE, byteOffset: win.byteOffset, byteSize: win.byteSize };
    const base = { H, U, r0: win.firstRow, acc: opts.accumulate ? 1 : 0 };
    if (!opts.accumulate) {
      const n = win.rows * H;
      batch.dispatch(zero, { de }, { ...base, n, u0: 0, nu: 0 }, zero.grid1d(Math.ceil(n / WG)));
    }
    let u1 = u;
    while (u1 < U && ids[u1] < win.firstRow + win.rows) u1++;
    for (let u0 = u; u0 < u1; u0 += maxDim) {
      const nu = Math.min(maxDim, u1 - u0);
      batch.dispatch(scatter, { dout: dOut, csr: csrT!, de }, { ...base, n: 0, u0, nu }, [Math.ceil(H / WG), nu, 1]);
    }
    u = u1;
  }
}

// ---------------------------------------------------------------------------------------------
// losses

export interface LossBackwardOptions {
  /** Replaces the 1 / count normalization of the gradient (count = scored rows or elements). */
  scale?: number;
}

const lossParams = (p: Partial<Record<"T" | "V" | "n" | "use_scale" | "scale" | "len" | "chunk", number>>) => ({
  T: 0, V: 0, n: 0, use_scale: 0, scale: 0, len: 0, chunk: 0, ...p,
});

/** Folds `len` (sum, count) pairs into loss[0..1] (SUM_CHUNK per invocation, repeated). */
async function sumPairs(ctx: GpuContext, batch: CommandBatch, pairs: GpuTensor, len: number, loss: GpuTensor): Promise<void> {
  const k = await ctx.kernels.get(LOSS, "sum_pairs", { WG_SIZE: WG });
  let cur = pairs;
  do {
    const outLen = Math.ceil(len / SUM_CHUNK);
    let out: GpuTensor;
    if (outLen === 1) {
      out = loss;
    } else {
      out = GpuTensor.empty(ctx.gpu, [outLen, 2], "f32", "loss.grad.partials");
      batch.own(out);
    }
    batch.dispatch(
      k,
      { pair_in: cur, pair_out: { tensor: out, byteOffset: 0, byteSize: outLen * 8 } },
      lossParams({ len, chunk: SUM_CHUNK }),
      k.grid1d(Math.ceil(outLen / WG)),
    );
    cur = out;
    len = outLen;
  } while (len > 1);
}

function requireLossSum(lossSum: GpuTensor, op: string): void {
  requireF32(lossSum, `${op} lossSum`);
  if (lossSum.numel < 2) throw new TensorError(lossSum.label, `${op}: lossSum must hold at least 2 f32 (sum, count), got [${lossSum.shape}]`);
}

/**
 * dlogits (T, V) = (softmax(logits) − onehot(targets)) · s and lossSum[0..1] = (NLL sum, scored rows).
 * targets: u32 (T); dlogits may be `logits` itself (in place).
 */
export async function crossEntropyBackward(
  ctx: GpuContext, batch: CommandBatch,
  logits: GpuTensor, targets: GpuTensor, dlogits: GpuTensor, lossSum: GpuTensor, opts: LossBackwardOptions = {},
): Promise<void> {
  if (logits.shape.length !== 2) throw new TensorError(logits.label, `crossEntropyBackward logits must be [T, V], got [${logits.shape}]`);
  const [T, V] = logits.shape;
  requireF32(logits, "crossEntropyBackward logits");
  if (T === 0 || V === 0) throw new TensorError(logits.label, "crossEntropyBackward needs at least one row and one class");
  targets.assertAlive();
  if (targets.dtype !== "u32" || targets.numel !== T) throw new TensorError(targets.label, `crossEntropyBackward targets must be u32 [${T}], got ${targets.dtype} [${targets.shape}]`);
  requireF32(dlogits, "crossEntropyBackward dlogits", T * V);
  requireLossSum(lossSum, "crossEntropyBackward");
  checkScale(opts.scale, "crossEntropyBackward");
  const inPlace = dlogits.buffer === logits.buffer && dlogits.byteOffset === logits.byteOffset;
  if (!inPlace) noAlias(dlogits, [logits, targets, lossSum], "crossEntropyBackward dlogits");
  noAlias(lossSum, [logits, targets, dlogits], "crossEntropyBackward lossSum");
  const lse = GpuTensor.empty(ctx.gpu, [T], "f32", "ce.grad.lse");
  const pairs = GpuTensor.empty(ctx.gpu, [T, 2], "f32", "ce.grad.pairs");
  batch.own(lse, pairs);
  const loss = { tensor: lossSum, byteOffset: 0, byteSize: 8 };
  const rows = await ctx.kernels.get(LOSS, "ce_rows", { WG_SIZE: WG });
  batch.dispatch(rows, { logits, targets, lse, pairs }, lossParams({ T, V }), rows.grid1d(Math.ceil(T / WG)));
  await sumPairs(ctx, batch, pairs, T, lossSum);
  const p = lossParams({ T, V, use_scale: opts.scale === undefined ? 0 : 1, scale: opts.scale ?? 0 });
  const groups = Math.ceil((T * V) / WG);
  if (inPlace) {
    const k = await ctx.kernels.get(LOSS, "ce_grad_inplace", { WG_SIZE: WG });
    batch.dispatch(k, { targets, lse, dlogits, loss }, p, k.grid1d(groups));
  } else {
    const k = await ctx.kernels.get(LOSS, "ce_grad", { WG_SIZE: WG });
    batch.dispatch(k, { logits, targets, lse, dlogits, loss }, p, k.grid1d(groups));
  }
}

/** dy = 2 (y − ref) · s (s = 1 / n unless opts.scale) and lossSum[0..1] = (Σ (y − ref)², n). */
export async function mseBackward(
  ctx: GpuContext, batch: CommandBatch, y: GpuTensor, ref: GpuTensor, dy: GpuTensor, lossSum: GpuTensor, opts: LossBackwardOptions = {},
): Promise<void> {
  const n = y.numel;
  requireF32(y, "mseBackward y");
  requireF32(ref, "mseBackward ref", n);
  requireF32(dy, "mseBackward dy", n);
  requireLossSum(lossSum, "mseBackward");
  checkScale(opts.scale, "mseBackward");
  if (n === 0) throw new TensorError(y.label, "mseBackward needs at least one element");
  noAlias(dy, [y, ref, lossSum], "mseBackward dy");
  noAlias(lossSum, [y, ref], "mseBackward lossSum");
  const groups = Math.ceil(n / (WG * MSE_CHUNK));
  const pairs = GpuTensor.empty(ctx.gpu, [groups * WG, 2], "f32", "mse.grad.pairs");
  batch.own(pairs);
  const k = await ctx.kernels.get(LOSS, "mse_grad", { WG_SIZE: WG, CHUNK: MSE_CHUNK });
  batch.dispatch(k, { y, y_ref: ref, dy, pairs }, lossParams({ n, scale: opts.scale ?? 1 / n }), k.grid1d(groups));
  await sumPairs(ctx, batch, pairs, groups * WG, lossSum);
}
