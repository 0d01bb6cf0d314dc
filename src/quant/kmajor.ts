// quant/kmajor.ts — GEMVs (and, when forced, GEMMs) for CPU-like adapters (lavapipe, SwiftShader) on a
// K-major copy of a packed int4/int8 weight (shaders/quant/kmajor.wgsl, kmajor_dp4a.wgsl). Not a storage format: the canonical
// layout of src/quant/formats.ts stays what is saved; this module repacks it on the GPU once per
// weight, caches the copy, and frees it with the weight.
//
//   variant       shader                  x                                   error vs float64
//   kmajor        quant/kmajor.wgsl       f32, dequantized in f32             ~1e-7 (summation order)
//   kmajor_dp4a   quant/kmajor_dp4a.wgsl  int8 per 32-block (dot4I8Packed)    ~4e-3 (x rounding)
// Both need `subgroups` (subgroups of >= 8): x is loaded one value per lane and shared with
// subgroupShuffle, because on llvmpipe a load of the same address by every invocation costs about as
// much as dequantizing a word. Measured on lavapipe (4096x4096 int4 g128, 2 cores): M = 1 ~2x faster
// than the canonical-layout `tiled` kernel, M = 4 / 8 ~5x.
//
// Layout of the copy (units: u32 words; PER = 8 int4 or 4 int8 values per word; columns in blocks of
// KMAJOR_BLOCK = 32, NB32 = ceil(N / 32) blocks):
//   qk  u32 [NB32, KWP, 32]  qk[n / 32, kw, n % 32] = canonical qweight[n, kw]; KWP = ceil(K / 32) · 32 / PER
//                            (words past KW and columns past N are 0). A vec4 holds word kw of 4 adjacent
//                            columns; the 8 vec4 of a block are one llvmpipe SIMD batch's 128-byte load and
//                            successive kw follow each other, so each batch streams contiguous memory.
//   sz  u32 [NB32, ng, 32]   f16 scale (bits 0..15) | f16 zero point (bits 16..31: z, 8 for sym, 0 for int8)
// Both must fit one storage binding (128 MiB on lavapipe: up to ~32k x 8k int4); larger weights fall
// back to the canonical-layout kernels (kmajorUnavailable says why).
//
// Lifetime: prepareKMajor(ctx, w) (or the first kmajorMatmul) repacks in its own submit, so the
// canonical tensors must already hold their data on the queue (uploaded, or their batch submitted).
// The copy lives in a WeakMap keyed by the GpuPackedWeight and is destroyed by releaseKMajor(w) or
// when w.qweight is destroyed (destroyPacked), so gpu.stats.liveBytes returns to its baseline.

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { Gpu } from "../gpu/device.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { groupsPerRow, type QuantSpec, wordsPerRow } from "./formats.ts";
import type { GpuPackedWeight } from "./packed.ts";

export type KMajorVariant = "kmajor" | "kmajor_dp4a";
export const KMAJOR_VARIANTS: readonly KMajorVariant[] = ["kmajor", "kmajor_dp4a"];

/**
 * Rows of x per invocation and dispatch slice: M <= 4 is one slice; larger M (qmatmul routes the
 * K-major kernels automatically for M <= 8; any M can be forced) takes ceil(M / 4) slices in one
 * dispatch, each dequantizing the weights again (on lavapipe still far cheaper than the tiled GEMM).
 */
export function kmajorRowsPerSlice(M: number): 1 | 2 | 4 {
  return M === 1 ? 1 : M === 2 ? 2 : 4;
}

/** Columns per block of the K-major layout (CB = 8 column quads in the shaders). */
export const KMAJOR_BLOCK = 32;

/** The repacked copy of one packed weight W [N, K] (see the layout above). */
export interface KMajorWeight {
  readonly bits: 4 | 8;
  readonly N: number;
  readonly K: number;
  /** u32 [NB32, KWP, 32] */
  readonly qk: GpuTensor;
  /** u32 [NB32, ng, 32] */
  readonly sz: GpuTensor;
  /** Uniform values shared by every kmajor kernel (Params of kmajor.wgsl; N4P = 8 · NB32 column quads). */
  readonly params: { N: number; K: number; KW: number; KWP: number; N4P: number; ng: number; GW: number; mode: number };
}

const WG = 64;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Byte sizes of the repacked copy of a weight of `spec`: qk, sz and their sum. */
export function kmajorBytes(spec: QuantSpec): { qk: number; sz: number; total: number } {
  const p = layoutParams(spec);
  const qk = p.KWP * 4 * p.N4P * 4;
  const sz = p.ng * 4 * p.N4P * 4;
  return { qk, sz, total: qk + sz };
}

/** Why `variant` cannot run x (M, ·) of dtype `xType` against a weight of `w` on this device, or null. */
export function kmajorUnavailable(gpu: Gpu, variant: KMajorVariant, w: QuantSpec, M: number, xType: "f32" | "f16"): string | null {
  if (xType !== "f32") return `${variant} takes f32 activations`;
  if (Math.ceil(M / 4) > gpu.limits.maxComputeWorkgroupsPerDimension) return `${variant} takes at most ${4 * gpu.limits.maxComputeWorkgroupsPerDimension} rows of x (M = ${M})`;
  const lim = gpu.limits.maxStorageBufferBindingSize;
  const b = kmajorBytes(w);
  const canonical = w.N * wordsPerRow(w) * 4;
  if (Math.max(b.qk, canonical) > lim) return `${variant} needs the weight in one storage binding (${Math.max(b.qk, canonical)} bytes > ${lim})`;
  if (!gpu.has("subgroups")) return "the device lacks the subgroups feature";
  const sg = gpu.adapterInfo.subgroupMinSize;
  if (sg < 8) return `${variant} needs subgroups of >= 8 invocations (this adapter reports ${sg || "no"} minimum size)`;
  if (variant === "kmajor") return null;
  if (!gpu.wgslFeatures.has("packed_4x8_integer_dot_product")) return "WGSL lacks packed_4x8_integer_dot_product";
  if (w.bits !== 8 && w.G % 32 !== 0) return `kmajor_dp4a needs a group size that is a multiple of 32 (G = ${w.G})`;
  return null;
}

/**
 * The K-major copy of `w`, made on the GPU (one submit) the first time and cached per weight.
 * Throws TensorError when w was destroyed.
 */
export async function prepareKMajor(ctx: GpuContext, w: GpuPackedWeight): Promise<KMajorWeight> {
  w.qweight.assertAlive();
  const hit = cache.get(w);
  if (hit) return hit;
  let pending = building.get(w);
  if (!pending) {
    pending = repack(ctx, w);
    building.set(w, pending);
    pending.finally(() => building.delete(w)).catch(() => {});
  }
  return pending;
}

/** Destroys the cached K-major copy of `w`, if any (idempotent). */
export function releaseKMajor(w: GpuPackedWeight): void {
  const k = cache.get(w);
  if (!k) return;
  cache.delete(w);
  k.qk.destroy();
  k.sz.destroy();
}

/** True when `w` has a live K-major copy. */
export function hasKMajor(w: GpuPackedWeight): boolean {
  return cache.has(w);
}

/**
 * Records y = x · dequant(w)ᵀ with a K-major kernel into `batch`. Shapes: x [M, K] f32 (any M; see kmajorRowsPerSlice),
 * w packed [N, K], y [M, N] f32. Repacks w first when it has no copy yet. The caller checks shapes
 * and kmajorUnavailable (src/quant/matmul.ts qmatmul does both).
 */
export async function kmajorMatmul(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, w: GpuPackedWeight, y: GpuTensor, variant: KMajorVariant): Promise<void> {
  const [M, K] = x.shape;
  if (K !== w.K || y.shape[0] !== M || y.shape[1] !== w.N) throw new TensorError(y.label, `kmajor: x [${x.shape}] · W [${w.N}, ${w.K}]ᵀ does not give y [${y.shape}]`);
  if (M === 0) return;
  const km = await prepareKMajor(ctx, w);
  const TM = kmajorRowsPerSlice(M);
  const BITS = km.bits;
  const params = { M, ...km.params };
  if (variant === "kmajor") {
    const k = await ctx.kernels.get("quant/kmajor.wgsl", "main", { WG_SIZE: WG, BITS, TM });
    batch.dispatch(k, { x, qkv: km.qk, szv: km.sz, y }, params, [...k.grid1d(Math.ceil(km.params.N4P / WG)).slice(0, 2), Math.ceil(M / TM)] as [number, number, number]);
    return;
  }
  // kmajor_dp4a: x -> int8 blocks of 32 (quantize_x of the row-major dp4a shader: same xq / xs layout).
  const NB = Math.ceil(K / 32);
  const xq = GpuTensor.empty(ctx.gpu, [M, NB * 8], "u32", `${x.label}.int8`);
  const xs = GpuTensor.empty(ctx.gpu, [M, NB * 2], "f32", `${x.label}.int8_scales`);
  batch.own(xq, xs);
  const kq = await ctx.kernels.get("quant/matmul_q_dp4a.wgsl", "quantize_x", { WG_SIZE: WG, BITS });
  const kd = await ctx.kernels.get("quant/kmajor_dp4a.wgsl", "main", { WG_SIZE: WG, BITS, TM });
  batch.dispatch(kq, { x, xq, xs }, { M, N: w.N, K, G: 32, ng: 1, n0: 0, nw: w.N, sym: 0 }, kq.grid1d(Math.ceil((M * NB) / WG)));
  batch.dispatch(kd, { xq, xs, qkv: km.qk, szv: km.sz, y }, params, [...kd.grid1d(Math.ceil(km.params.N4P / WG)).slice(0, 2), Math.ceil(M / TM)] as [number, number, number]);
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

const cache = new WeakMap<GpuPackedWeight, KMajorWeight>();
const building = new WeakMap<GpuPackedWeight, Promise<KMajorWeight>>();
/** qweight tensors whose destroy() also releases the copies of these weights. */
const hooked = new WeakMap<GpuTensor, Set<GpuPackedWeight>>();

function layoutParams(s: QuantSpec): KMajorWeight["params"] {
  const int8 = s.bits === 8;
  const PER = int8 ? 4 : 8;
  const KW = wordsPerRow(s);
  const ng = groupsPerRow(s);
  return {
    N: s.N,
    K: s.K,
    KW,
    KWP: Math.ceil(s.K / 32) * (32 / PER),
    N4P: (Math.ceil(s.N / KMAJOR_BLOCK) * KMAJOR_BLOCK) / 4,
    ng,
    GW: int8 ? KW : s.G / PER,
    mode: int8 ? 0 : s.sym ? 2 : 1,
  };
}

/** qweight [N, KW], scales, zeros -> a new KMajorWeight, in one submit; registers it in the cache. */
async function repack(ctx: GpuContext, w: GpuPackedWeight): Promise<KMajorWeight> {
  const { gpu } = ctx;
  const p = layoutParams(w);
  const BITS = w.bits === 8 ? 8 : 4;
  const why = kmajorUnavailable(gpu, "kmajor", w, 1, "f32");
  if (why) throw new UsageError(`cannot repack ${w.label} K-major: ${why}`, "use the canonical-layout qmatmul variants (tiled)");
  const kq = await ctx.kernels.get("quant/kmajor.wgsl", "repack_q", { WG_SIZE: WG, BITS });
  const ks = await ctx.kernels.get("quant/kmajor.wgsl", "repack_s", { WG_SIZE: WG, BITS });
  const NB32 = (4 * p.N4P) / KMAJOR_BLOCK;
  const qk = GpuTensor.empty(gpu, [NB32, p.KWP, KMAJOR_BLOCK], "u32", `${w.label}.kmajor.qk`);
  const sz = GpuTensor.empty(gpu, [NB32, p.ng, KMAJOR_BLOCK], "u32", `${w.label}.kmajor.sz`);
  try {
    const batch = new CommandBatch(gpu, `kmajor repack ${w.label}`);
    const params = { M: 1, ...p };
    batch.dispatch(kq, { qweight: w.qweight, qk }, params, kq.grid1d(Math.ceil((p.KWP * 4 * p.N4P) / WG)));
    batch.dispatch(ks, { scales: w.scales, zeros: w.zeros ?? w.scales, sz }, params, ks.grid1d(Math.ceil((p.ng * 4 * p.N4P) / WG)));
    batch.submit(); // queue order: every later submit sees the copy; no wait needed
  } catch (e) {
    qk.destroy();
    sz.destroy();
    throw e;
  }
  const km: KMajorWeight = { bits: BITS, N: w.N, K: w.K, qk, sz, params: p };
  if (w.qweight.destroyed) {
    qk.destroy();
    sz.destroy();
    throw new TensorError(w.label, "was destroyed while its K-major copy was being made");
  }
  cache.set(w, km);
  hookDestroy(w);
  return km;
}

/**
 * Makes destroying w.qweight (what destroyPacked does) release the K-major copy too. The copy is
 * derived data owned by this module; the wrapper only adds the release after the tensor's own destroy().
 */
function hookDestroy(w: GpuPackedWeight): void {
  const t = w.qweight;
  let weights = hooked.get(t);
  if (weights) {
    weights.add(w);
    return;
  }
  weights = new Set([w]);
  hooked.set(t, weights);
  const own = t.destroy.bind(t);
  t.destroy = () => {
    own();
    for (const v of weights) releaseKMajor(v);
    weights.clear();
  };
}
