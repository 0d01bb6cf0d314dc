// ref/quant.ts — CPU references for the quantizers (shaders/quant/rtn.wgsl) and the packed
// layouts of src/quant/formats.ts: quantize (round to nearest, ties to even), pack, unpack,
// dequantize, and the fp16/bf16 casts. Plain float64 TypeScript; slow, exact, used by tests and as
// the definition the GPU must match bit for bit.
//
// Rounding: rint() of the exact real quotient, ties to even (numpy rint, WGSL round). Divisions here
// are float64, whose rounding can never create or hide a tie for these operands (an f32 over an
// f16 or a small integer), so the float64 result is the exact-arithmetic result.

import { TensorError } from "../errors.ts";
import {
  groupsPerRow,
  maxCode,
  valuesPerWord,
  type HostPackedWeight,
  type QuantSpec,
  wordsPerRow,
  zeroWordsPerRow,
} from "../quant/formats.ts";
import { f16BitsToF32, f32ToBf16Bits, f64ToF16Bits, rint } from "../common/half.ts";

// ---------------------------------------------------------------------------------------------
// Scalars: rint and the f16/bf16 codecs are the host's (src/common/half.ts)
// ---------------------------------------------------------------------------------------------

export { bf16BitsToF32, f32ToBf16Bits, f64ToF16Bits, rint } from "../common/half.ts";

/** f32 [n] -> f16 bits [n] (round to nearest even); throws TensorError naming `label` on NaN/Inf or overflow. */
export function castF16Ref(w: Float32Array, label: string): Uint16Array {
  checkFinite(w, label);
  const out = new Uint16Array(w.length);
  for (let i = 0; i < w.length; i++) {
    out[i] = f64ToF16Bits(w[i]);
    if ((out[i] & 0x7c00) === 0x7c00) throw new TensorError(label, `element ${i} = ${w[i]} overflows f16 (max 65504)`, "keep this tensor in f32 or bf16");
  }
  return out;
}

/** f32 [n] -> bf16 bits [n] (round to nearest even); throws TensorError naming `label` on NaN/Inf. */
export function castBf16Ref(w: Float32Array, label: string): Uint16Array {
  checkFinite(w, label);
  const out = new Uint16Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = f32ToBf16Bits(w[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Quantize / pack / unpack / dequantize
// ---------------------------------------------------------------------------------------------

/** Quantization codes before packing. */
export interface QuantCodes {
  spec: QuantSpec;
  /** [N][K]: int4 the stored nibble 0..15 (sym: level + 8); int8 the level −127..127. */
  codes: Int32Array;
  /** [N][ng] f16 bits of the scales. */
  scales: Uint16Array;
  /** [N][ng] zero points 0..15 (asymmetric int4), null otherwise. */
  zeros: Uint8Array | null;
}

const F16_1EM5 = f64ToF16Bits(Math.fround(1e-5)); // the asymmetric scale floor, 0x00a8

/** W (N, K) f32 -> codes, f16 scales and zeros by the rules of src/quant/formats.ts. NaN/Inf -> TensorError. */
export function quantizeRef(w: Float32Array, spec: QuantSpec, label = "weight"): QuantCodes {
  const { N, K } = spec;
  if (w.length !== N * K) throw new TensorError(label, `has ${w.length} values, [${N}, ${K}] needs ${N * K}`);
  checkFinite(w, label, K);
  const ng = groupsPerRow(spec);
  const G = spec.bits === 8 ? K : spec.G;
  const codes = new Int32Array(N * K);
  const scales = new Uint16Array(N * ng);
  const zeros = spec.bits !== 8 && !spec.sym ? new Uint8Array(N * ng) : null;
  const maxq = spec.bits === 8 ? 127 : maxCode(spec.bits, spec.sym);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < ng; g++) {
      const k0 = g * G;
      const k1 = Math.min(k0 + G, K);
      let mn = Infinity;
      let mx = -Infinity;
      for (let k = k0; k < k1; k++) {
        const v = w[n * K + k];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      const amax = Math.max(Math.abs(mn), Math.abs(mx));
      let sBits: number;
      if (zeros) {
        // AutoAWQ: s = max((max − min)/15, 1e-5) with max − min an f32 subtraction.
        sBits = Math.max(f64ToF16Bits(Math.fround(mx - mn) / maxq), F16_1EM5);
      } else {
        sBits = f64ToF16Bits(amax / maxq);
      }
      if (sBits >= 0x7c00) throw new TensorError(label, `row ${n} group ${g}: scale ${amax} overflows f16`, "values this large are not weights; check the checkpoint");
      const s = f16BitsToF32(sBits);
      scales[n * ng + g] = sBits;
      const z = zeros ? clamp(rint(-mn / s), 0, maxq) : 0;
      if (zeros) zeros[n * ng + g] = z;
      for (let k = k0; k < k1; k++) {
        const v = w[n * K + k];
        let q: number;
        if (zeros) q = clamp(rint(v / s) + z, 0, maxq);
        else if (spec.bits !== 8) q = s === 0 ? 8 : clamp(rint(v / s), -maxq - 1, maxq) + 8;
        else q = s === 0 ? 0 : clamp(rint(v / s), -127, 127);
        codes[n * K + k] = q;
      }
    }
  }
  return { spec, codes, scales, zeros };
}

/** Codes -> the canonical packed words (src/quant/formats.ts). */
export function packRef(c: QuantCodes): HostPackedWeight {
  const { spec } = c;
  const { N, K } = spec;
  const W = wordsPerRow(spec);
  const ng = groupsPerRow(spec);
  const qweight = new Uint32Array(N * W);
  const per = valuesPerWord(spec.bits);
  const bits = 32 / per; // storage bits: int3 is stored in int4 nibbles
  const mask = (1 << bits) - 1;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const v = c.codes[n * K + k] & mask;
      qweight[n * W + Math.floor(k / per)] |= v << (bits * (k % per));
    }
  }
  const scales = new Uint32Array(Math.ceil((N * ng) / 2));
  for (let i = 0; i < N * ng; i++) scales[i >> 1] |= c.scales[i] << (16 * (i & 1));
  let zeros: Uint32Array | null = null;
  if (c.zeros) {
    const ZW = zeroWordsPerRow(spec);
    zeros = new Uint32Array(N * ZW);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < ng; g++) zeros[n * ZW + (g >> 3)] |= c.zeros[n * ng + g] << (4 * (g & 7));
    }
  }
  for (const a of [qweight, scales, zeros]) if (a) for (let i = 0; i < a.length; i++) a[i] >>>= 0;
  return { ...spec, qweight, scales, zeros };
}

/** Packed words -> codes (the inverse of packRef; pad bits are ignored). */
export function unpackRef(p: HostPackedWeight): QuantCodes {
  const spec: QuantSpec = { bits: p.bits, N: p.N, K: p.K, G: p.G, sym: p.sym };
  const { N, K } = spec;
  const W = wordsPerRow(spec);
  const ng = groupsPerRow(spec);
  const per = valuesPerWord(p.bits);
  const codes = new Int32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const word = p.qweight[n * W + Math.floor(k / per)];
      const sh = (32 / per) * (k % per);
      codes[n * K + k] = p.bits !== 8 ? (word >>> sh) & 15 : ((word << (24 - sh)) >> 24);
    }
  }
  const scales = new Uint16Array(N * ng);
  for (let i = 0; i < N * ng; i++) scales[i] = (p.scales[i >> 1] >>> (16 * (i & 1))) & 0xffff;
  let zeros: Uint8Array | null = null;
  if (p.zeros) {
    const ZW = zeroWordsPerRow(spec);
    zeros = new Uint8Array(N * ng);
    for (let n = 0; n < N; n++) for (let g = 0; g < ng; g++) zeros[n * ng + g] = (p.zeros[n * ZW + (g >> 3)] >>> (4 * (g & 7))) & 15;
  }
  return { spec, codes, scales, zeros };
}

/** Packed -> W' (N, K) f32, the exact dequantized weights (q − z)·s, computed in float64 then f32. */
export function dequantizeRef(p: HostPackedWeight): Float32Array {
  const c = unpackRef(p);
  const { N, K } = c.spec;
  const ng = groupsPerRow(c.spec);
  const G = p.bits === 8 ? K : p.G;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = Math.floor(k / G);
      const s = f16BitsToF32(c.scales[n * ng + g]);
      const z = p.bits === 8 ? 0 : c.zeros ? c.zeros[n * ng + g] : 8;
      out[n * K + k] = (c.codes[n * K + k] - z) * s;
    }
  }
  return out;
}

/** quantize -> pack in one call (what the GPU quantizer produces). */
export function quantizePackRef(w: Float32Array, spec: QuantSpec, label = "weight"): HostPackedWeight {
  return packRef(quantizeRef(w, spec, label));
}

// ---------------------------------------------------------------------------------------------

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** Throws TensorError naming the first NaN/Inf (as [row, col] when `cols` is given). */
function checkFinite(w: Float32Array, label: string, cols?: number): void {
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i])) {
      const at = cols ? `[${Math.floor(i / cols)}, ${i % cols}]` : `${i}`;
      throw new TensorError(label, `element ${at} is ${w[i]}; weights must be finite`, "the checkpoint is corrupt or was saved after a diverged step; re-export it");
    }
  }
}
