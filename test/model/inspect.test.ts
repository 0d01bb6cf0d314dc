// test/model/inspect.test.ts — `wgq inspect` data on stories260K (HF folder and our GGUF of it),
// the size estimates on hand-computed shapes, and the text table.

import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { promises as fsp, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { estimateSizes, formatBytes, formatSummary, inspectModel } from "../../src/model/inspect.ts";
import { exportGGUF } from "../../src/io/gguf.ts";
import { SafetensorsCheckpoint } from "../../src/io/safetensors.ts";
import { loadConfig } from "../../src/model/config.ts";
import { InputError } from "../../src/errors.ts";

const MODEL = fileURLToPath(new URL("../../../shared/models/stories260K/", import.meta.url));
let tmp: string;
beforeAll(async () => { tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-inspect-")); });
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

describe("inspectModel", () => {
  it("stories260K (HF folder)", async () => {
    const s = await inspectModel(MODEL);
    expect(s).toMatchObject({
      format: "safetensors", files: 1, architecture: "LlamaForCausalLM", modelType: "llama", layers: 5, hiddenSize: 64,
      intermediateSize: 172, heads: 8, kvHeads: 4, headDim: 8, vocabSize: 512, contextLength: 512, tieWordEmbeddings: true,
      parameters: 260_032, linearParameters: 226_560, dtype: "F32", dtypes: { F32: 260_032 }, sizeOnDisk: 1_044_992,
    });
    expect(s.estimates.fp16).toBe(2 * 260_032);
    // linears: per layer q,o [64,64], k,v [32,64], gate,up [172,64], down [64,172]
    const int8Linear = 5 * (2 * (64 * 64 + 128) + 2 * (32 * 64 + 64) + 2 * (172 * 64 + 344) + (64 * 172 + 128));
    expect(s.estimates.int8).toBe(int8Linear + 2 * (260_032 - 226_560));
    expect(s.estimates.int4g128).toBeLessThan(s.estimates.int8);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s); // --json is the same object
    const table = formatSummary(s);
    expect(table).toMatch(/^model +.*stories260K.*safetensors, 1 file/m);
    expect(table).toMatch(/^parameters +260,032 \(226,560 in linear layers\)$/m);
    expect(table).toMatch(/^size on disk +1\.04 MB$/m);
    expect(table).toMatch(/^at int4 g128 +/m);
    expect(table).toMatch(/GQA 2:1/);
  });

  it("the GGUF of it gives the same summary except format and sizes", async () => {
    const dest = path.join(tmp, "s.gguf");
    const ck = await SafetensorsCheckpoint.open(MODEL);
    await exportGGUF(await loadConfig(MODEL), ck, {
      json: JSON.parse(readFileSync(path.join(MODEL, "tokenizer.json"), "utf8")),
      config: JSON.parse(readFileSync(path.join(MODEL, "tokenizer_config.json"), "utf8")), file: "tokenizer.json",
    }, dest);
    await ck.close();
    const a = await inspectModel(MODEL);
    const b = await inspectModel(dest);
    expect(b.format).toBe("gguf");
    const { path: _p1, format: _f1, sizeOnDisk: _s1, ...ra } = a;
    const { path: _p2, format: _f2, sizeOnDisk: _s2, ...rb } = b;
    expect(rb).toEqual(ra);
    expect(b.sizeOnDisk).toBe((await fsp.stat(dest)).size);
  });

  it("a 7B-shaped model: 13.5 GB fp16 -> about 3.9 GB at int4 g128", () => {
    const tensors = [{ name: "model.embed_tokens.weight", shape: [32000, 4096], dtype: "F16" }, { name: "lm_head.weight", shape: [32000, 4096], dtype: "F16" }];
    for (let l = 0; l < 32; l++) {
      for (const r of ["q_proj", "k_proj", "v_proj", "o_proj"]) tensors.push({ name: `model.layers.${l}.self_attn.${r}.weight`, shape: [4096, 4096], dtype: "F16" });
      tensors.push({ name: `model.layers.${l}.mlp.gate_proj.weight`, shape: [11008, 4096], dtype: "F16" });
      tensors.push({ name: `model.layers.${l}.mlp.up_proj.weight`, shape: [11008, 4096], dtype: "F16" });
      tensors.push({ name: `model.layers.${l}.mlp.down_proj.weight`, shape: [4096, 11008], dtype: "F16" });
    }
    const e = estimateSizes(tensors);
    expect(formatBytes(e.fp16)).toBe("13.5 GB");
    expect(e.int4g128 / 1e9).toBeCloseTo(0.52 * 6.476 + 2 * 0.262, 1); // notes: 6.476 B linear params at 4.156 bits + fp16 emb/head
  });

  it("bad paths", async () => {
    await expect(inspectModel(path.join(tmp, "nope.gguf"))).rejects.toBeInstanceOf(InputError);
    await expect(inspectModel(path.join(tmp, "nope"))).rejects.toThrow(/neither a model folder nor a .gguf/);
  });
});
