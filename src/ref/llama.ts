// ref/llama.ts — a plain CPU Llama-family forward pass (float32 storage, float64 accumulation):
// the reference for every kernel in shaders/nn and for the GPU model. Slow on purpose: clear.
// Weights are looked up by Hugging Face tensor name; linears are [out, in] row-major.

import type { LlamaConfig } from "../model/config.ts";
import { ropeInvFreq } from "../model/rope.ts";

export type RefWeights = ReadonlyMap<string, Float32Array>;

/** E (V, H), ids (T) -> x (T, H). */
export function embedRef(E: Float32Array, ids: ArrayLike<number>, H: number): Float32Array {
  const out = new Float32Array(ids.length * H);
  for (let t = 0; t < ids.length; t++) out.set(E.subarray(ids[t] * H, ids[t] * H + H), t * H);
  return out;
}

/** x (T, H), w (H) -> y (T, H) = x / sqrt(mean x^2 + eps) * w. */
export function rmsnormRef(x: Float32Array, w: Float32Array, T: number, H: number, eps: number): Float32Array {
  const y = new Float32Array(T * H);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let h = 0; h < H; h++) ss += x[t * H + h] ** 2;
    const inv = 1 / Math.sqrt(ss / H + eps);
    for (let h = 0; h < H; h++) y[t * H + h] = x[t * H + h] * inv * w[h];
  }
  return y;
}

/** x (T, nh, D) rotated in place for positions pos0 .. pos0+T-1 (rotate_half pairs i, i + D/2). */
export function ropeRef(x: Float32Array, T: number, nh: number, D: number, pos0: number, invFreq: Float32Array): void {
  const half = D / 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nh; h++) {
      const b = (t * nh + h) * D;
      for (let i = 0; i < half; i++) {
        const a = Math.fround((pos0 + t) * invFreq[i]);
        const c = Math.cos(a), s = Math.sin(a);
        const x1 = x[b + i], x2 = x[b + i + half];
        x[b + i] = x1 * c - x2 * s;
        x[b + i + half] = x2 * c + x1 * s;
      }
    }
  }
}

/**
 * Causal GQA attention. q (T, Hq, D) at positions pos0.., caches kc/vc (S, Hkv, D) holding
 * positions 0 .. pos0+T-1 -> out (T, Hq, D).
 */
export function attentionRef(q: Float32Array, kc: Float32Array, vc: Float32Array, T: number, Hq: number, Hkv: number, D: number, pos0: number, seq = 0): Float32Array {
  const out = new Float32Array(T * Hq * D);
  const scale = 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      const n = pos0 + t + 1;
      const j0 = seq > 0 ? Math.floor(t / seq) * seq : 0;
      const s = new Float64Array(n);
      let m = -Infinity;
      for (let j = j0; j < n; j++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += q[(t * Hq + h) * D + i] * kc[(j * Hkv + kvh) * D + i];
        s[j] = d * scale;
        m = Math.max(m, s[j]);
      }
      let z = 0;
      for (let j = j0; j < n; j++) z += (s[j] = Math.exp(s[j] - m));
      for (let i = 0; i < D; i++) {
        let acc = 0;
        for (let j = j0; j < n; j++) acc += s[j] * vc[(j * Hkv + kvh) * D + i];
        out[(t * Hq + h) * D + i] = acc / z;
      }
    }
  }
  return out;
}

/** x (T, K) · W (N, K)^T (+ b) -> (T, N). */
export function linearRef(x: Float32Array, W: Float32Array, T: number, N: number, K: number, b?: Float32Array): Float32Array {
  const y = new Float32Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let acc = b ? b[n] : 0;
      for (let k = 0; k < K; k++) acc += x[t * K + k] * W[n * K + k];
      y[t * N + n] = acc;
    }
  }
  return y;
}

export function siluRef(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** Per-row next-token loss: logits (T, V), ids (T) -> rows t < T-1 of (nll, kl, top1) as lossRef computes them. */
export function lossRef(logits: Float32Array, ids: ArrayLike<number>, T: number, V: number, ref?: Float32Array): { nll: number; kl: number; top1: number }[] {
  const rows = [];
  const lse = (z: Float32Array, b: number) => {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, z[b + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(z[b + v] - m);
    return m + Math.log(s);
  };
  const argmax = (z: Float32Array, b: number) => {
    let best = 0;
    for (let v = 1; v < V; v++) if (z[b + v] > z[b + best]) best = v;
    return best;
  };
  for (let t = 0; t + 1 < T; t++) {
    const b = t * V;
    const ll = lse(logits, b);
    const nll = ll - logits[b + ids[t + 1]];
    let kl = 0;
    let top1 = argmax(logits, b) === ids[t + 1] ? 1 : 0;
    if (ref) {
      const lr = lse(ref, b);
      for (let v = 0; v < V; v++) {
        const lpr = ref[b + v] - lr;
        kl += Math.exp(lpr) * (lpr - (logits[b + v] - ll));
      }
      top1 = argmax(logits, b) === argmax(ref, b) ? 1 : 0;
    }
    rows.push({ nll, kl, top1 });
  }
  return rows;
}

/** The CPU model: config + weights by HF name, with a KV cache for generation. */
export class RefLlama {
  readonly invFreq: Float32Array;
  #k: Float32Array[] = [];
  #v: Float32Array[] = [];
  #len = 0;

  constructor(readonly c: LlamaConfig, readonly w: RefWeights, readonly maxSeq = c.maxPositionEmbeddings) {
    this.invFreq = ropeInvFreq(c);
    const kvw = c.numKvHeads * c.headDim;
    for (let l = 0; l < c.numLayers; l++) {
      this.#k.push(new Float32Array(maxSeq * kvw));
      this.#v.push(new Float32Array(maxSeq * kvw));
    }
  }

  reset(): void {
    this.#len = 0;
  }

  #get(name: string): Float32Array {
    const t = this.w.get(name);
    if (!t) throw new Error(`reference model: missing tensor ${name}`);
    return t;
  }

  /** ids (T) appended at the current position -> logits (T, V). */
  forward(ids: ArrayLike<number>): Float32Array {
    const c = this.c;
    const T = ids.length;
    const H = c.hiddenSize, I = c.intermediateSize, hd = c.headDim, Hq = c.numHeads, Hkv = c.numKvHeads;
    const pos0 = this.#len;
    const x = embedRef(this.#get("model.embed_tokens.weight"), ids, H);
    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}.`;
      const bias = (n: string) => this.w.get(`${p}${n}.bias`);
      const xn = rmsnormRef(x, this.#get(`${p}input_layernorm.weight`), T, H, c.rmsNormEps);
      const q = linearRef(xn, this.#get(`${p}self_attn.q_proj.weight`), T, Hq * hd, H, bias("self_attn.q_proj"));
      const k = linearRef(xn, this.#get(`${p}self_attn.k_proj.weight`), T, Hkv * hd, H, bias("self_attn.k_proj"));
      const v = linearRef(xn, this.#get(`${p}self_attn.v_proj.weight`), T, Hkv * hd, H, bias("self_attn.v_proj"));
      ropeRef(q, T, Hq, hd, pos0, this.invFreq);
      ropeRef(k, T, Hkv, hd, pos0, this.invFreq);
      this.#k[l].set(k, pos0 * Hkv * hd);
      this.#v[l].set(v, pos0 * Hkv * hd);
      const a = attentionRef(q, this.#k[l], this.#v[l], T, Hq, Hkv, hd, pos0);
      const o = linearRef(a, this.#get(`${p}self_attn.o_proj.weight`), T, H, Hq * hd, bias("self_attn.o_proj"));
      for (let i = 0; i < x.length; i++) x[i] += o[i];
      const xn2 = rmsnormRef(x, this.#get(`${p}post_attention_layernorm.weight`), T, H, c.rmsNormEps);
      const g = linearRef(xn2, this.#get(`${p}mlp.gate_proj.weight`), T, I, H, bias("mlp.gate_proj"));
      const u = linearRef(xn2, this.#get(`${p}mlp.up_proj.weight`), T, I, H, bias("mlp.up_proj"));
      for (let i = 0; i < g.length; i++) g[i] = siluRef(g[i]) * u[i];
      const d = linearRef(g, this.#get(`${p}mlp.down_proj.weight`), T, H, I, bias("mlp.down_proj"));
      for (let i = 0; i < x.length; i++) x[i] += d[i];
    }
    this.#len += T;
    const xf = rmsnormRef(x, this.#get("model.norm.weight"), T, H, c.rmsNormEps);
    const head = this.w.get("lm_head.weight") ?? this.#get("model.embed_tokens.weight");
    return linearRef(xf, head, T, c.vocabSize, H);
  }
}
