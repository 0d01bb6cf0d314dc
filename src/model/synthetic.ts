// model/synthetic.ts — random Llama-family weights for tests, demos and benchmarks: no download.
// Linears are uniform with std 1/sqrt(fan_in) so activations keep their scale through the
// blocks; norms are near 1. `outliers` plants a few hidden channels with large activations, the
// way trained LLMs have them (their norm gains are large), so activation-aware methods have
// something to find.

import { expectedTensors, type LlamaConfig } from "./config.ts";
import { rng } from "../ref/random.ts";
import type { WeightSource } from "./llama.ts";

export interface SyntheticOptions {
  seed?: number;
  /** Number of hidden channels given a large norm gain (default 0). */
  outliers?: number;
  /** Gain of those channels (default 20). */
  outlierGain?: number;
}

/** config -> every tensor the config expects (tied head omitted), by Hugging Face name. */
export function syntheticWeights(c: LlamaConfig, opts: SyntheticOptions = {}): Map<string, Float32Array> {
  const r = rng(opts.seed ?? 1);
  const out = new Map<string, Float32Array>();
  const outlierSet = new Set<number>();
  while (outlierSet.size < Math.min(opts.outliers ?? 0, c.hiddenSize)) outlierSet.add(Math.floor(r() * c.hiddenSize));
  for (const t of expectedTensors(c)) {
    if (t.optional && c.tieWordEmbeddings) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const role = t.role.role;
    if (role === "input_layernorm" || role === "post_attention_layernorm" || role === "norm") {
      for (let i = 0; i < n; i++) a[i] = 0.8 + 0.4 * r();
      if (role !== "norm") for (const ch of outlierSet) a[ch] = opts.outlierGain ?? 20;
    } else if (t.role.param === "bias") {
      for (let i = 0; i < n; i++) a[i] = (r() - 0.5) * 0.2;
    } else {
      const fanIn = t.shape[1];
      const scale = role === "embed_tokens" || role === "lm_head" ? 1 : Math.sqrt(3 / fanIn);
      for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
    }
    out.set(t.name, a);
  }
  return out;
}

/** A WeightSource over an in-memory map. */
export function mapSource(m: ReadonlyMap<string, Float32Array>): WeightSource {
  return {
    has: (n) => m.has(n),
    readF32: async (n) => {
      const t = m.get(n);
      if (!t) throw new Error(`synthetic model has no tensor ${n}`);
      return t;
    },
  };
}
