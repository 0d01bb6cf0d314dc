import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { LlamaModel } from "../../src/model/llama.ts";
import { loadConfig, parseConfig, type LlamaConfig } from "../../src/model/config.ts";
import { mapSource, syntheticWeights } from "../../src/model/synthetic.ts";
import { RefLlama } from "../../src/ref/llama.ts";
import { SafetensorsCheckpoint } from "../../src/io/safetensors.ts";
import { TextTokenizer } from "../../src/io/tokenizer.ts";
import { gpuContext, rng } from "../helpers/gpu.ts";
import { toF16 } from "../helpers/reference.ts";

const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K/", import.meta.url));

function tinyConfig(over: Record<string, unknown>): LlamaConfig {
  return parseConfig({
    model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: 48, intermediate_size: 100,
    num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2, vocab_size: 203,
    max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, ...over,
  }, "synthetic");
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

describe("LlamaModel vs the CPU reference", async () => {
  const ctx = await gpuContext();

  const variants: [string, Record<string, unknown>][] = [
    ["GQA, untied head, head_dim 8", {}],
    ["q/k/v biases (Qwen2), tied head", { model_type: "qwen2", architectures: ["Qwen2ForCausalLM"], tie_word_embeddings: true }],
    ["head_dim 128, llama3 rope scaling", { hidden_size: 256, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 128, rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }],
  ];
  for (const [name, over] of variants) {
    it(`${name}: prefill of a ragged length, then decode steps, match the reference`, async () => {
      const base = ctx.gpu.stats.liveBytes;
      const c = tinyConfig(over);
      const w = syntheticWeights(c, { seed: 7 });
      const ref = new RefLlama(c, w, 64);
      const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 37, maxSeq: 64 });
      const r = rng(3);
      const ids = Array.from({ length: 37 }, () => Math.floor(r() * c.vocabSize));
      const got = (await (await m.forward(ids)).toHost()) as Float32Array;
      const want = ref.forward(ids);
      const d0 = maxAbsDiff(got, want);
      let worst = 0;
      for (const id of [5, 17, 200]) {
        const g = (await (await m.forward([id])).toHost()) as Float32Array;
        worst = Math.max(worst, maxAbsDiff(g, ref.forward([id])));
      }
      console.log(`${name}: prefill max |Δlogit| ${d0.toExponential(2)}, decode ${worst.toExponential(2)}`);
      expect(d0).toBeLessThan(1e-3);
      expect(worst).toBeLessThan(1e-3);
      m.destroy();
      expect(ctx.gpu.stats.liveBytes).toBe(base);
    });
  }

  it("streaming mode computes what resident mode computes, holding one block at a time", async () => {
    const c = tinyConfig({ num_hidden_layers: 3 });
    const w = syntheticWeights(c, { seed: 9 });
    const ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const a = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 16 });
    const la = (await (await a.forward(ids)).toHost()) as Float32Array;
    a.destroy();
    const base = ctx.gpu.stats.liveBytes;
    const b = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 16, streaming: true });
    const resident = ctx.gpu.stats.liveBytes - base;
    ctx.gpu.stats.peakBytes = ctx.gpu.stats.liveBytes;
    const lb = (await (await b.forward(ids)).toHost()) as Float32Array;
    const blockBytes = 4 * (2 * 48 + 48 * 48 + 2 * 16 * 48 + 48 * 48 + 3 * 100 * 48);
    expect(ctx.gpu.stats.peakBytes - base - resident).toBeLessThanOrEqual(blockBytes + 4096);
    expect(maxAbsDiff(lb, la)).toBe(0);
    b.destroy();
    expect(ctx.gpu.stats.liveBytes).toBe(base);
  });

  it("f16 weights stay close to f32", async () => {
    const c = tinyConfig({});
    const w = syntheticWeights(c, { seed: 4 });
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const ref = new RefLlama(c, w, 16).forward(ids);
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 8, weightDtype: "f16" });
    const got = (await (await m.forward(ids)).toHost()) as Float32Array;
    const d = maxAbsDiff(got, ref);
    // the reference on the weights the GPU holds: embedding, head and linears rounded to f16
    // (nearest, ties to even), norms in f32
    const w16 = new Map([...w].map(([n, t]) => [n, /norm/.test(n) ? t : Float32Array.from(t, toF16)]));
    const d16 = maxAbsDiff(got, new RefLlama(c, w16, 16).forward(ids));
    console.log(`f16 weights: max |Δlogit| ${d.toExponential(2)} from the f32 model, ${d16.toExponential(2)} from the f16-rounded reference`);
    expect(d).toBeGreaterThan(0); // f16 rounding is really applied
    expect(d).toBeLessThan(0.05);
    expect(d16).toBeLessThan(1e-3); // as the f32 model against its reference
    m.destroy();
  });

  it("stories260K: GPU logits for a prompt match the CPU reference to 1e-3", async () => {
    const c = await loadConfig(STORIES);
    const ck = await SafetensorsCheckpoint.open(STORIES);
    const w = new Map<string, Float32Array>();
    for (const n of ck.names()) w.set(n, (await ck.read(n, "f32")).data as Float32Array);
    await ck.close();
    const ids = (await TextTokenizer.fromHF(STORIES)).encode("Once upon a time"); // BOS first
    const ref = new RefLlama(c, w, 64).forward(ids);
    const m = await LlamaModel.load(ctx, STORIES, { maxTokens: 16 });
    const got = (await (await m.forward(ids)).toHost()) as Float32Array;
    const d = maxAbsDiff(got, ref);
    console.log(`stories260K: max |Δlogit| GPU vs CPU ${d.toExponential(2)}`);
    expect(d).toBeLessThan(1e-3);
    m.destroy();
  });
});

describe("packed sequences", async () => {
  const ctx = await gpuContext();
  it("a forward of B packed windows equals B separate forwards", async () => {
    const c = tinyConfig({});
    const w = syntheticWeights(c, { seed: 12 });
    const r = rng(5);
    const L = 13;
    const wins = [0, 1, 2].map(() => Array.from({ length: L }, () => Math.floor(r() * c.vocabSize)));
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 3 * L });
    const packed = (await (await m.forward(wins.flat(), { seq: L })).toHost()) as Float32Array;
    expect(m.position).toBe(0);
    for (let b = 0; b < 3; b++) {
      m.reset();
      const one = (await (await m.forward(wins[b])).toHost()) as Float32Array;
      expect(maxAbsDiff(packed.subarray(b * L * c.vocabSize, (b + 1) * L * c.vocabSize), one)).toBeLessThan(1e-5);
    }
    m.destroy();
  });
});
