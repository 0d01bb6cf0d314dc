// quant/rtn.ts — round-to-nearest quantization on the GPU (shaders/quant/rtn.wgsl) into the canonical
// packed layout of src/quant/formats.ts. (fp16 casts on the GPU: src/nn/convert.ts.)
// Input weights stay on the GPU; the only readback is a 16-byte flag buffer that reports NaN/Inf
// (and scales that overflow f16) as a TensorError naming the weight.
//
//   const q = await quantizeRtn(ctx, w, { bits: 4, groupSize: 32, sym: false });  // w: f32 [N, K]
//   ... qmatmul(ctx, batch, x, q, y) ...
//   destroyPacked(q);   // quant/packed.ts

import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { groupsPerRow, maxCode, quantSpec, type QuantBits, specName, wordsPerRow } from "./formats.ts";
import { destroyPacked, emptyPacked, type GpuPackedWeight } from "./packed.ts";

export interface RtnOptions {
  bits: QuantBits;
  /** int4 group size along K (32, 64, 128 …; a multiple of 8). Ignored for int8. */
  groupSize?: number;
  /** int4 symmetric (levels −8..7); default false (asymmetric with zero points). int8 is always symmetric. */
  sym?: boolean;
}

const WG = 64;
const FLAGS_INIT = new Uint32Array([0, 0xffffffff, 0, 0xffffffff]);

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/**
 * W (N, K) f32 on the GPU -> a new packed weight on the GPU (formats.ts layout), bit-exact with
 * src/ref/quant.ts quantizePackRef. Submits its own batch and waits for the flag readback.
 * Throws TensorError naming `w.label` (row and column) when W holds NaN/Inf or a scale overflows f16.
 */
export async function quantizeRtn(ctx: GpuContext, w: GpuTensor, opts: RtnOptions): Promise<GpuPackedWeight> {
  if (w.dtype !== "f32" || w.shape.length !== 2) throw new TensorError(w.label, `quantizeRtn needs f32 [N, K], got ${w.dtype} [${w.shape}]`);
  const [N, K] = w.shape;
  const spec = quantSpec(opts.bits, N, K, opts.groupSize, opts.sym ?? false);
  const out = emptyPacked(ctx.gpu, spec, w.label);
  const flags = GpuTensor.fromHost(ctx.gpu, FLAGS_INIT, [4], "u32", `${w.label}.quant_flags`);
  try {
    const batch = new CommandBatch(ctx.gpu, `quantize ${w.label}`);
    await recordQuantizeRtn(ctx, batch, w, out, flags);
    batch.submit();
    await checkFlags(flags, w, `quantize to ${specName(spec)}`);
  } catch (e) {
    destroyPacked(out);
    throw e;
  } finally {
    flags.destroy();
  }
  return out;
}

/**
 * Records the quantizer into `batch`: w f32 [N, K] -> out (zero-filled, from emptyPacked), flags u32 [4]
 * initialised to (0, 0xffffffff, 0, 0xffffffff). Check the flags with checkFlags() after submitting.
 * W larger than one storage binding is quantized in row windows.
 */
export async function recordQuantizeRtn(ctx: GpuContext, batch: CommandBatch, w: GpuTensor, out: GpuPackedWeight, flags: GpuTensor): Promise<void> {
  const { N, K } = out;
  if (w.dtype !== "f32" || w.shape[0] !== N || w.shape[1] !== K) throw new TensorError(w.label, `expected f32 [${N}, ${K}], got ${w.dtype} [${w.shape}]`);
  const int4 = out.bits !== 8; // int4 and int3 share the int4 layout and kernel
  const k = await ctx.kernels.get("quant/rtn.wgsl", int4 ? "quantize_int4" : "quantize_int8", int4 ? { WG_SIZE: WG, SYM: out.sym } : { WG_SIZE: WG });
  const KW = wordsPerRow(out);
  const ng = groupsPerRow(out);
  const align = ctx.gpu.limits.minStorageBufferOffsetAlignment;
  const qStep = align / gcd(align, KW * 4); // rows per aligned qweight window start
  let dummy: GpuTensor | null = null;
  if (int4 && !out.zeros) {
    dummy = GpuTensor.empty(ctx.gpu, [1], "u32", `${w.label}.zeros_unused`);
    batch.own(dummy);
  }
  for (const win of w.rowWindows({ rowBytes: K * 4, rowMultiple: qStep })) {
    const bindings: Record<string, GpuTensor | { tensor: GpuTensor; byteOffset: number; byteSize: number }> = {
      w: { tensor: w, byteOffset: win.byteOffset, byteSize: win.byteSize },
      qweight: { tensor: out.qweight, byteOffset: win.firstRow * KW * 4, byteSize: win.rows * KW * 4 },
      scales: out.scales,
      flags,
    };
    if (int4) bindings.zeros = out.zeros ?? dummy!;
    const threads = int4 ? win.rows * ng : win.rows;
    batch.dispatch(
      k,
      bindings,
      { rows: win.rows, K, G: int4 ? out.G : K, ng, n0: win.firstRow, KW, maxq: int4 ? maxCode(out.bits, out.sym) : 127 },
      k.grid1d(Math.ceil(threads / WG)),
    );
  }
}

/**
 * Reads the 4 flag words after the batch was submitted; throws TensorError naming `w`, the first bad
 * row and its first non-finite column. `action` completes "cannot …", e.g. "quantize to int4-asym-g32".
 */
export async function checkFlags(flags: GpuTensor, w: GpuTensor, action: string): Promise<void> {
  const f = (await flags.toHost()) as Uint32Array;
  if (f[0]) {
    const row = f[1];
    const K = w.shape[w.shape.length - 1];
    const data = (await w.view(`${w.label}[${row}]`, [K], row * K * 4).toHost()) as Float32Array;
    const col = data.findIndex((v) => !Number.isFinite(v));
    throw new TensorError(
      w.label,
      `holds NaN/Inf (first at [${row}, ${col}] = ${data[col]}; ${f[0]} bad group(s)); cannot ${action}`,
      "the checkpoint is corrupt or was saved after a diverged step; re-export it",
    );
  }
  if (f[2]) {
    throw new TensorError(w.label, `${f[2]} group(s) overflow f16 (first in row ${f[3]}); cannot ${action}`, "values above 65504 (x7 / x15 / x127 for scales) are not weights; check the checkpoint");
  }
}

// ---------------------------------------------------------------------------------------------

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
