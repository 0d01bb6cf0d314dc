// quant/matmul.ts — y (M, N) = x (M, K) · dequant(W) (N, K)^T on packed int4/int8 weights
// (src/quant/formats.ts), without ever materialising the dequantized matrix. Picks a kernel variant
// from the device, or takes one forced by the caller (tests cover every variant that way):
//
//   variant     shader                       when (auto)                                   x / y
//   tiled       quant/matmul_q.wgsl          M > 8 on GPUs; fallback                       f32
//   tiled_f16   quant/matmul_q.wgsl, f16     x is f16 (needs shader-f16)                   f16
//   subgroup    quant/matmul_q_sg.wgsl       GPU, M <= 8, `subgroups`, subgroupMinSize >= 8 f32
//   dp4a        quant/matmul_q_dp4a.wgsl     GPU, M <= 8, packed_4x8_integer_dot_product,   f32
//                                            int4 G % 32 == 0, int8Activations: true
//   kmajor      quant/kmajor.wgsl            CPU adapter (any M), weight in one binding,     f32
//                                            subgroups >= 8
//   kmajor_dp4a quant/kmajor_dp4a.wgsl       CPU adapter, M <= 8, int8Activations: true,     f32
//                                            as kmajor and dp4a (forced: any M)
// (auto order for a GPU GEMV: dp4a when int8Activations is true, then subgroup, then tiled; for a
// CPU GEMV: kmajor_dp4a when int8Activations is true, then kmajor, then tiled. On an NVIDIA H200
// the exact subgroup GEMV ran 2-3.5x faster than dp4a, so exact is the default everywhere.)
// The kmajor variants run on a K-major copy of the weight made once and cached (src/quant/kmajor.ts);
// it is freed with the weight (destroyPacked) or by releaseKMajor().
//
// dp4a quantizes x to int8 per block of 32 on the fly (≈4e-3 relative error, like ORT's
// accuracy_level 4 or llama.cpp's q8_1 activations); it runs only with { int8Activations: true }.
// Every other variant is within 1e-5 of the exact product. Weights larger than one storage binding are bound in row windows.

import { DeviceCapabilityError, TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { Gpu } from "../gpu/device.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { groupsPerRow, type QuantSpec, wordsPerRow } from "./formats.ts";
import { KMAJOR_VARIANTS, kmajorMatmul, kmajorUnavailable, type KMajorVariant } from "./kmajor.ts";
import type { GpuPackedWeight } from "./packed.ts";

export type QMatmulVariant = "tiled" | "tiled_f16" | "subgroup" | "dp4a";
export const QMATMUL_VARIANTS: readonly QMatmulVariant[] = ["tiled", "tiled_f16", "subgroup", "dp4a"];
/** Every variant qmatmul can run: the canonical-layout kernels and the K-major GEMVs of kmajor.ts. */
export type QMatmulAnyVariant = QMatmulVariant | KMajorVariant;
export const QMATMUL_ALL_VARIANTS: readonly QMatmulAnyVariant[] = [...QMATMUL_VARIANTS, ...KMAJOR_VARIANTS];

export interface QMatmulOptions {
  /** Force a variant (throws when the device or the shapes rule it out). */
  variant?: QMatmulAnyVariant;
  /** Allow the dp4a GEMVs (dp4a, kmajor_dp4a), which round x to int8 per 32-block. Default false. */
  int8Activations?: boolean;
  /** Cap on the bytes of qweight bound per dispatch (tests use it to force several windows). */
  maxWindowBytes?: number;
}

/** Largest M the GEMV variants (subgroup, dp4a, tiled with TM = M) handle in one tile. */
export const GEMV_MAX_M = 8;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Why `variant` cannot run x (M, ·) of dtype `xType` against `w` on this device, or null when it can. */
export function variantUnavailable(gpu: Gpu, variant: QMatmulAnyVariant, w: QuantSpec, M: number, xType: "f32" | "f16"): string | null {
  if (variant === "kmajor" || variant === "kmajor_dp4a") return kmajorUnavailable(gpu, variant, w, M, xType);
  if (variant === "tiled_f16") {
    if (xType !== "f16") return "tiled_f16 takes f16 activations";
    return gpu.has("shader-f16") ? null : "the device lacks shader-f16";
  }
  if (xType !== "f32") return `${variant} takes f32 activations`;
  if (variant === "tiled") return null;
  if (M > GEMV_MAX_M) return `${variant} is a GEMV for M <= ${GEMV_MAX_M} (M = ${M})`;
  if (variant === "subgroup") return gpu.has("subgroups") ? null : "the device lacks the subgroups feature";
  if (!gpu.wgslFeatures.has("packed_4x8_integer_dot_product")) return "WGSL lacks packed_4x8_integer_dot_product";
  if (w.bits !== 8 && w.G % 32 !== 0) return `dp4a needs a group size that is a multiple of 32 (G = ${w.G})`;
  return null;
}

/** The variant qmatmul() uses when none is forced. */
export function chooseVariant(gpu: Gpu, w: QuantSpec, M: number, xType: "f32" | "f16", opts: QMatmulOptions = {}): QMatmulAnyVariant {
  if (xType === "f16") return "tiled_f16";
  // CPU adapters (lavapipe): GPU-shaped kernels lose to no-barrier kernels whose neighbouring
  // invocations read neighbouring words; the K-major copy gives exactly that, for GEMV and GEMM
  // alike (wgq bench: 4.5x the tiled kernel at M = 128 on 2048², the fastest int4 at M = 512).
  if (gpu.adapterInfo.kind === "cpu" && M > GEMV_MAX_M) return kmajorUnavailable(gpu, "kmajor", w, M, xType) ? "tiled" : "kmajor";
  if (M > GEMV_MAX_M) return "tiled";
  if (gpu.adapterInfo.kind === "cpu") {
    if (opts.int8Activations === true && !kmajorUnavailable(gpu, "kmajor_dp4a", w, M, xType)) return "kmajor_dp4a";
    return kmajorUnavailable(gpu, "kmajor", w, M, xType) ? "tiled" : "kmajor";
  }
  if (opts.int8Activations === true && !variantUnavailable(gpu, "dp4a", w, M, xType)) return "dp4a";
  if (gpu.adapterInfo.subgroupMinSize >= 8 && !variantUnavailable(gpu, "subgroup", w, M, xType)) return "subgroup";
  return "tiled";
}

/**
 * Records y = x · dequant(w)ᵀ into `batch`. Shapes: x [M, K] f32 (or f16 -> tiled_f16), w packed
 * [N, K], y [M, N] of x's dtype. Returns the variant used. Scratch (dp4a's int8 x) is owned by the batch.
 */
export async function qmatmul(
  ctx: GpuContext,
  batch: CommandBatch,
  x: GpuTensor,
  w: GpuPackedWeight,
  y: GpuTensor,
  opts: QMatmulOptions = {},
): Promise<QMatmulAnyVariant> {
  const { gpu } = ctx;
  const [M, K] = x.shape;
  const { N } = w;
  if ((x.dtype !== "f32" && x.dtype !== "f16") || x.shape.length !== 2) throw new TensorError(x.label, `qmatmul x must be f32 or f16 [M, K], got ${x.dtype} [${x.shape}]`);
  if (K !== w.K) throw new TensorError(w.label, `K mismatch: weight [${w.N}, ${w.K}] vs x [${x.shape}]`);
  if (y.dtype !== x.dtype || y.shape.length !== 2 || y.shape[0] !== M || y.shape[1] !== N) {
    throw new TensorError(y.label, `qmatmul y must be ${x.dtype} [${M}, ${N}], got ${y.dtype} [${y.shape}]`);
  }
  const xType = x.dtype;
  const variant = opts.variant ?? chooseVariant(gpu, w, M, xType, opts);
  const why = variantUnavailable(gpu, variant, w, M, xType);
  if (why) {
    const msg = `qmatmul variant '${variant}' cannot run here: ${why}`;
    const hint = `variants that can: ${QMATMUL_ALL_VARIANTS.filter((v) => !variantUnavailable(gpu, v, w, M, xType)).join(", ")}`;
    throw /lacks/.test(why) ? new DeviceCapabilityError(msg, { hint }) : new UsageError(msg, hint);
  }
  if (M === 0) return variant;
  if (variant === "kmajor" || variant === "kmajor_dp4a") {
    if (opts.maxWindowBytes) throw new UsageError(`qmatmul variant '${variant}' binds the whole weight; maxWindowBytes applies to the canonical-layout variants`);
    await kmajorMatmul(ctx, batch, x, w, y, variant);
    return variant;
  }

  const KW = wordsPerRow(w);
  const ng = groupsPerRow(w);
  const G = w.bits === 8 ? KW * 4 : w.G;
  const zeros = w.zeros ?? w.scales; // unread when sym or int8, but the binding must exist
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const step = align / gcd(align, KW * 4);
  const maxRows = opts.maxWindowBytes ? Math.max(step, Math.floor(opts.maxWindowBytes / (KW * 4))) : undefined;
  const windows = w.qweight.rowWindows({ rowBytes: KW * 4, rowMultiple: step, maxRows });
  const params = (n0: number, nw: number) => ({ M, N, K, G, ng, n0, nw, sym: w.bits !== 8 && w.sym ? 1 : 0 });
  const win = (t: GpuTensor, byteOffset: number, byteSize: number) => ({ tensor: t, byteOffset, byteSize });

  if (variant === "tiled" || variant === "tiled_f16") {
    // Two pipelines per BITS (TM 1 for decode, 4 otherwise): each costs ~1 s of JIT on lavapipe.
    const TM = M === 1 ? 1 : 4;
    const k = await ctx.kernels.get("quant/matmul_q.wgsl", "main", { WG_X: 64, WG_Y: 1, BITS: w.bits === 8 ? 8 : 4, TM }, { X_TYPE: variant === "tiled" ? "f32" : "f16" });
    for (const wn of windows) {
      batch.dispatch(
        k,
        { x, qweight: win(w.qweight, wn.byteOffset, wn.byteSize), scales: w.scales, zeros, y },
        params(wn.firstRow, wn.rows),
        k.grid2d(Math.ceil(wn.rows / 4), Math.ceil(M / TM)),
      );
    }
    return variant;
  }

  if (variant === "subgroup") {
    const WG = 64;
    const k = await ctx.kernels.get("quant/matmul_q_sg.wgsl", "main", { WG_SIZE: WG, BITS: w.bits === 8 ? 8 : 4, TM: M });
    for (const wn of windows) {
      batch.dispatch(
        k,
        { x, qweight: win(w.qweight, wn.byteOffset, wn.byteSize), scales: w.scales, zeros, y },
        params(wn.firstRow, wn.rows),
        k.grid1d(Math.ceil(wn.rows / (WG / 8))),
      );
    }
    return variant;
  }

  // dp4a: quantize x once, then one dispatch per weight window.
  const WG = 64;
  const NB = Math.ceil(K / 32);
  const xq = GpuTensor.empty(gpu, [M, NB * 8], "u32", `${x.label}.int8`);
  const xs = GpuTensor.empty(gpu, [M, NB * 2], "f32", `${x.label}.int8_scales`);
  batch.own(xq, xs);
  const TM = M === 1 ? 1 : 4; // as tiled: few pipelines (dp4a's JIT takes ~1-2 s each on lavapipe)
  const kq = await ctx.kernels.get("quant/matmul_q_dp4a.wgsl", "quantize_x", { WG_SIZE: WG, BITS: w.bits === 8 ? 8 : 4 });
  const km = await ctx.kernels.get("quant/matmul_q_dp4a.wgsl", "main", { WG_SIZE: WG, BITS: w.bits === 8 ? 8 : 4, TM });
  batch.dispatch(kq, { x, xq, xs }, params(0, N), kq.grid1d(Math.ceil((M * NB) / WG)));
  for (const wn of windows) {
    batch.dispatch(
      km,
      { xq, xs, qweight: win(w.qweight, wn.byteOffset, wn.byteSize), scales: w.scales, zeros, y },
      params(wn.firstRow, wn.rows),
      [...km.grid1d(Math.ceil(wn.rows / WG)).slice(0, 2), Math.ceil(M / TM)] as [number, number, number],
    );
  }
  return variant;
}

// ---------------------------------------------------------------------------------------------

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
