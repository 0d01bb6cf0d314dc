// nn/attention.ts — causal GQA attention over a KV cache (shaders/nn/attention.wgsl).

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { Gpu } from "../gpu/device.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

export const MAX_HEAD_DIM = 128;

/**
 * Kernel shapes: `main` one invocation per (token, query head); `grouped` one per (token, KV head)
 * reading each K/V row once for its group (GQA, group * D <= 128); `subgroup` (attention_sg.wgsl)
 * one subgroup of 8 per (8 tokens, KV head) sharing K/V rows by shuffles — the CPU-adapter shape.
 */
export type AttentionVariant = "main" | "grouped" | "subgroup";

/** Why `variant` cannot run these dimensions on this device, or null when it can. */
export function attentionUnavailable(gpu: Gpu, variant: AttentionVariant, D: number, group: number): string | null {
  if (variant === "main") return null;
  if (group * D > MAX_HEAD_DIM) return `${variant} needs group * head_dim <= ${MAX_HEAD_DIM} (${group} * ${D})`;
  if (variant === "grouped") return null;
  if (!gpu.has("subgroups") || gpu.adapterInfo.subgroupMinSize < 8) return "needs subgroups of at least 8 invocations";
  return D % 4 ? `needs head_dim a multiple of 4 (${D})` : null;
}

/** The variant attention() uses when none is forced. */
export function chooseAttention(gpu: Gpu, D: number, group: number): AttentionVariant {
  // CPU adapters: every per-invocation load costs a SIMD-width of arithmetic; share rows by shuffles.
  if (gpu.adapterInfo.kind === "cpu" && !attentionUnavailable(gpu, "subgroup", D, group)) return "subgroup";
  return group > 1 && !attentionUnavailable(gpu, "grouped", D, group) ? "grouped" : "main";
}

/**
 * q (T, Hq, D), caches (S, Hkv, D) filled up to pos0+T -> out (T, Hq, D). With seq > 0 (and
 * pos0 = 0) the T rows are independent sequences of seq tokens each.
 */
export async function attention(
  ctx: GpuContext, batch: CommandBatch,
  q: GpuTensor, kc: GpuTensor, vc: GpuTensor, out: GpuTensor,
  dims: { T: number; Hq: number; Hkv: number; D: number; pos0: number; seq?: number },
  variant?: AttentionVariant,
): Promise<AttentionVariant> {
  const { T, Hq, Hkv, D, pos0 } = dims;
  const seq = dims.seq ?? 0;
  if (seq && (pos0 !== 0 || T % seq)) throw new TensorError(q.label, `packed sequences need pos0 = 0 and T (${T}) a multiple of seq (${seq})`);
  if (D > MAX_HEAD_DIM) throw new TensorError(q.label, `head_dim ${D} exceeds the attention kernel's maximum ${MAX_HEAD_DIM}`);
  if (Hq % Hkv) throw new TensorError(q.label, `Hq ${Hq} is not a multiple of Hkv ${Hkv}`);
  if (kc.numel < (pos0 + T) * Hkv * D) throw new TensorError(kc.label, `KV cache holds ${kc.numel / (Hkv * D)} positions, needs ${pos0 + T}`);
  const group = Hq / Hkv;
  const v = variant ?? chooseAttention(ctx.gpu, D, group);
  const why = attentionUnavailable(ctx.gpu, v, D, group);
  if (why) throw new UsageError(`attention variant '${v}' cannot run here: ${why}`);
  const params = { T, Hq, Hkv, D, pos0, scale: 1 / Math.sqrt(D), seq };
  if (v === "subgroup") {
    const k = await ctx.kernels.get("nn/attention_sg.wgsl", "main", { HEAD_DIM: D, GROUP: group });
    batch.dispatch(k, { q, kc, vc, out }, params, k.grid1d(Math.ceil(T / 8) * Hkv));
  } else if (v === "grouped") {
    const k = await ctx.kernels.get("nn/attention.wgsl", "grouped", { WG_SIZE: 64, HEAD_DIM: D, GROUP: group });
    batch.dispatch(k, { q, kc, vc, out }, params, k.grid1d(Math.ceil((T * Hkv) / 64)));
  } else {
    const k = await ctx.kernels.get("nn/attention.wgsl", "main", { WG_SIZE: 64, HEAD_DIM: D });
    batch.dispatch(k, { q, kc, vc, out }, params, k.grid1d(Math.ceil((T * Hq) / 64)));
  }
  return v;
}
