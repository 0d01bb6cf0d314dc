// nn/rope.ts — rotary embedding in place on x (T, nh, D) for positions pos0.. (shaders/nn/rope.wgsl).
// Callers that apply RoPE many times over the same positions (AWQ's scale search) make a cos / sin
// table once with ropeTable() and pass it: the same values, without a cos and sin per pair.

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

/** cos / sin of positions 0 .. positions-1 (rope.wgsl make_table). */
export interface RopeTable {
  tensor: GpuTensor;
  positions: number;
}

/** Records the table for positions 0 .. positions-1; the caller destroys table.tensor. */
export async function ropeTable(ctx: GpuContext, batch: CommandBatch, invFreq: GpuTensor, positions: number): Promise<RopeTable> {
  const half = invFreq.numel;
  const tensor = GpuTensor.empty(ctx.gpu, [positions, 2, half], "f32", "rope.table");
  const k = await ctx.kernels.get("nn/rope.wgsl", "make_table", { WG_SIZE: 64 });
  batch.dispatch(k, { inv_freq: invFreq, tab_out: tensor }, { T: positions, nh: 1, D: 2 * half, pos0: 0, seq: 0 }, k.grid(half, positions));
  return { tensor, positions };
}

/** seq > 0: x holds T / seq independent sequences of seq tokens, each starting at position pos0. */
export async function rope(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, invFreq: GpuTensor, T: number, nh: number, pos0: number, seq = 0, table?: RopeTable): Promise<void> {
  const D = invFreq.numel * 2;
  if (x.numel !== T * nh * D) throw new TensorError(x.label, `rope: expected [${T}, ${nh}, ${D}], got [${x.shape}]`);
  const last = pos0 + (seq > 0 ? Math.min(seq, T) : T);
  if (table && D % 8 === 0 && last <= table.positions) {
    const k = await ctx.kernels.get("nn/rope.wgsl", "apply_table", { WG_SIZE: 64 });
    batch.dispatch(k, { xv: x, tab: table.tensor }, { T, nh, D, pos0, seq }, k.grid((nh * D) / 8, T));
    return;
  }
  const k = await ctx.kernels.get("nn/rope.wgsl", "main", { WG_SIZE: 64 });
  batch.dispatch(k, { x, inv_freq: invFreq }, { T, nh, D, pos0, seq }, k.grid((nh * D) / 2, T));
}
