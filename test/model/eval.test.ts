import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";
import { evaluate, tokenStream, windows } from "../../src/model/eval.ts";
import { generate } from "../../src/model/generate.ts";
import { LlamaModel } from "../../src/model/llama.ts";
import { parseConfig } from "../../src/model/config.ts";
import { mapSource, syntheticWeights } from "../../src/model/synthetic.ts";
import { lossRef, RefLlama } from "../../src/ref/llama.ts";
import { TextTokenizer } from "../../src/io/tokenizer.ts";
import { splitPlainText } from "../../src/io/data.ts";
import { gpuContext, rng } from "../helpers/gpu.ts";

const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K/", import.meta.url));
const SAMPLE = fileURLToPath(new URL("../../../shared/data/tinystories-valid-sample.txt", import.meta.url));

describe("evaluation protocol", () => {
  it("cuts the stream into non-overlapping windows, keeping a shorter last one", () => {
    const s = Array.from({ length: 10 }, (_, i) => i);
    expect(windows(s, 4)).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(windows(s, 3, 2)).toEqual([[0, 1, 2], [3, 4, 5]]);
    expect(windows([...s, 10], 5)).toEqual([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]); // a 1-token tail scores nothing
  });

  it("opens every document with BOS, as the reference protocol does (sample: 74 152 tokens, 290 windows, 73 862 scored)", async () => {
    const tok = await TextTokenizer.fromHF(STORIES);
    const docs = splitPlainText(readFileSync(SAMPLE, "utf8"));
    const stream = tokenStream(tok, docs);
    const wins = windows(stream, 256);
    expect(docs.length).toBe(200);
    expect(stream.length).toBe(74152);
    expect(wins.length).toBe(290);
    expect(wins.reduce((a, w) => a + w.length - 1, 0)).toBe(73862);
  });
});

describe("evaluate / generate on the GPU", async () => {
  const ctx = await gpuContext();

  it("perplexity and KL of a synthetic model match the CPU reference", async () => {
    const c = parseConfig({ model_type: "llama", hidden_size: 32, intermediate_size: 70, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 97, max_position_embeddings: 64 }, "synthetic");
    const w = syntheticWeights(c, { seed: 2 });
    const w2 = syntheticWeights(c, { seed: 2 });
    for (const t of w2.values()) for (let i = 0; i < t.length; i += 3) t[i] *= 1.05; // a perturbed "quantized" model
    const r = rng(8);
    const stream = Array.from({ length: 100 }, () => Math.floor(r() * 97));
    const wins = windows(stream, 24);
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w2), { maxTokens: 72 });
    const ref = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 72 });
    const got = await evaluate(ctx, m, wins, { ref, perForward: 3 }); // 4 full windows + a short one: groups of 3, 1, 1
    let nll = 0, kl = 0, n = 0;
    for (const win of wins) {
      const a = new RefLlama(c, w2, 24).forward(win);
      const b = new RefLlama(c, w, 24).forward(win);
      for (const row of lossRef(a, win, win.length, 97, b)) {
        nll += row.nll;
        kl += row.kl;
        n++;
      }
    }
    expect(got.tokens).toBe(n);
    expect(Math.abs(got.ppl - Math.exp(nll / n)) / Math.exp(nll / n)).toBeLessThan(1e-5);
    expect(Math.abs(got.kl! - kl / n) / (kl / n)).toBeLessThan(1e-3);
    expect(got.kl!).toBeGreaterThan(0);
    m.destroy();
    ref.destroy();
  });

  it("stories260K: greedy generation is fluent and identical to the CPU reference's", async () => {
    const tok = await TextTokenizer.fromHF(STORIES);
    const prompt = tok.encode("Once upon a time", { bos: true });
    const m = await LlamaModel.load(ctx, STORIES, { maxTokens: prompt.length, maxSeq: prompt.length + 40 });
    const gpu = await generate(m, prompt, { maxTokens: 40 });
    m.destroy();
    const { loadConfig } = await import("../../src/model/config.ts");
    const { SafetensorsCheckpoint } = await import("../../src/io/safetensors.ts");
    const ck = await SafetensorsCheckpoint.open(STORIES);
    const w = new Map<string, Float32Array>();
    for (const n of ck.names()) w.set(n, (await ck.read(n, "f32")).data as Float32Array);
    await ck.close();
    const ref = new RefLlama(await loadConfig(STORIES), w, 64);
    let logits = ref.forward(prompt);
    const cpu: number[] = [];
    for (let i = 0; i < 40; i++) {
      const last = logits.subarray(logits.length - 512);
      let best = 0;
      for (let v = 1; v < 512; v++) if (last[v] > last[best]) best = v;
      cpu.push(best);
      logits = ref.forward([best]);
    }
    const text = tok.decode(gpu.ids, { skipSpecial: true });
    console.log(`greedy: "Once upon a time${text}"`);
    expect(gpu.ids).toEqual(cpu);
    expect(text).toMatch(/^, there was a little girl named Lily\. She loved to play/);
  });
});
