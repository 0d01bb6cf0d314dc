// test/model/config.test.ts — config.json parsing for each supported family, the bad-config errors,
// and the tensor-name map checked against the stories260K checkpoint.

import { describe, it, expect } from "vitest";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import { InputError, UnsupportedModelError } from "../../src/errors.ts";
import {
  checkTensors, expectedTensors, loadConfig, parameterCount, parseConfig, tensorName, tensorRole,
} from "../../src/model/config.ts";
import { SafetensorsCheckpoint } from "../../src/io/safetensors.ts";

const MODEL = fileURLToPath(new URL("../../../shared/models/stories260K/", import.meta.url));

// Abbreviated copies of the published config.json files (fields that matter here).
const LLAMA31_8B = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 4096, intermediate_size: 14336,
  num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256,
  max_position_embeddings: 131072, rms_norm_eps: 1e-5, rope_theta: 500000.0, hidden_act: "silu",
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
  tie_word_embeddings: false, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], torch_dtype: "bfloat16",
};
const LLAMA2_7B = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 4096, intermediate_size: 11008,
  num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000,
  max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_scaling: null, bos_token_id: 1, eos_token_id: 2, torch_dtype: "float16",
};
const MISTRAL_7B = {
  architectures: ["MistralForCausalLM"], model_type: "mistral", hidden_size: 4096, intermediate_size: 14336,
  num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000, sliding_window: 4096,
  rms_norm_eps: 1e-5, rope_theta: 10000.0, max_position_embeddings: 32768, torch_dtype: "bfloat16",
};
const QWEN2_05B = {
  architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_size: 896, intermediate_size: 4864,
  num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, rope_theta: 1000000.0,
  rms_norm_eps: 1e-6, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768, max_position_embeddings: 32768,
};
const TINYLLAMA = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 2048, intermediate_size: 5632,
  num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000, rms_norm_eps: 1e-5,
};
const SMOLLM_135M = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 576, intermediate_size: 1536,
  num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, vocab_size: 49152, tie_word_embeddings: true,
  rope_theta: 10000.0, rms_norm_eps: 1e-5, max_position_embeddings: 2048,
};

describe("parseConfig", () => {
  it("stories260K", async () => {
    const c = await loadConfig(MODEL);
    expect(c).toMatchObject({
      modelType: "llama", architecture: "LlamaForCausalLM", hiddenSize: 64, intermediateSize: 172, numLayers: 5,
      numHeads: 8, numKvHeads: 4, headDim: 8, vocabSize: 512, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null,
      tieWordEmbeddings: true, qkvBias: false, bosTokenId: 1, eosTokenIds: [2], torchDtype: "float32",
    });
    expect(parameterCount(c)).toBe(260_032); // the llama2.c README's count
  });

  it("Llama 3.1 with llama3 rope scaling, GQA", () => {
    const c = parseConfig(LLAMA31_8B, "config.json");
    expect(c.headDim).toBe(128);
    expect(c.numKvHeads).toBe(8);
    expect(c.ropeScaling).toEqual({ type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(parameterCount(c)).toBe(8_030_261_248);
  });

  it("Llama 2, Mistral, Qwen2 (biases), TinyLlama, SmolLM", () => {
    expect(parameterCount(parseConfig(LLAMA2_7B, "c"))).toBe(6_738_415_616);
    const m = parseConfig(MISTRAL_7B, "c");
    expect(m).toMatchObject({ modelType: "mistral", slidingWindow: 4096, qkvBias: false, tieWordEmbeddings: false });
    const q = parseConfig(QWEN2_05B, "c");
    expect(q).toMatchObject({ modelType: "qwen2", headDim: 64, qkvBias: true, oBias: false, slidingWindow: null, tieWordEmbeddings: true });
    expect(parameterCount(q)).toBe(494_032_768);
    expect(expectedTensors(q).some((t) => t.name === "model.layers.0.self_attn.k_proj.bias" && t.shape[0] === 128)).toBe(true);
    expect(parseConfig(TINYLLAMA, "c")).toMatchObject({ numKvHeads: 4, headDim: 64, maxPositionEmbeddings: 2048, rmsNormEps: 1e-5 });
    expect(parameterCount(parseConfig(SMOLLM_135M, "c"))).toBe(134_515_008);
  });

  it("unsupported model_type / architecture / rope type list what is supported", () => {
    const e = (() => { try { parseConfig({ ...LLAMA2_7B, model_type: "gpt2" }, "cfg.json"); } catch (x) { return x; } })() as UnsupportedModelError;
    expect(e).toBeInstanceOf(UnsupportedModelError);
    expect(e).toBeInstanceOf(InputError);
    expect(e.file).toBe("cfg.json");
    expect(e.field).toBe("model_type");
    expect(e.message).toMatch(/'gpt2'; supported: llama, mistral, qwen2/);
    expect(() => parseConfig({ ...LLAMA2_7B, architectures: ["LlamaForSequenceClassification"] }, "c")).toThrow(/supported: LlamaForCausalLM/);
    expect(() => parseConfig({ ...LLAMA2_7B, rope_scaling: { type: "yarn", factor: 4 } }, "c")).toThrow(/rope_scaling.rope_type.*supported: default \(none\), linear, llama3/);
    expect(() => parseConfig({ ...LLAMA2_7B, hidden_act: "gelu" }, "c")).toThrow(UnsupportedModelError);
  });

  it("missing or bad required fields name the field", () => {
    for (const key of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "model_type"]) {
      const cfg: Record<string, unknown> = { ...LLAMA2_7B };
      delete cfg[key];
      let err: unknown;
      try { parseConfig(cfg, "config.json"); } catch (x) { err = x; }
      expect(err, key).toBeInstanceOf(InputError);
      expect((err as InputError).field).toBe(key);
      expect((err as InputError).file).toBe("config.json");
    }
    expect(() => parseConfig({ ...LLAMA2_7B, num_key_value_heads: 5 }, "c")).toThrow(/does not divide/);
    expect(() => parseConfig({ ...LLAMA2_7B, hidden_size: -1 }, "c")).toThrow(/positive integer/);
    expect(() => parseConfig({ ...LLAMA2_7B, hidden_size: 64.5 }, "c")).toThrow(/hidden_size/);
    expect(() => parseConfig({ ...LLAMA2_7B, rms_norm_eps: "1e-5" }, "c")).toThrow(/rms_norm_eps/);
    expect(() => parseConfig({ ...LLAMA31_8B, rope_scaling: { rope_type: "llama3", factor: 8 } }, "c")).toThrow(/rope_scaling.low_freq_factor/);
  });

  it("loadConfig on a missing folder names config.json", async () => {
    await expect(loadConfig("/nonexistent-model")).rejects.toThrow(/config.json/);
  });
});

describe("tensor roles", () => {
  it("maps names both ways", () => {
    expect(tensorRole("model.layers.3.self_attn.q_proj.weight")).toEqual({ layer: 3, role: "q_proj", param: "weight" });
    expect(tensorRole("model.layers.0.self_attn.v_proj.bias")).toEqual({ layer: 0, role: "v_proj", param: "bias" });
    expect(tensorRole("model.layers.12.mlp.down_proj.weight")).toEqual({ layer: 12, role: "down_proj", param: "weight" });
    expect(tensorRole("model.layers.1.post_attention_layernorm.weight")).toEqual({ layer: 1, role: "post_attention_layernorm", param: "weight" });
    expect(tensorRole("lm_head.weight")).toEqual({ layer: null, role: "lm_head", param: "weight" });
    expect(tensorRole("model.layers.0.mlp.q_proj.weight")).toBeNull();
    expect(tensorRole("model.layers.0.self_attn.rotary_emb.inv_freq")).toBeNull();
    const c = parseConfig(QWEN2_05B, "c");
    for (const e of expectedTensors(c)) expect(tensorName(tensorRole(e.name)!)).toBe(e.name);
  });

  it("stories260K holds exactly the expected tensors (tied: no lm_head)", async () => {
    const c = await loadConfig(MODEL);
    const ck = await SafetensorsCheckpoint.open(MODEL);
    const infos = ck.infos();
    expect(checkTensors(c, infos, ck.source)).toEqual([]);
    expect(infos.reduce((a, t) => a + t.numel, 0)).toBe(parameterCount(c));
    const missing = infos.filter((t) => t.name !== "model.layers.4.mlp.up_proj.weight");
    expect(() => checkTensors(c, missing, ck.source)).toThrow(/model.layers.4.mlp.up_proj.weight.*missing/);
    const wrong = infos.map((t) => (t.name === "model.norm.weight" ? { ...t, shape: [65] } : t));
    expect(() => checkTensors(c, wrong, ck.source)).toThrow(/model.norm.weight.*\[65\]/);
    expect(checkTensors(c, [...infos, { name: "extra.weight", shape: [1] }], ck.source)).toEqual(["extra.weight"]);
    expect(path.basename(ck.source)).toBe("model.safetensors");
    await ck.close();
  });
});
