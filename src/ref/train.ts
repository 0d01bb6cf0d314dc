// ref/train.ts — float64 CPU references for the training kernels: causal GQA attention forward (with
// log-sum-exp) and backward (shaders/train/attention_bwd.wgsl), LSQ fake quantization forward,
// backward and initialisation (shaders/train/lsq.wgsl), AdamW and the sum of squares
// (shaders/train/adamw.wgsl). Plain loops, slow, used by tests and as the definitions.

import { rint } from "./quant.ts";

type Arr = ArrayLike<number>;

export interface AttentionRefDims {
  T: number;
  Hq: number;
  Hkv: number;
  D: number;
  /** Tokens per packed sequence (0: one sequence). */
  seq?: number;
}

function firstKey(t: number, seq: number): number {
  return seq > 0 ? Math.floor(t / seq) * seq : 0;
}

/** Causal GQA attention (positions from 0) in float64: out (T, Hq, D) and lse (T, Hq) of the scaled scores. */
export function attentionForwardRef64(q: Arr, k: Arr, v: Arr, dims: AttentionRefDims): { out: Float64Array; lse: Float64Array } {
  const { T, Hq, Hkv, D } = dims;
  const seq = dims.seq ?? 0;
  const scale = 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const out = new Float64Array(T * Hq * D);
  const lse = new Float64Array(T * Hq);
  const s = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      const row = t * Hq + h;
      const j0 = firstKey(t, seq);
      let m = -Infinity;
      for (let j = j0; j <= t; j++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += q[row * D + i] * k[(j * Hkv + kvh) * D + i];
        s[j] = d * scale;
        m = Math.max(m, s[j]);
      }
      let z = 0;
      for (let j = j0; j <= t; j++) z += (s[j] = Math.exp(s[j] - m));
      lse[row] = m + Math.log(z);
      for (let i = 0; i < D; i++) {
        let acc = 0;
        for (let j = j0; j <= t; j++) acc += s[j] * v[(j * Hkv + kvh) * D + i];
        out[row * D + i] = acc / z;
      }
    }
  }
  return { out, lse };
}

/**
 * Gradients of L = Σ dout·out for the attention above: dq (T, Hq, D), dk, dv (T, Hkv, D). Uses
 * delta_t = Σ_j p_tj (dout_t·v_j) (= dout_t·out_t) from recomputed probabilities.
 */
export function attentionBackwardRef(q: Arr, k: Arr, v: Arr, dout: Arr, dims: AttentionRefDims): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { T, Hq, Hkv, D } = dims;
  const seq = dims.seq ?? 0;
  const scale = 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const dq = new Float64Array(T * Hq * D);
  const dk = new Float64Array(T * Hkv * D);
  const dv = new Float64Array(T * Hkv * D);
  const p = new Float64Array(T);
  const dp = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      const row = t * Hq + h;
      const j0 = firstKey(t, seq);
      let m = -Infinity;
      for (let j = j0; j <= t; j++) {
        let sd = 0;
        let pd = 0;
        for (let i = 0; i < D; i++) {
          sd += q[row * D + i] * k[(j * Hkv + kvh) * D + i];
          pd += dout[row * D + i] * v[(j * Hkv + kvh) * D + i];
        }
        p[j] = sd * scale;
        dp[j] = pd;
        m = Math.max(m, p[j]);
      }
      let z = 0;
      for (let j = j0; j <= t; j++) z += (p[j] = Math.exp(p[j] - m));
      let delta = 0;
      for (let j = j0; j <= t; j++) delta += (p[j] /= z) * dp[j];
      for (let j = j0; j <= t; j++) {
        const ds = p[j] * (dp[j] - delta);
        const kb = (j * Hkv + kvh) * D;
        for (let i = 0; i < D; i++) {
          dq[row * D + i] += scale * ds * k[kb + i];
          dk[kb + i] += scale * ds * q[row * D + i];
          dv[kb + i] += p[j] * dout[row * D + i];
        }
      }
    }
  }
  return { dq, dk, dv };
}

// ---------------------------------------------------------------------------------------------
// LSQ
// ---------------------------------------------------------------------------------------------

/** W [N, K] in groups of G along K; bits 2..8; sym: symmetric levels (the LsqSpec of src/train/lsq.ts). */
export interface LsqRefShape {
  N: number;
  K: number;
  G: number;
  bits: number;
  sym: boolean;
}

function lsqShape(sh: LsqRefShape) {
  const G = Math.min(sh.G, sh.K);
  const ng = Math.ceil(sh.K / G);
  const maxq = sh.sym ? 2 ** (sh.bits - 1) - 1 : 2 ** sh.bits - 1;
  return { G, ng, maxq, lo: sh.sym ? -maxq - 1 : 0, hi: maxq };
}

/** w' = (clamp(rint(w/s) + z, lo, hi) − z)·s per (row, group); z ignored (0) when symmetric. */
export function lsqForwardRef(w: Arr, s: Arr, z: Arr | null, sh: LsqRefShape): Float64Array {
  const { N, K } = sh;
  const { G, ng, lo, hi } = lsqShape(sh);
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const gi = n * ng + Math.floor(k / G);
      const zz = sh.sym || !z ? 0 : z[gi];
      const q = Math.min(hi, Math.max(lo, rint(w[n * K + k] / s[gi]) + zz));
      out[n * K + k] = (q - zz) * s[gi];
    }
  }
  return out;
}

/**
 * Straight-through / LSQ gradients of lsqForwardRef for upstream gradient gq = dL/dw' (u = w/s, v = u + z):
 * inside [lo, hi]: dw = gq, ds += gq·(rint(u) − u); below / above: dw = 0, ds += gq·(lo − z) / gq·(hi − z),
 * dz += −gq·s. With gradScale, ds and dz of a group are multiplied by 1/sqrt(n·maxq), n the group's size.
 */
export function lsqBackwardRef(w: Arr, s: Arr, z: Arr | null, gq: Arr, sh: LsqRefShape, opts: { gradScale?: boolean } = {}): { dw: Float64Array; ds: Float64Array; dz: Float64Array } {
  const { N, K } = sh;
  const { G, ng, maxq, lo, hi } = lsqShape(sh);
  const dw = new Float64Array(N * K);
  const ds = new Float64Array(N * ng);
  const dz = new Float64Array(N * ng);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < ng; g++) {
      const gi = n * ng + g;
      const zz = sh.sym || !z ? 0 : z[gi];
      const k0 = g * G;
      const k1 = Math.min(k0 + G, K);
      let a = 0;
      let b = 0;
      for (let k = k0; k < k1; k++) {
        const i = n * K + k;
        const u = w[i] / s[gi];
        const v = u + zz;
        if (v < lo) {
          a += gq[i] * (lo - zz);
          b -= gq[i] * s[gi];
        } else if (v > hi) {
          a += gq[i] * (hi - zz);
          b -= gq[i] * s[gi];
        } else {
          dw[i] = gq[i];
          a += gq[i] * (rint(u) - u);
        }
      }
      const f = opts.gradScale ? 1 / Math.sqrt((k1 - k0) * maxq) : 1;
      ds[gi] = a * f;
      dz[gi] = sh.sym ? 0 : b * f;
    }
  }
  return { dw, ds, dz };
}

/**
 * The straight-through surrogate of lsqForwardRef around a base point w0, s0: rint(u) is replaced by
 * u + (rint(u0) − u0) with the offset frozen, and the clipping decided on u + z. Its exact derivatives
 * are lsqBackwardRef's gradients (used by finite-difference tests).
 */
export function lsqSurrogateRef(w: Arr, s: Arr, z: Arr | null, w0: Arr, s0: Arr, sh: LsqRefShape): Float64Array {
  const { N, K } = sh;
  const { G, ng, lo, hi } = lsqShape(sh);
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const i = n * K + k;
      const gi = n * ng + Math.floor(k / G);
      const zz = sh.sym || !z ? 0 : z[gi];
      const u0 = w0[i] / s0[gi];
      const u = w[i] / s[gi];
      const v = u + zz;
      const q = v < lo ? lo : v > hi ? hi : u + (rint(u0) - u0) + zz;
      out[i] = (q - zz) * s[gi];
    }
  }
  return out;
}

/**
 * RTN min/max initialisation per (row, group), in f32 arithmetic as the GPU: asym s = max(fl(max −
 * min)/maxq, 1e-5), z = clamp(rint(−min/s), 0, maxq); sym s = max(max|w|/maxq, 1e-5), z = 0.
 */
export function lsqInitRef(w: Arr, sh: LsqRefShape): { s: Float32Array; z: Float32Array } {
  const { N, K } = sh;
  const { G, ng, maxq } = lsqShape(sh);
  const s = new Float32Array(N * ng);
  const z = new Float32Array(N * ng);
  const f = Math.fround;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < ng; g++) {
      let mn = Infinity;
      let mx = -Infinity;
      for (let k = g * G; k < Math.min(g * G + G, K); k++) {
        mn = Math.min(mn, w[n * K + k]);
        mx = Math.max(mx, w[n * K + k]);
      }
      const gi = n * ng + g;
      if (sh.sym) {
        s[gi] = Math.max(f(Math.max(Math.abs(mn), Math.abs(mx)) / maxq), f(1e-5));
      } else {
        s[gi] = Math.max(f(f(mx - mn) / maxq), f(1e-5));
        z[gi] = Math.min(maxq, Math.max(0, rint(f(-mn / s[gi]))));
      }
    }
  }
  return { s, z };
}

// ---------------------------------------------------------------------------------------------
// AdamW
// ---------------------------------------------------------------------------------------------

export interface AdamWRefOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradScale: number;
}

/** One AdamW step (t >= 1) in place on float64 arrays: decoupled weight decay, bias-corrected moments. */
export function adamwRef(p: Float64Array, g: Arr, m: Float64Array, v: Float64Array, t: number, o: AdamWRefOptions): void {
  const bc1 = 1 - o.beta1 ** t;
  const bc2 = 1 - o.beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * o.gradScale;
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
    p[i] -= o.lr * (m[i] / bc1 / (Math.sqrt(v[i] / bc2) + o.eps) + o.weightDecay * p[i]);
  }
}

/** Σ g² in float64. */
export function sumSquaresRef(g: Arr): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return s;
}
