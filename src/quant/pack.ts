// quant/pack.ts — round-to-nearest quantization, packing and unpacking on the host, into and out of
// the canonical layout of src/quant/formats.ts, by the rules of shaders/quant/rtn.wgsl: what the GPU
// quantizer (quant/rtn.ts) produces, bit for bit, for code that works on host arrays — QAT's initial
// step sizes and its export, and the check of a benchmark's products.
//
//   const c = quantizeCodes(w, quantSpec(4, N, K, 32, false), "q_proj");  // codes, f16 scales, zeros
//   const p = packCodes(c);                                                // HostPackedWeight
//   const w2 = dequantizePacked(p);                                        // (q − z) · s as f32
//
// Rounding is rint (ties to even) of the exact quotient: float64 divides an f32 by an f16 or a small
// integer without creating or hiding a tie, so no fix-up is needed here (the GPU needs one).

import { f16BitsToF32, f64ToF16Bits, rint } from "../common/half.ts";
import { TensorError } from "../errors.ts";
import { groupsPerRow, type HostPackedWeight, maxCode, type QuantSpec, valuesPerWord, wordsPerRow, zeroWordsPerRow } from "./formats.ts";

/** A quantized weight before packing (or after unpacking). */
export interface QuantCodes {
  spec: QuantSpec;
  /** [N][K]: int4/int3 the stored nibble 0..15 (sym: level + 8); int8 the level −127..127. */
  codes: Int32Array;
  /** [N][ng] f16 bits of the scales. */
  scales: Uint16Array;
  /** [N][ng] zero points (asymmetric int4/int3), null otherwise. */
  zeros: Uint8Array | null;
}

/** f16 bits of f32(1e-5), the asymmetric scale floor (a subnormal, 168 · 2^-24). */
const ASYM_SCALE_FLOOR = 0x00a8;
/** The implicit zero of the symmetric int4/int3 layout: level l is stored as l + 8. */
const SYM_ZERO = 8;

/**
 * W (N, K) f32 -> codes, f16 scales and zero points. Throws TensorError naming `label` when W holds
 * NaN/Inf (first bad element as [row, col]) or a scale overflows f16.
 */
export function quantizeCodes(w: Float32Array, spec: QuantSpec, label = "weight"): QuantCodes {
  const { N, K, bits, sym } = spec;
  if (w.length !== N * K) throw new TensorError(label, `has ${w.length} values, [${N}, ${K}] needs ${N * K}`);
  const bad = w.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new TensorError(label, `element [${Math.floor(bad / K)}, ${bad % K}] is ${w[bad]}; weights must be finite`,
      "the checkpoint is corrupt or was saved after a diverged step; re-export it");
  }
  const int8 = bits === 8;
  const asym = !int8 && !sym;
  const ng = groupsPerRow(spec);
  const G = int8 ? K : spec.G;
  const maxq = int8 ? 127 : maxCode(bits, sym);
  const lo = asym ? 0 : int8 ? -127 : -maxq - 1; // lowest code (asym) or level (sym, int8)
  const codes = new Int32Array(N * K);
  const scales = new Uint16Array(N * ng);
  const zeros = asym ? new Uint8Array(N * ng) : null;
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let g = 0; g < ng; g++) {
      const k0 = row + g * G;
      const k1 = row + Math.min((g + 1) * G, K);
      let mn = Infinity;
      let mx = -Infinity;
      for (let k = k0; k < k1; k++) {
        if (w[k] < mn) mn = w[k];
        if (w[k] > mx) mx = w[k];
      }
      // asym (AutoAWQ): s = f16(max((max − min) / maxq, 1e-5)), max − min an f32 subtraction;
      // sym and int8: s = f16(max|w| / maxq). f16 bits of non-negative values order like the values.
      const sBits = asym
        ? Math.max(f64ToF16Bits(Math.fround(mx - mn) / maxq), ASYM_SCALE_FLOOR)
        : f64ToF16Bits(Math.max(Math.abs(mn), Math.abs(mx)) / maxq);
      if (sBits >= 0x7c00) {
        throw new TensorError(label, `row ${n} group ${g}: scale ${Math.max(Math.abs(mn), Math.abs(mx))} overflows f16`,
          "values this large are not weights; check the checkpoint");
      }
      const s = f16BitsToF32(sBits);
      scales[n * ng + g] = sBits;
      if (asym) {
        const z = clamp(rint(-mn / s), 0, maxq);
        zeros![n * ng + g] = z;
        for (let k = k0; k < k1; k++) codes[k] = clamp(rint(w[k] / s) + z, 0, maxq);
      } else {
        const offset = int8 ? 0 : SYM_ZERO;
        for (let k = k0; k < k1; k++) codes[k] = (s === 0 ? 0 : clamp(rint(w[k] / s), lo, maxq)) + offset;
      }
    }
  }
  return { spec, codes, scales, zeros };
}

/** Codes -> the canonical packed words: qweight, scales two per word, zeros eight per word (asym). */
export function packCodes(c: QuantCodes): HostPackedWeight {
  const { spec } = c;
  const { N, K } = spec;
  const per = valuesPerWord(spec.bits);
  const width = 32 / per; // int3 is stored in int4 nibbles
  const mask = 2 ** width - 1;
  const KW = wordsPerRow(spec);
  const qweight = new Uint32Array(N * KW);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < KW; j++) {
      let word = 0;
      const k0 = j * per;
      for (let t = 0; t < per && k0 + t < K; t++) word |= (c.codes[n * K + k0 + t] & mask) << (width * t);
      qweight[n * KW + j] = word; // stored as u32
    }
  }
  const ng = groupsPerRow(spec);
  const scales = new Uint32Array(Math.ceil((N * ng) / 2));
  for (let i = 0; i < N * ng; i += 2) scales[i >> 1] = c.scales[i] | ((i + 1 < N * ng ? c.scales[i + 1] : 0) << 16);
  let zeros: Uint32Array | null = null;
  if (c.zeros) {
    const ZW = zeroWordsPerRow(spec);
    zeros = new Uint32Array(N * ZW);
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < ZW; j++) {
        let word = 0;
        for (let t = 0; t < 8 && j * 8 + t < ng; t++) word |= (c.zeros[n * ng + j * 8 + t] & 15) << (4 * t);
        zeros[n * ZW + j] = word;
      }
    }
  }
  return { ...spec, qweight, scales, zeros };
}

/** Packed words -> codes (the inverse of packCodes; pad bits are ignored). */
export function unpackCodes(p: HostPackedWeight): QuantCodes {
  const spec: QuantSpec = { bits: p.bits, N: p.N, K: p.K, G: p.G, sym: p.sym };
  const { N, K } = spec;
  const per = valuesPerWord(spec.bits);
  const width = 32 / per;
  const KW = wordsPerRow(spec);
  const codes = new Int32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const word = p.qweight[n * KW + Math.floor(k / per)];
      const shift = width * (k % per);
      // int8: sign-extend the byte; int4/int3: the unsigned nibble
      codes[n * K + k] = spec.bits === 8 ? (word << (24 - shift)) >> 24 : (word >>> shift) & 15;
    }
  }
  const ng = groupsPerRow(spec);
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

/** Packed -> W' (N, K) f32, the dequantized weights (q − z) · s, computed in float64 then rounded to f32. */
export function dequantizePacked(p: HostPackedWeight): Float32Array {
  const { spec, codes, scales, zeros } = unpackCodes(p);
  const { N, K } = spec;
  const ng = groupsPerRow(spec);
  const G = spec.bits === 8 ? K : spec.G;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const i = n * ng + Math.floor(k / G);
      const z = spec.bits === 8 ? 0 : zeros ? zeros[i] : SYM_ZERO;
      out[n * K + k] = (codes[n * K + k] - z) * f16BitsToF32(scales[i]);
    }
  }
  return out;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
