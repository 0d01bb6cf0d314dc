// train/attention_bwd.ts — causal GQA attention backward on the GPU (shaders/train/attention_bwd.wgsl),
// plus a forward that also saves each query's log-sum-exp so the backward can skip recomputing it.
// Layouts: q, out, dout, dq (T, Hq, D); k, v, dk, dv (T, Hkv, D); positions start at 0; with seq > 0 the
// T rows are T / seq independent sequences. dq, dk and dv are overwritten (not accumulated).

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { Gpu } from "../gpu/device.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

const FILE = "train/attention_bwd.wgsl";
const FILE_SG = "train/attention_bwd_sg.wgsl";

/**
 * Kernel shapes: `plain` one invocation per (token, head) row; `subgroup` (attention_bwd_sg.wgsl)
 * 8 positions per subgroup sharing the rows they walk over by shuffles — the CPU-adapter shape.
 */
export type AttentionBackwardVariant = "plain" | "subgroup";

/** Why `variant` cannot run on this device with these dimensions, or null. */
export function attentionBackwardUnavailable(gpu: Gpu, variant: AttentionBackwardVariant, D: number, group: number): string | null {
  if (variant === "plain") return null;
  if (!gpu.has("subgroups") || gpu.adapterInfo.subgroupMinSize < 8) return "needs subgroups of at least 8 invocations";
  if (D % 4) return `needs head_dim a multiple of 4 (${D})`;
  return group * D > 128 ? `needs group * head_dim <= 128 (${group} * ${D})` : null;
}
const WG = 64;
export const MAX_HEAD_DIM = 128;

export interface AttentionDims {
  T: number;
  Hq: number;
  Hkv: number;
  D: number;
  /** Tokens per packed sequence (0 or absent: the T rows are one sequence). */
  seq?: number;
}

export interface AttentionGrads {
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  /** The forward output for these q, k, v. */
  out: GpuTensor;
  /** Gradient of the loss with respect to out. */
  dout: GpuTensor;
  dq: GpuTensor;
  dk: GpuTensor;
  dv: GpuTensor;
  /** (T, Hq) log-sum-exp saved by attentionForwardWithStats; recomputed when absent. */
  lse?: GpuTensor;
}

function check(dims: AttentionDims, named: Record<string, GpuTensor | undefined>): { seq: number; params: Record<string, number> } {
  const { T, Hq, Hkv, D } = dims;
  const seq = dims.seq ?? 0;
  for (const [name, n] of Object.entries({ T, Hq, Hkv, D, seq })) {
    if (!Number.isInteger(n) || n < 0) throw new TensorError(name, `attention dimension ${name} = ${n} is not a non-negative integer`);
  }
  if (Hkv < 1 || Hq % Hkv) throw new TensorError("q", `Hq ${Hq} is not a multiple of Hkv ${Hkv}`);
  if (D < 1 || D > MAX_HEAD_DIM) throw new TensorError("q", `head_dim ${D} is outside 1..${MAX_HEAD_DIM}`);
  if (seq && T % seq) throw new TensorError("q", `packed sequences need T (${T}) a multiple of seq (${seq})`);
  const sizes: Record<string, number> = {
    q: T * Hq * D, out: T * Hq * D, dout: T * Hq * D, dq: T * Hq * D,
    k: T * Hkv * D, v: T * Hkv * D, dk: T * Hkv * D, dv: T * Hkv * D, lse: T * Hq,
  };
  for (const [name, t] of Object.entries(named)) {
    if (!t) continue;
    if (t.dtype !== "f32" || t.numel !== sizes[name]) {
      throw new TensorError(t.label, `attention ${name} must be f32 with ${sizes[name]} elements, got ${t.dtype} [${t.shape}]`);
    }
  }
  return { seq, params: { T, Hq, Hkv, D, scale: 1 / Math.sqrt(D), seq, recompute: 0 } };
}

/**
 * Records the forward out (T, Hq, D) = causal GQA attention of q, k, v, and lse (T, Hq) = log Σ_j
 * exp(scale·q·k_j) of each query, for attentionBackward().
 */
export async function attentionForwardWithStats(
  ctx: GpuContext, batch: CommandBatch,
  q: GpuTensor, k: GpuTensor, v: GpuTensor, out: GpuTensor, lse: GpuTensor, dims: AttentionDims,
): Promise<void> {
  const { params } = check(dims, { q, k, v, out, lse });
  const rows = dims.T * dims.Hq;
  if (rows === 0) return;
  const kern = await ctx.kernels.get(FILE, "forward_stats", { WG_SIZE: WG, HEAD_DIM: dims.D });
  batch.dispatch(kern, { q, k, v, out, lse }, params, kern.grid1d(Math.ceil(rows / WG)));
}

/**
 * Records dq, dk, dv for the loss gradient dout. Three passes: per-query delta = dout·out (and lse
 * when not given), dq per (token, query head), dk and dv per (key, KV head). Deterministic.
 */
export async function attentionBackward(ctx: GpuContext, batch: CommandBatch, t: AttentionGrads, dims: AttentionDims, variant?: AttentionBackwardVariant): Promise<void> {
  const { q, k, v, out, dout, dq, dk, dv } = t;
  const { params } = check(dims, { q, k, v, out, dout, dq, dk, dv, lse: t.lse });
  const { T, Hq, Hkv, D } = dims;
  const rows = T * Hq;
  if (rows === 0) return;
  const group = Hq / Hkv;
  const vv = variant ?? (ctx.gpu.adapterInfo.kind === "cpu" && !attentionBackwardUnavailable(ctx.gpu, "subgroup", D, group) ? "subgroup" : "plain");
  const why = attentionBackwardUnavailable(ctx.gpu, vv, D, group);
  if (why) throw new UsageError(`attention backward variant '${vv}' cannot run here: ${why}`);
  if (vv === "subgroup") {
    const lse = t.lse ?? GpuTensor.empty(ctx.gpu, [T, Hq], "f32", `${q.label}.lse`);
    const delta = GpuTensor.empty(ctx.gpu, [T, Hq], "f32", `${q.label}.delta`);
    batch.own(delta);
    if (!t.lse) batch.own(lse);
    const consts = { HEAD_DIM: D, GROUP: group };
    const groups = Math.ceil(T / 8) * Hkv;
    const st = await ctx.kernels.get(FILE_SG, "stats_sg", consts);
    batch.dispatch(st, { q, k, out, dout, lse, delta }, { ...params, recompute: t.lse ? 0 : 1 }, st.grid1d(groups));
    const kq = await ctx.kernels.get(FILE_SG, "dq_sg", consts);
    batch.dispatch(kq, { q, k, v, dout, lse, delta, dq }, params, kq.grid1d(groups));
    const kkv = await ctx.kernels.get(FILE_SG, "dkv_sg", consts);
    batch.dispatch(kkv, { q, k, v, dout, lse, delta, dk, dv }, params, kkv.grid1d(groups));
    return;
  }
  const consts = { WG_SIZE: WG, HEAD_DIM: D };
  const lse = t.lse ?? GpuTensor.empty(ctx.gpu, [T, Hq], "f32", `${q.label}.lse`);
  const delta = GpuTensor.empty(ctx.gpu, [T, Hq], "f32", `${q.label}.delta`);
  batch.own(delta);
  if (!t.lse) batch.own(lse);
  const stats = await ctx.kernels.get(FILE, "stats", consts);
  batch.dispatch(stats, { q, k, out, dout, lse, delta }, { ...params, recompute: t.lse ? 0 : 1 }, stats.grid1d(Math.ceil(rows / WG)));
  const kdq = await ctx.kernels.get(FILE, "bwd_dq", consts);
  batch.dispatch(kdq, { q, k, v, dout, lse, delta, dq }, params, kdq.grid1d(Math.ceil(rows / WG)));
  const kdkv = await ctx.kernels.get(FILE, "bwd_dkv", consts);
  batch.dispatch(kdkv, { q, k, v, dout, lse, delta, dk, dv }, params, kdkv.grid1d(Math.ceil((T * Hkv) / WG)));
}
