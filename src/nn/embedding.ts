// nn/embedding.ts — x (T, H) = E[ids] (shaders/nn/embedding.wgsl); E f32 or f16, bound in row windows.

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

/** Records out (T, H) = E (V, H)[ids (T)] into `batch`. ids must be u32 < V (checked by the caller on upload). */
export async function embedding(ctx: GpuContext, batch: CommandBatch, ids: GpuTensor, E: GpuTensor, out: GpuTensor): Promise<void> {
  const T = ids.numel;
  const [V, H] = E.shape;
  if (ids.dtype !== "u32") throw new TensorError(ids.label, `token ids must be u32, got ${ids.dtype}`);
  if (E.dtype !== "f32" && E.dtype !== "f16") throw new TensorError(E.label, `embedding must be f32 or f16, got ${E.dtype}`);
  if (out.numel !== T * H || out.dtype !== "f32") throw new TensorError(out.label, `embedding output must be f32 [${T}, ${H}]`);
  const f16 = E.dtype === "f16";
  const k = await ctx.kernels.get("nn/embedding.wgsl", "main", { WG_SIZE: 64, E_F16: f16 });
  for (const w of E.rowWindows({ rowBytes: H * (f16 ? 2 : 4), rowMultiple: f16 && H % 2 ? 2 : 1 })) {
    batch.dispatch(k, { ids, emb: { tensor: E, byteOffset: w.byteOffset, byteSize: w.byteSize }, out }, { T, H, r0: w.firstRow, rows: w.rows }, k.grid2d(H, T));
  }
  void V;
}
