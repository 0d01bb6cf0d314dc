// nn/rmsnorm.ts — y (T, H) = x / sqrt(mean x^2 + eps) * w (shaders/nn/rmsnorm.wgsl).

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

export async function rmsnorm(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, w: GpuTensor, y: GpuTensor, eps: number): Promise<void> {
  const H = w.numel;
  const T = x.numel / H;
  if (!Number.isInteger(T) || y.numel !== x.numel) throw new TensorError(x.label, `rmsnorm: x [${x.shape}] / y [${y.shape}] do not match w [${H}]`);
  const k = await ctx.kernels.get("nn/rmsnorm.wgsl", "main", { WG_SIZE: 64 });
  batch.dispatch(k, { x, w, y }, { T, H, eps }, k.grid1d(T));
}
