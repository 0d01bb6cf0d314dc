// nn/elementwise.ts — residual add, SwiGLU and bias add (shaders/nn/elementwise.wgsl).

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

const FILE = "nn/elementwise.wgsl";

/** x += y (same element count). */
export async function addInPlace(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, y: GpuTensor): Promise<void> {
  if (x.numel !== y.numel) throw new TensorError(y.label, `add: ${y.numel} elements vs ${x.label}'s ${x.numel}`);
  const k = await ctx.kernels.get(FILE, "add_inplace", { WG_SIZE: 256 });
  batch.dispatch(k, { x, y }, { n: x.numel, cols: 1 }, k.grid1d(Math.ceil(x.numel / 256)));
}

/** out = silu(gate) * up. */
export async function siluMul(ctx: GpuContext, batch: CommandBatch, gate: GpuTensor, up: GpuTensor, out: GpuTensor): Promise<void> {
  if (gate.numel !== up.numel || out.numel !== up.numel) throw new TensorError(out.label, "silu_mul: gate, up and out differ in size");
  const k = await ctx.kernels.get(FILE, "silu_mul", { WG_SIZE: 256 });
  batch.dispatch(k, { x: out, y: gate, u: up }, { n: out.numel, cols: 1 }, k.grid1d(Math.ceil(out.numel / 256)));
}

/** x (T, N) += b (N). */
export async function addBias(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, b: GpuTensor): Promise<void> {
  if (x.numel % b.numel) throw new TensorError(b.label, `bias of ${b.numel} does not divide ${x.label} (${x.numel})`);
  const k = await ctx.kernels.get(FILE, "add_bias", { WG_SIZE: 256 });
  batch.dispatch(k, { x, y: b }, { n: x.numel, cols: b.numel }, k.grid1d(Math.ceil(x.numel / 256)));
}

/** x (R, C) *= s (C) column-wise (mode "cols") or s (R) row-wise (mode "rows"). */
export async function scale(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, s: GpuTensor, mode: "cols" | "rows"): Promise<void> {
  const cols = mode === "cols" ? s.numel : x.numel / s.numel;
  if (!Number.isInteger(cols) || x.numel % s.numel) throw new TensorError(s.label, `scale: ${s.numel} values do not divide ${x.label} (${x.numel})`);
  const k = await ctx.kernels.get(FILE, mode === "cols" ? "mul_cols" : "mul_rows", { WG_SIZE: 256 });
  batch.dispatch(k, { x, y: s }, { n: x.numel, cols }, k.grid1d(Math.ceil(x.numel / 256)));
}

/** out = a - b. */
export async function sub(ctx: GpuContext, batch: CommandBatch, a: GpuTensor, b: GpuTensor, out: GpuTensor): Promise<void> {
  if (a.numel !== b.numel || out.numel !== a.numel) throw new TensorError(out.label, "sub: a, b and out differ in size");
  const k = await ctx.kernels.get(FILE, "sub", { WG_SIZE: 256 });
  batch.dispatch(k, { x: out, y: a, u: b }, { n: out.numel, cols: 1 }, k.grid1d(Math.ceil(out.numel / 256)));
}

/** out (C, R) = xᵀ for x (R, C) f32; out must be another tensor. */
export async function transpose(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, out: GpuTensor): Promise<void> {
  if (x.shape.length !== 2 || x.dtype !== "f32") throw new TensorError(x.label, `transpose needs f32 [R, C], got ${x.dtype} [${x.shape}]`);
  const [R, C] = x.shape;
  if (out.dtype !== "f32" || out.numel !== R * C) throw new TensorError(out.label, `transpose output must be f32 [${C}, ${R}]`);
  if (out.buffer === x.buffer) throw new TensorError(out.label, "transpose cannot run in place");
  if (R * C === 0) return;
  const k = await ctx.kernels.get(FILE, "transpose", { WG_SIZE: 256 });
  batch.dispatch(k, { x: out, y: x }, { n: R * C, cols: C }, k.grid1d(Math.ceil((R * C) / 256)));
}
