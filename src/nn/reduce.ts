// nn/reduce.ts — per-row / per-column statistics on the GPU (shaders/common/reduce.wgsl):
// x (R, C) f32 -> out (S, 4) f32 = (sum, sum |x|, max |x|, sum x^2), S = R (rows) or C (cols).
// x may be larger than one storage binding: it is bound in row windows.

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

/** Statistics per row (S = R) or per column (S = C). */
export type ReduceAxis = "rows" | "cols";

const WG = 256;

/**
 * Float64 sum of values[first .. first+count) in index order: the host half of the kernels that
 * leave per-invocation partial sums (AWQ's losses, AdamW's gradient norm), repeatable bit for bit.
 */
export function sumPartials(values: ArrayLike<number>, first = 0, count = values.length - first): number {
  let s = 0;
  for (let i = first; i < first + count; i++) s += values[i];
  return s;
}
/** Elements of a row per workgroup (rows mode) — a multiple of WG. */
const ROW_CHUNK = 4096;
/** Rows per invocation (cols mode). */
const COL_CHUNK = 256;

/**
 * Records the two passes into `batch`; `out` must be f32 [S, 4]. With `accumulate`, the new
 * statistics are folded into what `out` holds (sums add, max |x| takes the max).
 */
export async function reduceStats(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, axis: ReduceAxis, out: GpuTensor, accumulate = false): Promise<void> {
  if (x.dtype !== "f32" || x.shape.length !== 2) throw new TensorError(x.label, `reduceStats needs f32 [R, C], got ${x.dtype} [${x.shape}]`);
  const [R, C] = x.shape;
  const S = axis === "rows" ? R : C;
  if (out.dtype !== "f32" || out.numel !== S * 4) throw new TensorError(out.label, `reduceStats output must be f32 [${S}, 4], got ${out.dtype} [${out.shape}]`);
  const { kernels, gpu } = ctx;
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  const rowBytes = C * 4;

  let nparts: number;
  let partials: GpuTensor;
  if (axis === "rows") {
    nparts = Math.max(1, Math.ceil(C / ROW_CHUNK));
    partials = GpuTensor.empty(gpu, [nparts, S, 4], "f32", `${x.label}.partials`);
    const k = await kernels.get("common/reduce.wgsl", "partial_rows", { WG_SIZE: WG });
    for (const w of x.rowWindows({ rowBytes, maxRows: maxDim })) {
      batch.dispatch(
        k,
        { x: { tensor: x, byteOffset: w.byteOffset, byteSize: w.byteSize }, partials },
        { rows: w.rows, cols: C, chunk: ROW_CHUNK, seg0: w.firstRow, part0: 0, nseg: S, nparts },
        [nparts, w.rows, 1],
      );
    }
  } else {
    nparts = Math.max(1, Math.ceil(R / COL_CHUNK));
    partials = GpuTensor.empty(gpu, [nparts, S, 4], "f32", `${x.label}.partials`);
    const k = await kernels.get("common/reduce.wgsl", "partial_cols", { WG_SIZE: WG });
    for (const w of x.rowWindows({ rowBytes, rowMultiple: COL_CHUNK, maxRows: COL_CHUNK * maxDim })) {
      batch.dispatch(
        k,
        { x: { tensor: x, byteOffset: w.byteOffset, byteSize: w.byteSize }, partials },
        { rows: w.rows, cols: C, chunk: COL_CHUNK, seg0: 0, part0: w.firstRow / COL_CHUNK, nseg: S, nparts },
        k.grid(C, Math.ceil(w.rows / COL_CHUNK) * k.workgroupSize[1]),
      );
    }
  }
  const combine = await kernels.get("common/reduce.wgsl", "combine", { WG_SIZE: WG, ACCUMULATE: accumulate });
  batch.dispatch(
    combine,
    { partials, out },
    { rows: R, cols: C, chunk: 0, seg0: 0, part0: 0, nseg: S, nparts },
    combine.grid1d(Math.ceil(S / WG)),
  );
  batch.own(partials);
}
