// model/synthetic.ts — random Llama-family weights for tests, demos and benchmarks: no download.
// Linears are uniform with std 1/sqrt(fan_in) so activations keep their scale through the
// blocks; norms are near 1. `outliers` plants a few hidden channels with large activations, the
// way trained LLMs have them (their norm gains are large), so activation-aware methods have
// something to find.

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { expectedTensors, parseConfig, type LlamaConfig } from "./config.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { rng } from "../common/random.ts";
import type { WeightSource } from "./llama.ts";

export interface SyntheticOptions {
  seed?: number;
  /** Number of hidden channels given a large norm gain (default 0). */
  outliers?: number;
  /** Gain of those channels (default 20). */
  outlierGain?: number;
}

/** Hugging Face config.json objects of the built-in synthetic shapes. */
export const SYNTHETIC_PRESETS: Record<string, Record<string, unknown>> = {
  /** ~0.1M parameters: for tests of the whole pipeline. */
  tiny: { hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 256 },
  /** ~4M parameters: the `wgq demo` model. */
  demo: { hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 2048 },
  /** Llama-3.2-1B-like: hidden 2048, 16 layers, 32/8 heads, intermediate 5632, vocab 32000 (~1.1B). */
  "1b": { hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000 },
};

/** A preset name -> its config.json object (llama, untied head, 2048 positions). */
export function syntheticConfigJson(preset: string): Record<string, unknown> {
  const p = SYNTHETIC_PRESETS[preset];
  if (!p) throw new Error(`unknown synthetic preset '${preset}' (have: ${Object.keys(SYNTHETIC_PRESETS).join(", ")})`);
  return {
    architectures: ["LlamaForCausalLM"], model_type: "llama", max_position_embeddings: 2048, rms_norm_eps: 1e-5,
    rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: "float32", ...p,
  };
}

/** One tensor of the synthetic model, generated from (seed, name) alone: any tensor on demand. */
export function syntheticTensor(c: LlamaConfig, name: string, opts: SyntheticOptions = {}): Float32Array {
  const t = expectedTensors(c).find((e) => e.name === name);
  if (!t) throw new Error(`synthetic model has no tensor ${name}`);
  let h = opts.seed ?? 1;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const r = rng(h);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  const role = t.role.role;
  if (role === "input_layernorm" || role === "post_attention_layernorm" || role === "norm") {
    for (let i = 0; i < n; i++) a[i] = 0.8 + 0.4 * r();
    if (role !== "norm") for (const ch of outlierChannels(c, opts)) a[ch] = opts.outlierGain ?? 20;
  } else if (t.role.param === "bias") {
    for (let i = 0; i < n; i++) a[i] = (r() - 0.5) * 0.2;
  } else {
    const scale = role === "embed_tokens" ? 1 : Math.sqrt(3 / t.shape[1]);
    for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  }
  return a;
}

function outlierChannels(c: LlamaConfig, opts: SyntheticOptions): Set<number> {
  const r = rng((opts.seed ?? 1) ^ 0x5eed);
  const set = new Set<number>();
  while (set.size < Math.min(opts.outliers ?? 0, c.hiddenSize)) set.add(Math.floor(r() * c.hiddenSize));
  return set;
}

/** A lazy WeightSource: tensors generated when read (a 1B model without 4 GB of host memory). */
export function syntheticSource(c: LlamaConfig, opts: SyntheticOptions = {}): WeightSource {
  const names = new Set(expectedTensors(c).filter((t) => !(t.optional && c.tieWordEmbeddings)).map((t) => t.name));
  return {
    has: (n) => names.has(n),
    readF32: async (n) => syntheticTensor(c, n, opts),
  };
}

/** Writes a synthetic model as a Hugging Face folder (config.json + model.safetensors). */
export async function writeSyntheticModel(dir: string, preset: string, opts: SyntheticOptions = {}): Promise<LlamaConfig> {
  const json = syntheticConfigJson(preset);
  const c = parseConfig(json, `synthetic:${preset}`);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, "config.json"), JSON.stringify(json, null, 2) + "\n");
  const tensors = expectedTensors(c).filter((t) => !(t.optional && c.tieWordEmbeddings))
    .map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: syntheticTensor(c, t.name, opts) }));
  await writeSafetensors(path.join(dir, "model.safetensors"), tensors, { metadata: { format: "pt", producer: "webgpu-quant synthetic", preset } });
  return c;
}

/** config -> every tensor the config expects (tied head omitted), by Hugging Face name. */
export function syntheticWeights(c: LlamaConfig, opts: SyntheticOptions = {}): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of expectedTensors(c)) {
    if (t.optional && c.tieWordEmbeddings) continue;
    out.set(t.name, syntheticTensor(c, t.name, opts));
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
