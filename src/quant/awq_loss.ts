// quant/awq_loss.ts — AWQ's search losses on the GPU (shaders/quant/awq_loss.wgsl), reduced to
// per-invocation partial sums that the host adds in float64 (nn/reduce.ts sumPartials).
//   sqErr:   sum |a - b|^2 of a module's output against its fp output (one pass, vec4 loads)
//   gramDot: sum_n d_n G d_nᵀ, d = fq - w, G = XᵀX: the squared output error of a linear layer
//            over every calibration token, without re-running the layer (N·K² work instead of T·N·K)

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

const FILE = "quant/awq_loss.wgsl";
const WG = 64;
/** vec4 words per sq_err invocation. */
const CHUNK = 64;

/** Number of partial sums sqErr writes for n elements. */
export function sqErrParts(n: number): number {
  return Math.ceil(n / 4 / CHUNK);
}

/** Records partial[0 .. sqErrParts(n)) = partial sums of |a - b|^2 (n = a.numel). */
export async function sqErr(ctx: GpuContext, batch: CommandBatch, a: GpuTensor, b: GpuTensor, partial: GpuTensor): Promise<void> {
  const n = a.numel;
  if (b.numel !== n) throw new TensorError(a.label, `sqErr needs equal sizes (${n}, ${b.numel})`);
  const parts = sqErrParts(n);
  if (partial.numel < parts) throw new TensorError(partial.label, `sqErr needs ${parts} partial sums, got ${partial.numel}`);
  if (n % 4 === 0) {
    const k = await ctx.kernels.get(FILE, "sq_err", { WG_SIZE: WG });
    batch.dispatch(k, { a, b, partial }, { n4: n / 4, chunk: CHUNK, N: 0, K: 0, transposed: 0 }, k.grid1d(Math.ceil(parts / WG)));
  } else {
    const k = await ctx.kernels.get(FILE, "sq_err_f32", { WG_SIZE: WG });
    batch.dispatch(k, { a1: a, b1: b, partial }, { n4: n, chunk: CHUNK * 4, N: 0, K: 0, transposed: 0 }, k.grid1d(Math.ceil(parts / WG)));
  }
}

/**
 * Records partial[0 .. N·K) whose sum is sum_n (fq - w)_n G (fq - w)_nᵀ. fq and w are [N, K], or
 * both [K, N] with `transposed`; G is [K, K].
 */
export async function gramDot(
  ctx: GpuContext, batch: CommandBatch, fq: GpuTensor, w: GpuTensor, gram: GpuTensor, partial: GpuTensor,
  dims: { N: number; K: number; transposed: boolean },
): Promise<void> {
  const { N, K } = dims;
  if (fq.numel !== N * K || w.numel !== N * K) throw new TensorError(fq.label, `gramDot: fq and w must hold ${N}x${K}`);
  if (gram.numel !== K * K) throw new TensorError(gram.label, `gramDot: G must be [${K}, ${K}]`);
  if (partial.numel < N * K) throw new TensorError(partial.label, `gramDot needs ${N * K} partial sums`);
  const k = await ctx.kernels.get(FILE, "gram_dot", { WG_SIZE: WG });
  batch.dispatch(k, { fq, w, gram, partial }, { n4: 0, chunk: 0, N, K, transposed: dims.transposed ? 1 : 0 }, k.grid1d(Math.ceil((N * K) / WG)));
}
