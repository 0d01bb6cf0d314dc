// nn/convert.ts — f32 <-> f16 and f32 -> bf16 on the GPU (shaders/common/convert.wgsl), windowed so tensors
// larger than one storage binding convert too. f16 tensors hold binary16 bits, two per u32 word.

import { TensorError } from "../errors.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/** src f32 [n] -> dst f16 [n] (round to nearest even). Records into `batch`. */
export function convertF32ToF16(ctx: GpuContext, batch: CommandBatch, src: GpuTensor, dst: GpuTensor): Promise<void> {
  return cast(ctx, batch, "f32_to_f16", src, "f32", dst, "f16");
}

/** src f32 [n] -> dst bf16 [n] (round to nearest even; NaN stays NaN). Records into `batch`. */
export function convertF32ToBf16(ctx: GpuContext, batch: CommandBatch, src: GpuTensor, dst: GpuTensor): Promise<void> {
  return cast(ctx, batch, "f32_to_bf16", src, "f32", dst, "bf16");
}

/** src f16 [n] -> dst f32 [n] (exact). Records into `batch`. */
export function convertF16ToF32(ctx: GpuContext, batch: CommandBatch, src: GpuTensor, dst: GpuTensor): Promise<void> {
  return cast(ctx, batch, "f16_to_f32", src, "f16", dst, "f32");
}

/** One dispatch per binding window; every convert kernel has bindings src, dst and Params { n }. */
async function cast(ctx: GpuContext, batch: CommandBatch, conversion: string, src: GpuTensor, sd: string, dst: GpuTensor, dd: string): Promise<void> {
  check(src, sd, dst, dd);
  const k = await ctx.kernels.get("common/convert.wgsl", "main", { WG_SIZE: 256 }, { CONVERSION: conversion });
  const wide = sd === "f32" ? src : dst;
  const [sb, db] = [sd === "f32" ? 4 : 2, dd === "f32" ? 4 : 2];
  for (const w of elementWindows(ctx, wide)) {
    batch.dispatch(
      k,
      { src: { tensor: src, byteOffset: w.first * sb, byteSize: w.count * sb }, dst: { tensor: dst, byteOffset: w.first * db, byteSize: w.count * db } },
      { n: w.count },
      k.grid1d(Math.ceil(Math.ceil(w.count / 2) / 256)),
    );
  }
}

function check(src: GpuTensor, sd: string, dst: GpuTensor, dd: string): void {
  if (src.dtype !== sd) throw new TensorError(src.label, `expected ${sd}, got ${src.dtype}`);
  if (dst.dtype !== dd) throw new TensorError(dst.label, `expected ${dd}, got ${dst.dtype}`);
  if (src.numel !== dst.numel) throw new TensorError(dst.label, `has ${dst.numel} elements, ${src.label} has ${src.numel}`);
}

/** Element windows of the f32 side; starts are multiples of align/2 elements so the f16 side is aligned too. */
function elementWindows(ctx: GpuContext, f32side: GpuTensor): { first: number; count: number }[] {
  const align = ctx.gpu.limits.minStorageBufferOffsetAlignment;
  const flat = f32side.view(`${f32side.label}.flat`, [f32side.numel], 0);
  return flat.rowWindows({ rowBytes: 4, rowMultiple: Math.max(1, align / 2) }).map((w) => ({ first: w.firstRow, count: w.rows }));
}
