// nn/attention.ts — causal GQA attention over a KV cache (shaders/nn/attention.wgsl).

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

export const MAX_HEAD_DIM = 128;

/**
 * q (T, Hq, D), caches (S, Hkv, D) filled up to pos0+T -> out (T, Hq, D). With seq > 0 (and
 * pos0 = 0) the T rows are independent sequences of seq tokens each.
 */
export async function attention(
  ctx: GpuContext, batch: CommandBatch,
  q: GpuTensor, kc: GpuTensor, vc: GpuTensor, out: GpuTensor,
  dims: { T: number; Hq: number; Hkv: number; D: number; pos0: number; seq?: number },
): Promise<void> {
  const { T, Hq, Hkv, D, pos0 } = dims;
  const seq = dims.seq ?? 0;
  if (seq && (pos0 !== 0 || T % seq)) throw new TensorError(q.label, `packed sequences need pos0 = 0 and T (${T}) a multiple of seq (${seq})`);
  if (D > MAX_HEAD_DIM) throw new TensorError(q.label, `head_dim ${D} exceeds the attention kernel's maximum ${MAX_HEAD_DIM}`);
  if (Hq % Hkv) throw new TensorError(q.label, `Hq ${Hq} is not a multiple of Hkv ${Hkv}`);
  if (kc.numel < (pos0 + T) * Hkv * D) throw new TensorError(kc.label, `KV cache holds ${kc.numel / (Hkv * D)} positions, needs ${pos0 + T}`);
  const group = Hq / Hkv;
  const params = { T, Hq, Hkv, D, pos0, scale: 1 / Math.sqrt(D), seq };
  if (group > 1 && group * D <= MAX_HEAD_DIM) {
    // GQA with small heads: one invocation per KV head reads each key/value row once for its group.
    const k = await ctx.kernels.get("nn/attention.wgsl", "grouped", { WG_SIZE: 64, HEAD_DIM: D, GROUP: group });
    batch.dispatch(k, { q, kc, vc, out }, params, k.grid1d(Math.ceil((T * Hkv) / 64)));
    return;
  }
  const k = await ctx.kernels.get("nn/attention.wgsl", "main", { WG_SIZE: 64, HEAD_DIM: D });
  batch.dispatch(k, { q, kc, vc, out }, params, k.grid1d(Math.ceil((T * Hq) / 64)));
}
