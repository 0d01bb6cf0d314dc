// test/io/gguf.test.ts — stories260K exported HF -> GGUF by our writer and read back: identical
// tensors (q/k permutation undone), same config, same tokenizer ids; q/k rows match llama2.c's own
// layout; every bad-header case named by issue 3; random byte mutations give only InputError.

import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { promises as fsp, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { InputError, UnsupportedModelError } from "../../src/errors.ts";
import {
  GGUFFile, GGUFWriter, GGUF_MAGIC, GGUF_TYPE, configFromGGUF, exportGGUF, hfNameOf, permuteQK, spmTokenizerJson,
  tokenizerFromGGUF, tokenizerJsonFromGGUF, type GGUFValue,
} from "../../src/io/gguf.ts";
import { SafetensorsCheckpoint } from "../../src/io/safetensors.ts";
import { TextTokenizer } from "../../src/io/tokenizer.ts";
import { loadConfig } from "../../src/model/config.ts";
import { f32ArrayToF16 } from "../../src/ref/f16.ts";

const SHARED = fileURLToPath(new URL("../../../shared/", import.meta.url));
const MODEL = path.join(SHARED, "models/stories260K");
const FIXTURE = fileURLToPath(new URL("../fixtures/stories260K_tokens.json", import.meta.url));
const golden = JSON.parse(readFileSync(FIXTURE, "utf8")) as { cases: { name: string; text: string; ids: number[] }[] };

let tmp: string;
let gguf32: string;
let gguf16: string;
const readJson = (f: string) => JSON.parse(readFileSync(path.join(MODEL, f), "utf8"));

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-gguf-"));
  const c = await loadConfig(MODEL);
  const ck = await SafetensorsCheckpoint.open(MODEL);
  const tokenizer = { json: readJson("tokenizer.json"), config: readJson("tokenizer_config.json"), file: path.join(MODEL, "tokenizer.json") };
  gguf32 = path.join(tmp, "stories260K.gguf");
  gguf16 = path.join(tmp, "stories260K-f16.gguf");
  await exportGGUF(c, ck, tokenizer, gguf32, { name: "stories260K" });
  await exportGGUF(c, ck, tokenizer, gguf16, { name: "stories260K", dtype: "F16" });
  await ck.close();
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe("stories260K through our GGUF", () => {
  it("has llama.cpp's names, metadata and layout", async () => {
    const g = await GGUFFile.open(gguf32);
    expect(g.version).toBe(3);
    expect(g.get("general.architecture")).toBe("llama");
    expect(g.int("llama.block_count")).toBe(5);
    expect(g.info("token_embd.weight").ne).toEqual([64, 512]);
    expect(g.info("blk.0.attn_k.weight").ne).toEqual([64, 32]);
    expect(g.tensors.has("output.weight")).toBe(false);
    for (const t of g.tensors.values()) expect((t.offset - g.dataStart) % 32).toBe(0);
    expect(g.dataStart % 32).toBe(0);
    await g.close();
  });

  it("config from GGUF metadata equals config.json's", async () => {
    const g = await GGUFFile.open(gguf32);
    expect(configFromGGUF(g)).toEqual(await loadConfig(MODEL));
    await g.close();
  });

  it("every tensor reads back bit-identical to the HF checkpoint (F32), q/k un-permuted", async () => {
    const g = await GGUFFile.open(gguf32);
    const ck = await SafetensorsCheckpoint.open(MODEL);
    expect(g.hfNames().sort()).toEqual(ck.names().sort());
    for (const n of ck.names()) {
      const a = await ck.read(n);
      const b = await g.readHF(n);
      expect(b.shape, n).toEqual(a.shape);
      expect(b.dtype, n).toBe(a.dtype);
      expect(Buffer.from(b.data.buffer).equals(Buffer.from(a.data.buffer)), n).toBe(true);
    }
    await ck.close();
    await g.close();
  });

  it("stored q/k rows are llama2.c's original rows (the permutation goes the right way)", async () => {
    const g = await GGUFFile.open(gguf32);
    const bin = readFileSync(path.join(MODEL, "llama2c/stories260K.bin"));
    const f = new Float32Array(bin.buffer.slice(bin.byteOffset + 28, bin.byteOffset + bin.length));
    const D = 64, L = 5, V = 512, KV = 32;
    const wq = V * D + L * D; // token_embedding, rms_att
    const wk = wq + L * D * D;
    for (const l of [0, 4]) {
      const q = (await g.read(`blk.${l}.attn_q.weight`)).data as Float32Array;
      const k = (await g.read(`blk.${l}.attn_k.weight`)).data as Float32Array;
      expect([...q]).toEqual([...f.subarray(wq + l * D * D, wq + (l + 1) * D * D)]);
      expect([...k]).toEqual([...f.subarray(wk + l * KV * D, wk + (l + 1) * KV * D)]);
    }
    await g.close();
  });

  it("F16 export reads back as the f16 rounding of the HF weights", async () => {
    const g = await GGUFFile.open(gguf16);
    const ck = await SafetensorsCheckpoint.open(MODEL);
    expect(g.int("general.file_type")).toBe(1);
    for (const n of ["model.layers.2.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight"]) {
      const want = f32ArrayToF16((await ck.read(n, "f32")).data as Float32Array);
      const got = await g.readHF(n);
      expect(got.dtype).toBe("F16");
      expect([...(got.data as Uint16Array)]).toEqual([...want]);
    }
    await ck.close();
    await g.close();
  });

  it("tokenizer from GGUF arrays: same merges as tokenizer.json, golden ids, same decode", async () => {
    const g = await GGUFFile.open(gguf32);
    const tk = tokenizerFromGGUF(g);
    const hf = await TextTokenizer.fromHF(MODEL);
    const { tokenizerJson } = tokenizerJsonFromGGUF(g);
    expect((tokenizerJson.model as { merges: unknown }).merges).toEqual(readJson("tokenizer.json").model.merges);
    expect(tk.bosId).toBe(1);
    expect(tk.eosId).toBe(2);
    expect(tk.addBos).toBe(true);
    for (const c of golden.cases) {
      expect(tk.encode(c.text), c.name).toEqual(c.ids);
      expect(tk.decode(c.ids), c.name).toBe(c.text);
    }
    for (const s of ["  two  spaces\tand tab\n\nnewlines", "héllo wörld 😀 世界", "", " "]) {
      expect(tk.encode(s)).toEqual(hf.encode(s));
      expect(tk.decode(tk.encode(s))).toBe(hf.decode(hf.encode(s)));
    }
    await g.close();
  });

  it("SpmConverter merges from the original tok512.bin scores equal tokenizer.json's merges", () => {
    const b = readFileSync(path.join(MODEL, "llama2c/tok512.bin"));
    const pieces: string[] = [];
    const scores = new Float32Array(512);
    let o = 4;
    for (let i = 0; i < 512; i++) {
      scores[i] = b.readFloatLE(o);
      const n = b.readInt32LE(o + 4);
      pieces.push(b.subarray(o + 8, o + 8 + n).toString("utf8").replaceAll(" ", "▁"));
      o += 8 + n;
    }
    pieces[1] = "<s>";
    pieces[2] = "</s>";
    const types = Int32Array.from(pieces, (p, i) => (i === 0 ? 2 : i < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(p) ? 6 : 1));
    const { tokenizerJson } = spmTokenizerJson(pieces, scores, types, { bos: 1, eos: 2, unk: 0, addBos: true, addEos: false });
    const hf = readJson("tokenizer.json");
    expect((tokenizerJson.model as { merges: unknown }).merges).toEqual(hf.model.merges);
    expect((tokenizerJson.model as { vocab: unknown }).vocab).toEqual(hf.model.vocab);
  });

  it("names map both ways", () => {
    expect(hfNameOf("blk.3.ffn_down.weight")).toBe("model.layers.3.mlp.down_proj.weight");
    expect(hfNameOf("blk.0.attn_norm.weight")).toBe("model.layers.0.input_layernorm.weight");
    expect(hfNameOf("blk.0.attn_q.bias")).toBe("model.layers.0.self_attn.q_proj.bias");
    expect(hfNameOf("output.weight")).toBe("lm_head.weight");
    expect(hfNameOf("rope_freqs.weight")).toBeNull();
  });

  it("permuteQK is a bijection and its own inverse", () => {
    const x = Float32Array.from({ length: 16 * 3 }, (_, i) => i);
    const g = permuteQK(x, [16, 3], 2, "to-gguf");
    expect([...g.subarray(0, 6)]).toEqual([0, 1, 2, 12, 13, 14]); // row 0 then row 4 (hd 8: pairs (0,4))
    expect([...permuteQK(g, [16, 3], 2, "from-gguf")]).toEqual([...x]);
  });
});

// --- bad input ---------------------------------------------------------------------------------

/** A small valid GGUF: metadata {general.architecture, general.alignment, an array}, tensors a F32 [2,3], tensor_b F16 [4]. */
async function smallGGUF(): Promise<Uint8Array> {
  const p = path.join(tmp, `small-${Math.random().toString(36).slice(2)}.gguf`);
  const meta: [string, GGUFValue][] = [
    ["general.architecture", { type: GGUF_TYPE.STRING, value: "llama" }],
    ["general.alignment", { type: GGUF_TYPE.UINT32, value: 32 }],
    ["some.array", { type: GGUF_TYPE.ARRAY, value: { elemType: GGUF_TYPE.INT32, values: new Int32Array([1, -2, 3]) } }],
  ];
  const w = await GGUFWriter.create(p, meta, [{ name: "a", type: "F32", shape: [2, 3] }, { name: "tensor_b", type: "F16", shape: [4] }]);
  await w.write("a", new Float32Array([1, 2, 3, 4, 5, 6]));
  await w.write("tensor_b", new Uint16Array([0x3c00, 0, 0, 0]));
  await w.close();
  const b = new Uint8Array(await fsp.readFile(p));
  await fsp.rm(p);
  return b;
}

function indexOf(hay: Uint8Array, needle: string): number {
  const n = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + n.length <= hay.length; i++) {
    for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
    return i;
  }
  throw new Error(`${needle} not found`);
}

let k = 0;
async function expectGGUFError(bytes: Uint8Array, field: string | RegExp, detail: RegExp): Promise<void> {
  const p = path.join(tmp, `bad${k++}.gguf`);
  await fsp.writeFile(p, bytes);
  const e = await (async () => {
    try {
      const g = await GGUFFile.open(p);
      for (const n of g.tensors.keys()) await g.read(n);
      await g.close();
    } catch (x) {
      return x;
    }
  })();
  expect(e).toBeInstanceOf(InputError);
  const ie = e as InputError;
  expect(ie.file).toBe(p);
  if (typeof field === "string") expect(ie.field).toBe(field);
  else expect(ie.field).toMatch(field);
  expect(ie.message).toMatch(detail);
}

const setU32 = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(at, v, true);
const setU64 = (b: Uint8Array, at: number, v: bigint) => new DataView(b.buffer, b.byteOffset).setBigUint64(at, v, true);

describe("bad GGUF: typed errors naming file and field", () => {
  it("the small file is valid", async () => {
    const p = path.join(tmp, "ok.gguf");
    await fsp.writeFile(p, await smallGGUF());
    const g = await GGUFFile.open(p);
    expect([...((await g.read("a")).data as Float32Array)]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...(g.array("some.array")!.values as Int32Array)]).toEqual([1, -2, 3]);
    expect((await g.read("tensor_b", "f32")).data[0]).toBe(1);
    await g.close();
  });

  it("bad magic, unsupported version", async () => {
    const b = await smallGGUF();
    b[0] = 0x47 ^ 1;
    await expectGGUFError(b, "magic", /not a GGUF/);
    for (const v of [1, 4, 0xffffffff]) {
      const c = await smallGGUF();
      setU32(c, 4, v);
      await expectGGUFError(c, "version", new RegExp(`unsupported GGUF version ${v}; supported: 2, 3`));
    }
  });

  it("absurd tensor / kv counts, string and array lengths", async () => {
    let b = await smallGGUF();
    setU64(b, 8, 1n << 40n);
    await expectGGUFError(b, "tensor_count", /absurd count/);
    b = await smallGGUF();
    setU64(b, 16, 1n << 62n);
    await expectGGUFError(b, "metadata_kv_count", /absurd count/);
    b = await smallGGUF();
    setU64(b, 24, 1n << 50n); // first key's length
    await expectGGUFError(b, "metadata key #0", /absurd count/);
    b = await smallGGUF();
    const arr = indexOf(b, "some.array") + "some.array".length;
    setU64(b, arr + 8, 1n << 60n); // type u32 (ARRAY), elem type u32, then count
    await expectGGUFError(b, "some.array", /absurd count/);
    b = await smallGGUF();
    const val = indexOf(b, "general.architecture") + "general.architecture".length + 4;
    setU64(b, val, 0xffffffffffffn); // the string value's length
    await expectGGUFError(b, "general.architecture", /absurd count/);
  });

  it("unknown value type, bad alignment, unknown ggml type, too many dims", async () => {
    let b = await smallGGUF();
    setU32(b, indexOf(b, "general.architecture") + 20, 99);
    await expectGGUFError(b, "general.architecture", /unknown value type 99/);
    b = await smallGGUF();
    setU32(b, indexOf(b, "general.alignment") + 17 + 4, 24);
    await expectGGUFError(b, "general.alignment", /power of two/);
    b = await smallGGUF();
    const tb = indexOf(b, "tensor_b") + 8; // n_dims u32, ne[0] u64, type u32, offset u64
    setU32(b, tb + 4 + 8, 77);
    await expectGGUFError(b, "tensor_b", /unknown ggml type 77/);
    b = await smallGGUF();
    setU32(b, tb, 9);
    await expectGGUFError(b, "tensor_b", /n_dims 9/);
  });

  it("misaligned data, data past the end, overlapping tensors, truncated header", async () => {
    let b = await smallGGUF();
    const tb = indexOf(b, "tensor_b") + 8 + 4 + 8 + 4;
    setU64(b, tb, 36n);
    await expectGGUFError(b, "tensor_b", /not a multiple of the alignment 32/);
    b = await smallGGUF();
    setU64(b, tb, 1n << 40n);
    await expectGGUFError(b, "tensor_b", /past the end/);
    b = await smallGGUF();
    setU64(b, tb, 0n);
    await expectGGUFError(b, /^(a|tensor_b)$/, /overlaps/);
    b = await smallGGUF();
    await expectGGUFError(b.slice(0, b.length - 4), "tensor_b", /past the end/);
    await expectGGUFError(b.slice(0, 40), "tensor_count", /absurd count/); // counts checked against what is left
    await expectGGUFError(b.slice(0, indexOf(b, "tensor_b") + 4), "tensor #1 name", /truncated/);
    await expectGGUFError(b.slice(0, 6), "version", /truncated/);
  });

  it("quantized tensors are recognised but not readable yet; non-llama tokenizers and archs are refused", async () => {
    const b = await smallGGUF();
    const tb = indexOf(b, "tensor_b") + 8;
    setU32(b, tb + 4, 32); // ne[0] = 32 (one Q8_0 block = 34 bytes fits in the padding before EOF? no: data at end)
    setU32(b, tb + 4 + 8, 8);
    const p = path.join(tmp, "q8.gguf");
    await fsp.writeFile(p, new Uint8Array([...b, ...new Uint8Array(64)]));
    const g = await GGUFFile.open(p);
    expect(g.info("tensor_b").typeName).toBe("Q8_0");
    expect(g.info("tensor_b").byteLength).toBe(34);
    await expect(g.read("tensor_b")).rejects.toThrow(/Q8_0 cannot be read yet/);
    expect(() => tokenizerFromGGUF(g)).toThrow(UnsupportedModelError);
    expect(() => configFromGGUF(g)).toThrow(/llama.embedding_length.*missing/);
    await g.close();
  });

  it("property: 500 random byte mutations of a valid GGUF give only InputError", async () => {
    const base = await smallGGUF();
    const p = path.join(tmp, "fuzz.gguf");
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.option(fc.nat(), { freq: 4 }),
        async (edits, cut) => {
          let b = base.slice();
          for (const [pos, v] of edits) b[pos % b.length] = v;
          if (cut !== null) b = b.slice(0, cut % (b.length + 1));
          await fsp.writeFile(p, b);
          try {
            const g = await GGUFFile.open(p);
            try {
              for (const n of g.tensors.keys()) await g.read(n, "f32").catch((e) => { if (!(e instanceof InputError)) throw e; });
            } finally {
              await g.close();
            }
          } catch (e) {
            if (!(e instanceof InputError)) throw e;
            rejected++;
          }
        },
      ),
      { numRuns: 500, seed: 31337 },
    );
    expect(rejected).toBeGreaterThan(50);
  }, 30_000);

  it("GGUF magic constant is 'GGUF'", () => {
    expect(new TextDecoder().decode(new Uint8Array(new Uint32Array([GGUF_MAGIC]).buffer))).toBe("GGUF");
  });
});
