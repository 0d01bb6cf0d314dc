// train/lsq.ts — LSQ fake quantization for quantization-aware training (shaders/train/lsq.wgsl):
// forward w' = fake-quantized W with per-(row, group) learnable step s and zero point z, backward with
// straight-through gradients for W and the LSQ gradients for s and z, and the RTN min/max
// initialisation of s and z. All tensors f32; W, w' and their gradients [N, K]; s, z and their
// gradients [N, ng], ng = ceil(K / G). Rules: see the shader header or src/ref/train.ts.

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

const FILE = "train/lsq.wgsl";
const WG = 64;

/** bits 2..8; G the group size along K (G >= K: one group per row); sym: symmetric levels, no zero point. */
export interface LsqSpec {
  bits: number;
  G: number;
  sym: boolean;
}

/** Largest level: asym 2^bits − 1 (levels 0..maxq), sym 2^(bits−1) − 1 (levels −maxq−1..maxq). */
export function lsqMaxq(spec: LsqSpec): number {
  return spec.sym ? 2 ** (spec.bits - 1) - 1 : 2 ** spec.bits - 1;
}

/** Groups per row: ceil(K / G) (1 when G >= K). */
export function lsqGroups(K: number, G: number): number {
  return Math.ceil(K / Math.min(G, K));
}

export interface LsqBackwardTensors {
  w: GpuTensor;
  scale: GpuTensor;
  /** Zero points (asymmetric only). */
  zero?: GpuTensor | null;
  /** Upstream gradient dL/dw' [N, K]. */
  dwq: GpuTensor;
  dw: GpuTensor;
  dscale: GpuTensor;
  /** Gradient for the zero points (asymmetric only); absent: zero points are not learned. */
  dzero?: GpuTensor | null;
}

export interface LsqBackwardOptions {
  /** Multiply dscale and dzero of each group by LSQ's gradient scale 1/sqrt(n·maxq), n the group's size. */
  gradScale?: boolean;
  /** Add into dw, dscale, dzero instead of overwriting them. */
  accumulate?: boolean;
}

function dims(spec: LsqSpec, w: GpuTensor): { N: number; K: number; G: number; ng: number; maxq: number } {
  if (!Number.isInteger(spec.bits) || spec.bits < 2 || spec.bits > 8) throw new UsageError(`bits must be 2..8 (got ${spec.bits})`);
  if (!Number.isInteger(spec.G) || spec.G < 1) throw new UsageError(`group size must be a positive integer (got ${spec.G})`);
  if (w.dtype !== "f32" || w.shape.length !== 2) throw new TensorError(w.label, `LSQ needs f32 [N, K], got ${w.dtype} [${w.shape}]`);
  const [N, K] = w.shape;
  const G = Math.min(spec.G, Math.max(K, 1));
  return { N, K, G, ng: K ? Math.ceil(K / G) : 0, maxq: lsqMaxq(spec) };
}

function checkSize(t: GpuTensor | null | undefined, n: number, what: string): void {
  if (!t) return;
  if (t.dtype !== "f32" || t.numel !== n) throw new TensorError(t.label, `LSQ ${what} must be f32 with ${n} elements, got ${t.dtype} [${t.shape}]`);
}

function zeroFor(spec: LsqSpec, zero: GpuTensor | null | undefined, label: string): void {
  if (!spec.sym && !zero) throw new UsageError(`asymmetric LSQ needs zero points (${label})`);
}

/** A 4-byte stand-in for a read_write binding the entry does not touch in this mode. */
function dummy(ctx: GpuContext, batch: CommandBatch): GpuTensor {
  const t = GpuTensor.empty(ctx.gpu, [1], "f32", "lsq.unused");
  batch.own(t);
  return t;
}

/**
 * Records the RTN min/max initialisation of scale (and zero, asymmetric) from w: asym s = max((max −
 * min)/maxq, 1e-5), z = clamp(round(−min/s), 0, maxq); sym s = max(max|w|/maxq, 1e-5). Scales stay f32.
 */
export async function lsqInit(ctx: GpuContext, batch: CommandBatch, w: GpuTensor, scale: GpuTensor, zero: GpuTensor | null, spec: LsqSpec): Promise<void> {
  const { N, K, G, ng, maxq } = dims(spec, w);
  zeroFor(spec, zero, w.label);
  checkSize(scale, N * ng, "scale");
  checkSize(zero, N * ng, "zero");
  if (N * ng === 0) return;
  const k = await ctx.kernels.get(FILE, "init", { WG_SIZE: WG, SYM: spec.sym });
  const zeroOut = spec.sym ? dummy(ctx, batch) : zero!;
  batch.dispatch(k, { w, scale_out: scale, zero_out: zeroOut }, { N, K, G, ng, maxq, learn_z: 0, accumulate: 0, grad_scale: 0 }, k.grid1d(Math.ceil((N * ng) / WG)));
}

/** Records wq (N, K) = LSQ fake quantization of w with scale (and zero). */
export async function lsqForward(
  ctx: GpuContext, batch: CommandBatch, w: GpuTensor, scale: GpuTensor, zero: GpuTensor | null, wq: GpuTensor, spec: LsqSpec,
): Promise<void> {
  const { N, K, G, ng, maxq } = dims(spec, w);
  zeroFor(spec, zero, w.label);
  checkSize(scale, N * ng, "scale");
  checkSize(zero, N * ng, "zero");
  checkSize(wq, N * K, "output");
  if (N * K === 0) return;
  const k = await ctx.kernels.get(FILE, "forward", { WG_SIZE: WG, SYM: spec.sym });
  batch.dispatch(
    k,
    { w, scale, zero: spec.sym ? scale : zero!, wq },
    { N, K, G, ng, maxq, learn_z: 0, accumulate: 0, grad_scale: 0 },
    k.grid1d(Math.ceil((N * K) / WG)),
  );
}

/**
 * Records the backward of lsqForward for the upstream gradient dwq: dw (straight-through inside the
 * clipping range, 0 outside), dscale (LSQ) and, when dzero is given (asymmetric), dzero.
 */
export async function lsqBackward(ctx: GpuContext, batch: CommandBatch, t: LsqBackwardTensors, spec: LsqSpec, opts: LsqBackwardOptions = {}): Promise<void> {
  const { w, scale, dwq, dw, dscale } = t;
  const zero = t.zero ?? null;
  const dzero = t.dzero ?? null;
  const { N, K, G, ng, maxq } = dims(spec, w);
  zeroFor(spec, zero, w.label);
  if (spec.sym && dzero) throw new UsageError("symmetric LSQ has no zero point to learn (drop dzero)");
  checkSize(scale, N * ng, "scale");
  checkSize(zero, N * ng, "zero");
  checkSize(dscale, N * ng, "dscale");
  checkSize(dzero, N * ng, "dzero");
  checkSize(dwq, N * K, "upstream gradient");
  checkSize(dw, N * K, "dw");
  if (N * ng === 0) return;
  const k = await ctx.kernels.get(FILE, "backward", { WG_SIZE: WG, SYM: spec.sym });
  batch.dispatch(
    k,
    { w, scale, zero: zero ?? scale, dwq, dw, dscale, dzero: dzero ?? dummy(ctx, batch) },
    { N, K, G, ng, maxq, learn_z: dzero ? 1 : 0, accumulate: opts.accumulate ? 1 : 0, grad_scale: opts.gradScale ? 1 : 0 },
    k.grid1d(Math.ceil((N * ng) / WG)),
  );
}
