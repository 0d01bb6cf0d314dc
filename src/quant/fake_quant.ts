// quant/fake_quant.ts — fake quantization on the GPU for AWQ's searches (shaders/quant/fake_quant.wgsl
// and clip.wgsl, sharing rtn.wgsl's exact rounding): W' = dequant(quant(clip(W·diag(s))))·diag(1/s)
// in f32, with the same scale/zero/rounding rules as the packed quantizer, so α = 0 without a clip
// reproduces RTN bit for bit. Also the clip search (per row and group, shrink max|w| and score the
// group's partial dot products on sampled tokens) and the clip itself.

import { TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";

const FAKE_QUANT = "quant/fake_quant.wgsl";
const CLIP = "quant/clip.wgsl";
const WG = 64;

/** bits 2..8; G the group size along K (bits 8: any G, usually K). */
export interface FakeQuantSpec {
  bits: number;
  G: number;
  sym: boolean;
}

/** Number of AWQ clip shrink steps: max|w| · (1 − i/20), i < 10 (AutoAWQ: n_grid 20, max_shrink 0.5). */
export const CLIP_STEPS = 10;

function check(spec: FakeQuantSpec, w: GpuTensor): { N: number; K: number; ng: number } {
  if (!Number.isInteger(spec.bits) || spec.bits < 2 || spec.bits > 8) throw new UsageError(`bits must be 2..8 (got ${spec.bits})`);
  if (w.dtype !== "f32" || w.shape.length !== 2) throw new TensorError(w.label, `fake quantization needs f32 [N, K], got ${w.dtype} [${w.shape}]`);
  const [N, K] = w.shape;
  if (spec.G > 128 && spec.G < K) throw new UsageError(`group size ${spec.G} > 128 is not supported by the fake quantizer`);
  return { N, K, ng: Math.ceil(K / Math.min(spec.G, K)) };
}

function params(spec: FakeQuantSpec, N: number, K: number, extra: Record<string, number> = {}) {
  const G = Math.min(spec.G, K);
  return { N, K, G, ng: Math.ceil(K / G), maxq: spec.sym ? 2 ** (spec.bits - 1) - 1 : 2 ** spec.bits - 1, use_scale: 0, use_clip: 0, T: 0, transposed: 0, x_vec4: 0, ...extra };
}

/** The colScale words fakeQuantize() reads for scales s (K): s, then f32(1 / s) (2K). */
export function colScaleWords(s: Float32Array): Float32Array {
  const out = new Float32Array(2 * s.length);
  out.set(s);
  for (let k = 0; k < s.length; k++) out[s.length + k] = 1 / s[k];
  return out;
}

/**
 * Records out (N, K) = fake-quantized w, optionally with column scales (colScale: colScaleWords(s),
 * 2K) and per-group clip (N, ng); with `transposed` out is written transposed (K, N), ready for matmulWt().
 */
export async function fakeQuantize(
  ctx: GpuContext, batch: CommandBatch, w: GpuTensor, out: GpuTensor, spec: FakeQuantSpec,
  opts: { colScale?: GpuTensor; clipMax?: GpuTensor; transposed?: boolean } = {},
): Promise<void> {
  const { N, K, ng } = check(spec, w);
  if (out.numel !== N * K) throw new TensorError(out.label, `fake quantization output must be [${N}, ${K}]`);
  if (opts.colScale && opts.colScale.numel !== 2 * K) throw new TensorError(opts.colScale.label, `column scales must be colScaleWords(s): 2 × ${K} values, got ${opts.colScale.numel}`);
  const k = await ctx.kernels.get(FAKE_QUANT, "fake_quant", { WG_SIZE: WG, SYM: spec.sym });
  batch.dispatch(
    k,
    { w, fq: out, col_scale: opts.colScale ?? w, clip_max: opts.clipMax ?? w },
    params(spec, N, K, { use_scale: opts.colScale ? 1 : 0, use_clip: opts.clipMax ? 1 : 0, transposed: opts.transposed ? 1 : 0 }),
    k.grid1d(Math.ceil((N * ng) / WG)),
  );
}

/**
 * AWQ's clip search for w (N, K) on sampled inputs x (T, K): per (row, group) the shrink of max|w|
 * (1 − i/20, i < 10) whose fake-quantized group minimises the mean squared error of the group's
 * partial dot products. Returns maxVal (N, ng) on the GPU and the summed errors before (no shrink)
 * and after (best shrink), normalised per (token, row).
 */
export async function clipSearch(ctx: GpuContext, w: GpuTensor, x: GpuTensor, spec: FakeQuantSpec): Promise<{ maxVal: GpuTensor; lossBefore: number; lossAfter: number }> {
  const { N, K, ng } = check(spec, w);
  const T = x.shape[0];
  if (x.shape[1] !== K) throw new TensorError(x.label, `clip search inputs must be [T, ${K}], got [${x.shape}]`);
  const maxVal = GpuTensor.empty(ctx.gpu, [N, ng], "f32", `${w.label}.clip_max`);
  const errs = GpuTensor.empty(ctx.gpu, [N * ng, 2], "f32", `${w.label}.clip_err`);
  try {
    const k = await ctx.kernels.get(CLIP, "clip_search", { WG_SIZE: WG, SYM: spec.sym });
    const b = new CommandBatch(ctx.gpu, `clip ${w.label}`);
    const vec4 = K % 4 === 0 && Math.min(spec.G, K) % 4 === 0 ? 1 : 0;
    b.dispatch(k, { w, x, x4: x, clip_max_out: maxVal, clip_err: errs }, params(spec, N, K, { T, x_vec4: vec4 }), k.grid1d(Math.ceil((N * ng) / WG)));
    b.submit();
    const e = (await errs.toHost()) as Float32Array;
    let before = 0, after = 0;
    for (let i = 0; i < N * ng; i++) {
      before += e[2 * i];
      after += e[2 * i + 1];
    }
    return { maxVal, lossBefore: before / N, lossAfter: after / N };
  } catch (err) {
    maxVal.destroy();
    throw err;
  } finally {
    errs.destroy();
  }
}

/** Records w (N, K) <- clamp(w, −m, m) with m = maxVal[n, group of k]. */
export async function applyClip(ctx: GpuContext, batch: CommandBatch, w: GpuTensor, maxVal: GpuTensor, spec: FakeQuantSpec): Promise<void> {
  const { N, K } = check(spec, w);
  const k = await ctx.kernels.get(CLIP, "clip_apply", { WG_SIZE: WG });
  batch.dispatch(k, { w_inout: w, clip_max: maxVal }, params(spec, N, K), k.grid1d(Math.ceil((N * K) / WG)));
}
