// nn/matmul.ts — y (M, N) = x (M, K) · W (N, K)^T on the GPU (shaders/nn/matmul.wgsl).
// W is f32 or f16 (binary16 bits, two per word); x and y are f32. W may exceed one storage
// binding: it is bound in windows of whole rows and each window writes its columns of y.

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { Gpu } from "../gpu/device.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { GpuTensor } from "../gpu/tensor.ts";

const WG_X = 8;
const WG_Y = 8;
const TILE = 4;

/** Dense kernel shapes: `tiled` (matmul.wgsl, any M) and `subgroup` (matmul_sg.wgsl, GEMV, M <= 8). */
export type DenseVariant = "tiled" | "subgroup";
export const DENSE_VARIANTS: readonly DenseVariant[] = ["tiled", "subgroup"];
/** Largest M the subgroup GEMV takes. */
export const DENSE_GEMV_MAX_M = 8;

/** Why `variant` cannot run M rows here, or null when it can. */
export function denseVariantUnavailable(gpu: Gpu, variant: DenseVariant, M: number): string | null {
  if (variant === "tiled") return null;
  if (M > DENSE_GEMV_MAX_M) return `subgroup is a GEMV for M <= ${DENSE_GEMV_MAX_M} (M = ${M})`;
  if (!gpu.has("subgroups") || gpu.adapterInfo.subgroupMinSize < 8) return "needs subgroups of at least 8 invocations";
  return null;
}

/**
 * The variant matmul() uses when none is forced: the subgroup GEMV for M <= 8 on GPUs (the shape of
 * the int4 kernel that was fastest at M <= 8 on an NVIDIA H200: neighbouring lanes read neighbouring
 * words) and for M = 1 on CPU adapters (lavapipe, f16 4096²: 30 vs 49 ms; at M = 8 the tiled kernel
 * wins, 90 vs 110-150 ms); the tiled kernel otherwise.
 */
export function chooseDense(gpu: Gpu, M: number): DenseVariant {
  if (denseVariantUnavailable(gpu, "subgroup", M)) return "tiled";
  return gpu.adapterInfo.kind !== "cpu" || M === 1 ? "subgroup" : "tiled";
}

/**
 * Records y = x · Wᵀ into `batch`. Shapes: x [M, K] f32, w [N, K] f32|f16, y [M, N] f32. Returns
 * the variant used (chooseDense() unless forced).
 */
export async function matmul(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, w: GpuTensor, y: GpuTensor, opts: { variant?: DenseVariant } = {}): Promise<DenseVariant> {
  const [M, K] = x.shape;
  const [N, Kw] = w.shape;
  if (x.dtype !== "f32" || x.shape.length !== 2) throw new TensorError(x.label, `matmul x must be f32 [M, K], got ${x.dtype} [${x.shape}]`);
  if ((w.dtype !== "f32" && w.dtype !== "f16") || w.shape.length !== 2) throw new TensorError(w.label, `matmul W must be f32 or f16 [N, K], got ${w.dtype} [${w.shape}]`);
  if (Kw !== K) throw new TensorError(w.label, `K mismatch: W [${w.shape}] vs x [${x.shape}]`);
  if (y.dtype !== "f32" || y.shape.length !== 2 || y.shape[0] !== M || y.shape[1] !== N) throw new TensorError(y.label, `matmul y must be f32 [${M}, ${N}], got ${y.dtype} [${y.shape}]`);
  const variant = opts.variant ?? chooseDense(ctx.gpu, M);
  const why = denseVariantUnavailable(ctx.gpu, variant, M);
  if (why) throw new UsageError(`matmul variant '${variant}' cannot run here: ${why}`, "use the tiled variant");
  if (M === 0 || N === 0) return variant;
  const f16 = w.dtype === "f16";
  const maxRows = TILE * WG_X * ctx.gpu.limits.maxComputeWorkgroupsPerDimension;
  // f16 windows must start on an even element: whole rows of even K, or an even number of rows.
  const windows = w.rowWindows({ rowBytes: K * (f16 ? 2 : 4), maxRows, rowMultiple: f16 && K % 2 ? 2 : 1 });
  if (variant === "subgroup") {
    const k = await ctx.kernels.get("nn/matmul_sg.wgsl", "main", { WG_SIZE: 64, W_F16: f16, TM: M });
    for (const win of windows) {
      batch.dispatch(k, { x, w: { tensor: w, byteOffset: win.byteOffset, byteSize: win.byteSize }, y }, { M, N, K, n0: win.firstRow, nw: win.rows }, k.grid1d(Math.ceil(win.rows / 8)));
    }
    return variant;
  }
  const k = await ctx.kernels.get("nn/matmul.wgsl", "main", { WG_X, WG_Y, W_F16: f16 });
  for (const win of windows) {
    batch.dispatch(
      k,
      { x, w: { tensor: w, byteOffset: win.byteOffset, byteSize: win.byteSize }, y },
      { M, N, K, n0: win.firstRow, nw: win.rows },
      k.grid2d(Math.ceil(win.rows / TILE), Math.ceil(M / TILE)),
    );
  }
  return variant;
}

// ---------------------------------------------------------------------------------------------
// Transposed-weight GEMM for CPU adapters (shaders/nn/matmul_wt.wgsl): y = x · Wt with Wt = Wᵀ stored [K, N].
// Callers that re-run the same weights many times (AWQ's searches) keep a transposed copy and
// call matmulWt when matmulWtPreferred() says so.

// Rows per workgroup: the plain GEMM is fastest with 16 on lavapipe, the two-weight SWIGLU variant with
// 12 (past which its register tile spills).
const WT_TM = 16;
const WT_TM_SWIGLU = 12;

/** Why matmulWt cannot run x [M, K] · Wt [K, N] on this device, or null when it can. */
export function matmulWtUnavailable(gpu: Gpu, M: number, N: number, K: number): string | null {
  if (!gpu.has("subgroups") || gpu.adapterInfo.subgroupMinSize < 8) return "needs subgroups of at least 8 invocations";
  if (N % 4 || K % 4) return `needs N and K multiples of 4 (N = ${N}, K = ${K})`;
  const lim = gpu.limits.maxStorageBufferBindingSize;
  if (Math.max(M * K, K * N, M * N) * 4 > lim) return "x, Wt and y must each fit one storage binding";
  if (Math.ceil(M / Math.min(WT_TM, WT_TM_SWIGLU)) > gpu.limits.maxComputeWorkgroupsPerDimension) return `M = ${M} exceeds one dispatch`;
  return null;
}

/** True on CPU adapters where matmulWt runs: there it is several times faster than matmul(). */
export function matmulWtPreferred(gpu: Gpu, M: number, N: number, K: number): boolean {
  return gpu.adapterInfo.kind === "cpu" && matmulWtUnavailable(gpu, M, N, K) === null;
}

/** Records y = x · Wt into `batch`. Shapes: x [M, K] f32, wt [K, N] f32 (W transposed), y [M, N] f32. */
export async function matmulWt(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, wt: GpuTensor, y: GpuTensor): Promise<void> {
  const [M, K] = x.shape;
  const [Kw, N] = wt.shape;
  if (x.dtype !== "f32" || x.shape.length !== 2) throw new TensorError(x.label, `matmulWt x must be f32 [M, K], got ${x.dtype} [${x.shape}]`);
  if (wt.dtype !== "f32" || wt.shape.length !== 2 || Kw !== K) throw new TensorError(wt.label, `matmulWt Wt must be f32 [${K}, N], got ${wt.dtype} [${wt.shape}]`);
  if (y.dtype !== "f32" || y.shape.length !== 2 || y.shape[0] !== M || y.shape[1] !== N) throw new TensorError(y.label, `matmulWt y must be f32 [${M}, ${N}], got ${y.dtype} [${y.shape}]`);
  const why = matmulWtUnavailable(ctx.gpu, M, N, K);
  if (why) throw new UsageError(`matmulWt cannot run [${M}, ${K}] x [${K}, ${N}] here: ${why}`, "use matmul() with W [N, K]");
  if (M === 0 || N === 0) return;
  const k = await ctx.kernels.get("nn/matmul_wt.wgsl", "main", { TM: WT_TM });
  batch.dispatch(k, { x, wt, wu: wt, y }, { M, N, K }, [Math.ceil(N / 32), Math.ceil(M / WT_TM), 1]);
}

/**
 * Records h = silu(x · Wgt) * (x · Wut) (the Llama MLP's gate and up projections and SwiGLU in one
 * pass; matmul_wt.wgsl with SWIGLU). Shapes: x [M, K], wgt and wut [K, N] (transposed), h [M, N].
 */
export async function swigluWt(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, wgt: GpuTensor, wut: GpuTensor, h: GpuTensor): Promise<void> {
  const [M, K] = x.shape;
  const [Kw, N] = wgt.shape;
  if (x.dtype !== "f32" || x.shape.length !== 2) throw new TensorError(x.label, `swigluWt x must be f32 [M, K], got ${x.dtype} [${x.shape}]`);
  for (const w of [wgt, wut]) {
    if (w.dtype !== "f32" || w.shape.length !== 2 || w.shape[0] !== K || w.shape[1] !== N || Kw !== K) throw new TensorError(w.label, `swigluWt weights must be f32 [${K}, ${N}], got ${w.dtype} [${w.shape}]`);
  }
  if (h.dtype !== "f32" || h.shape.length !== 2 || h.shape[0] !== M || h.shape[1] !== N) throw new TensorError(h.label, `swigluWt h must be f32 [${M}, ${N}], got ${h.dtype} [${h.shape}]`);
  const why = matmulWtUnavailable(ctx.gpu, M, N, K);
  if (why) throw new UsageError(`swigluWt cannot run [${M}, ${K}] x [${K}, ${N}] here: ${why}`, "use matmul() and siluMul()");
  if (M === 0 || N === 0) return;
  const k = await ctx.kernels.get("nn/matmul_wt.wgsl", "main", { TM: WT_TM_SWIGLU, SWIGLU: true });
  batch.dispatch(k, { x, wt: wgt, wu: wut, y: h }, { M, N, K }, [Math.ceil(N / 32), Math.ceil(M / WT_TM_SWIGLU), 1]);
}
