// nn/rope.ts — rotary embedding in place on x (T, nh, D) for positions pos0.. (shaders/nn/rope.wgsl).

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/** seq > 0: x holds T / seq independent sequences of seq tokens, each starting at position pos0. */
export async function rope(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, invFreq: GpuTensor, T: number, nh: number, pos0: number, seq = 0): Promise<void> {
  const D = invFreq.numel * 2;
  if (x.numel !== T * nh * D) throw new TensorError(x.label, `rope: expected [${T}, ${nh}, ${D}], got [${x.shape}]`);
  const k = await ctx.kernels.get("nn/rope.wgsl", "main", { WG_SIZE: 64 });
  batch.dispatch(k, { x, inv_freq: invFreq }, { T, nh, D, pos0, seq }, k.grid2d((nh * D) / 2, T));
}
