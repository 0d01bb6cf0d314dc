// train/kd.ts — distillation loss for QAT (shaders/train/kd.wgsl): per token KL(teacher || student)
// over the vocabulary and its gradient (softmax(student) − softmax(teacher)) · scale, written over
// the student logits; lossSum receives [Σ KL, T] like the cross-entropy op.

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

export async function kdBackward(ctx: GpuContext, batch: CommandBatch, logits: GpuTensor, teacher: GpuTensor, lossSum: GpuTensor, scale?: number): Promise<void> {
  const [T, V] = logits.shape;
  if (logits.dtype !== "f32" || logits.shape.length !== 2) throw new TensorError(logits.label, `kd logits must be f32 [T, V], got ${logits.dtype} [${logits.shape}]`);
  if (teacher.dtype !== "f32" || teacher.numel !== T * V) throw new TensorError(teacher.label, `kd teacher logits must be f32 [${T}, ${V}]`);
  if (lossSum.dtype !== "f32" || lossSum.numel < 2) throw new TensorError(lossSum.label, "kd loss sum needs 2 f32");
  const rowKl = GpuTensor.empty(ctx.gpu, [Math.max(T, 1)], "f32", "kd.row_kl");
  batch.own(rowKl);
  const params = { T, V, scale: scale ?? 1 / Math.max(T, 1) };
  const k = await ctx.kernels.get("train/kd.wgsl", "kd_grad", { WG_SIZE: 64 });
  batch.dispatch(k, { logits, teacher, row_kl: rowKl }, params, k.grid1d(Math.ceil(T / 64)));
  const s = await ctx.kernels.get("train/kd.wgsl", "sum_rows", { WG_SIZE: 64 });
  batch.dispatch(s, { row_kl: rowKl, loss: lossSum }, params, [1, 1, 1]);
}
