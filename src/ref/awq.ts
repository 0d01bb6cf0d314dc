// ref/awq.ts — CPU references for AWQ's GPU kernels (src/quant/fake_quant.ts): fake quantization
// with column scales and clipping, the clip search, and the clip. Same rules as src/ref/quant.ts
// (f16 scales rounded once from the exact quotient, round half to even), any bit width 2..8.

import { f16BitsToF32 } from "./f16.ts";
import { f64ToF16Bits, rint } from "./quant.ts";
import type { FakeQuantSpec } from "../quant/fake_quant.ts";

const F16_1EM5 = f64ToF16Bits(Math.fround(1e-5));

/** One group's values -> fake-quantized values (f32 arithmetic where the GPU uses f32). */
export function fakeQuantGroup(v: Float32Array, spec: FakeQuantSpec): Float32Array {
  let mn = Infinity, mx = -Infinity;
  for (const x of v) {
    mn = Math.min(mn, x);
    mx = Math.max(mx, x);
  }
  const out = new Float32Array(v.length);
  if (spec.sym) {
    const maxq = 2 ** (spec.bits - 1) - 1;
    const s = f16BitsToF32(f64ToF16Bits(Math.max(Math.abs(mn), Math.abs(mx)) / maxq));
    for (let i = 0; i < v.length; i++) out[i] = s === 0 ? 0 : Math.fround(Math.min(Math.max(rint(v[i] / s), -maxq - 1), maxq) * s);
  } else {
    const maxq = 2 ** spec.bits - 1;
    const s = f16BitsToF32(Math.max(f64ToF16Bits(Math.fround(mx - mn) / maxq), F16_1EM5));
    const z = Math.min(Math.max(rint(-mn / s), 0), maxq);
    for (let i = 0; i < v.length; i++) out[i] = Math.fround((Math.min(Math.max(rint(v[i] / s) + z, 0), maxq) - z) * s);
  }
  return out;
}

/** W (N, K) -> dequant(quant(clip(W·diag(s))))·diag(1/s), 1/s rounded to f32 once per column. */
export function fakeQuantRef(w: Float32Array, N: number, K: number, spec: FakeQuantSpec, colScale?: Float32Array, clipMax?: Float32Array): Float32Array {
  const G = Math.min(spec.G, K);
  const ng = Math.ceil(K / G);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < ng; g++) {
      const k0 = g * G, k1 = Math.min(k0 + G, K);
      const v = new Float32Array(k1 - k0);
      for (let k = k0; k < k1; k++) {
        let x = colScale ? Math.fround(w[n * K + k] * colScale[k]) : w[n * K + k];
        if (clipMax) x = Math.min(Math.max(x, -clipMax[n * ng + g]), clipMax[n * ng + g]);
        v[k - k0] = x;
      }
      const q = fakeQuantGroup(v, spec);
      for (let k = k0; k < k1; k++) out[n * K + k] = colScale ? Math.fround(q[k - k0] * Math.fround(1 / colScale[k])) : q[k - k0];
    }
  }
  return out;
}

/** Clip search reference: maxVal (N, ng) and the per-(row, group) errors (before, after). */
export function clipSearchRef(w: Float32Array, N: number, K: number, x: Float32Array, T: number, spec: FakeQuantSpec): { maxVal: Float32Array; before: Float64Array; after: Float64Array } {
  const G = Math.min(spec.G, K);
  const ng = Math.ceil(K / G);
  const maxVal = new Float32Array(N * ng);
  const before = new Float64Array(N * ng), after = new Float64Array(N * ng);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < ng; g++) {
      const k0 = g * G, k1 = Math.min(k0 + G, K);
      const wg = w.slice(n * K + k0, n * K + k1);
      let amax = 0;
      for (const v of wg) amax = Math.max(amax, Math.abs(v));
      const org = new Float64Array(T);
      for (let t = 0; t < T; t++) for (let k = k0; k < k1; k++) org[t] += x[t * K + k] * w[n * K + k];
      let best = Infinity, bestMax = amax;
      for (let i = 0; i < 10; i++) {
        const m = Math.fround(amax * Math.fround((20 - i) / 20));
        const q = fakeQuantGroup(wg.map((v) => Math.min(Math.max(v, -m), m)), spec);
        let err = 0;
        for (let t = 0; t < T; t++) {
          let d = 0;
          for (let k = k0; k < k1; k++) d += x[t * K + k] * q[k - k0];
          err += (d - org[t]) ** 2;
        }
        err /= T;
        if (i === 0) before[n * ng + g] = err;
        if (err < best) {
          best = err;
          bestMax = m;
        }
      }
      maxVal[n * ng + g] = bestMax;
      after[n * ng + g] = best;
    }
  }
  return { maxVal, before, after };
}
