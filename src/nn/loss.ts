// nn/loss.ts — next-token NLL, KL against reference logits and top-1 agreement, per row on the GPU
// (shaders/nn/loss.wgsl), summed on the GPU (nn/reduce.ts): only 4 scalars come back.

import { reduceStats } from "./reduce.ts";
import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

/**
 * Records: rows (T, 4) = (nll, kl, top1, scored) for logits (T, V) and ids (T); then sums (4, 4)
 * = per-column (sum, sum|.|, max|.|, sum^2) of rows. sums[0] = total NLL, sums[4] = total KL,
 * sums[8] = top-1 hits, sums[12] = scored tokens. seq > 0: rows are packed sequences of seq tokens.
 */
export async function nextTokenLoss(
  ctx: GpuContext, batch: CommandBatch,
  logits: GpuTensor, ids: GpuTensor, rows: GpuTensor, sums: GpuTensor, ref?: GpuTensor, seq = 0,
): Promise<void> {
  const [T, V] = logits.shape;
  if (ids.numel < T) throw new TensorError(ids.label, `loss: ${ids.numel} ids for ${T} rows`);
  if (rows.numel !== T * 4 || sums.numel !== 16) throw new TensorError(rows.label, `loss: rows must be [${T}, 4] and sums [4, 4]`);
  if (ref && (ref.shape[0] !== T || ref.shape[1] !== V)) throw new TensorError(ref.label, `loss: reference logits [${ref.shape}] vs logits [${logits.shape}]`);
  const k = await ctx.kernels.get("nn/loss.wgsl", "main", { WG_SIZE: 64, WITH_REF: !!ref });
  // Without a reference the kernel never reads ref_logits; logits fill the slot (read-only twice is valid).
  batch.dispatch(k, { logits, ref_logits: ref ?? logits, ids, out: rows }, { T, V, seq }, k.grid1d(T));
  await reduceStats(ctx, batch, rows.view(`${rows.label}.2d`, [T, 4], 0), "cols", sums);
}

/** Reads back the 4 totals: NLL sum, KL sum, top-1 hits, scored tokens. */
export async function readLossTotals(sums: GpuTensor): Promise<{ nll: number; kl: number; top1: number; tokens: number }> {
  const s = (await sums.toHost()) as Float32Array;
  return { nll: s[0], kl: s[4], top1: s[8], tokens: Math.round(s[12]) };
}

export function lossBuffers(ctx: GpuContext, T: number): { rows: GpuTensor; sums: GpuTensor } {
  return { rows: GpuTensor.empty(ctx.gpu, [T, 4], "f32", "loss.rows"), sums: GpuTensor.empty(ctx.gpu, [4, 4], "f32", "loss.sums") };
}
