// test/fuzz/readers.test.ts — the reader findings of bench/fuzz.ts, one test each: what used to hang
// or be accepted from a damaged file now returns promptly or is a typed InputError naming the file
// and the field.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fsp, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { InputError } from "../../src/errors.ts";
import { GGUFFile, configFromGGUF, exportGGUF, tokenizerFromGGUF } from "../../src/io/gguf.ts";
import { SafetensorsCheckpoint, SafetensorsFile } from "../../src/io/safetensors.ts";
import { TextTokenizer } from "../../src/io/tokenizer.ts";
import { loadConfig } from "../../src/model/config.ts";
import { MODEL_DIR, ggufBuild, ggufParse, stAssemble, stParse } from "../../bench/fuzz_lib.ts";

let tmp: string;
let gguf: Uint8Array;
const json = (f: string) => JSON.parse(readFileSync(path.join(MODEL_DIR, f), "utf8")) as Record<string, any>;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-fuzz-readers-"));
  const ck = await SafetensorsCheckpoint.open(MODEL_DIR);
  const file = path.join(tmp, "base.gguf");
  await exportGGUF(await loadConfig(MODEL_DIR), ck, { json: json("tokenizer.json"), config: json("tokenizer_config.json"), file: "tokenizer.json" }, file);
  await ck.close();
  gguf = new Uint8Array(readFileSync(file));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** A model folder with stories260K's tokenizer files, edited. */
async function tokenizerDir(name: string, edit: { tj?: (tj: Record<string, any>) => void; tc?: (tc: Record<string, any>) => void; tjBytes?: Uint8Array }): Promise<string> {
  const dir = path.join(tmp, name);
  await fsp.mkdir(dir);
  const tj = json("tokenizer.json");
  const tc = json("tokenizer_config.json");
  edit.tj?.(tj);
  edit.tc?.(tc);
  await fsp.writeFile(path.join(dir, "tokenizer.json"), edit.tjBytes ?? JSON.stringify(tj));
  await fsp.writeFile(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
  await fsp.writeFile(path.join(dir, "config.json"), readFileSync(path.join(MODEL_DIR, "config.json")));
  return dir;
}

async function inputError(p: Promise<unknown>): Promise<InputError> {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(InputError);
  return e as InputError;
}

describe("GGUF", () => {
  it("a 100,000-character token builds the tokenizer in well under a second (was quadratic: a hang)", async () => {
    const g = ggufParse(gguf);
    const tokens = g.kvs.find((k) => k.key === "tokenizer.ggml.tokens")!.value as { values: unknown[] };
    tokens.values[300] = "▁".repeat(100_000);
    const file = path.join(tmp, "huge-token.gguf");
    await fsp.writeFile(file, ggufBuild(g).bytes);
    const f = await GGUFFile.open(file);
    const t0 = performance.now();
    const tok = tokenizerFromGGUF(f);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(tok.encode("Once upon a time").length).toBeGreaterThan(1);
    await f.close();
  });

  it("a metadata key with a byte order mark in front is not that key", async () => {
    const g = ggufParse(gguf);
    g.kvs.find((k) => k.key === "general.architecture")!.key = "\ufeffgeneral.architecture";
    const file = path.join(tmp, "bom-key.gguf");
    await fsp.writeFile(file, ggufBuild(g).bytes);
    const f = await GGUFFile.open(file);
    expect(() => configFromGGUF(f)).toThrow(/general\.architecture.*missing/);
    await f.close();
  });
});

describe("safetensors", () => {
  it("a header with a byte order mark in front is refused", async () => {
    const b = new Uint8Array(readFileSync(path.join(MODEL_DIR, "model.safetensors")));
    const { text, data } = stParse(b);
    const file = path.join(tmp, "bom.safetensors");
    await fsp.writeFile(file, stAssemble("\ufeff" + text.trimEnd(), data));
    const e = await inputError(SafetensorsFile.open(file));
    expect(e.file).toBe(file);
    expect(e.message).toMatch(/does not start with '\{'/);
  });

  it("model.safetensors.index.json that is not UTF-8 is refused", async () => {
    const dir = path.join(tmp, "index-utf8");
    await fsp.mkdir(dir);
    const file = path.join(dir, "model.safetensors.index.json");
    await fsp.writeFile(file, new Uint8Array([...Buffer.from('{"metadata": {"note": "a'), 0xc0, 0x80, ...Buffer.from('b"}, "weight_map": {}}')]));
    const e = await inputError(SafetensorsCheckpoint.open(dir));
    expect(e.file).toBe(file);
    expect(e.message).toMatch(/not valid UTF-8/);
  });
});

describe("tokenizer.json / tokenizer_config.json", () => {
  it("a vocabulary id of 1e9 loads at once (the library's get_vocab walked every id) and counts as 1e9 + 1 ids", async () => {
    const dir = await tokenizerDir("id-1e9", { tj: (tj) => { tj.model.vocab["▁zzz"] = 1e9; } });
    const t0 = performance.now();
    const tok = await TextTokenizer.fromHF(dir);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(tok.vocabSize).toBe(1e9 + 1);
  });

  it("stories260K's own tokenizer counts 512 ids", async () => {
    expect((await TextTokenizer.fromHF(MODEL_DIR)).vocabSize).toBe(512);
  });

  const cases: [string, Parameters<typeof tokenizerDir>[1], string, RegExp][] = [
    ["added token id -1", { tj: (tj) => { tj.added_tokens[1].id = -1; } }, "added_tokens[1]", /not \{id/],
    ["added token id 'x'", { tj: (tj) => { tj.added_tokens[0].id = "x"; } }, "added_tokens[0]", /not \{id/],
    ["added token content 5", { tj: (tj) => { tj.added_tokens[2].content = 5; } }, "added_tokens[2]", /not \{id/],
    ["vocabulary id -1", { tj: (tj) => { tj.model.vocab["▁zzz"] = -1; } }, 'model.vocab["▁zzz"]', /not a non-negative integer/],
    ["vocabulary id 7.5", { tj: (tj) => { tj.model.vocab["▁zzz"] = 7.5; } }, 'model.vocab["▁zzz"]', /not a non-negative integer/],
    ["empty vocabulary", { tj: (tj) => { tj.model.vocab = {}; } }, "model.vocab", /empty/],
    ["model type 5", { tj: (tj) => { tj.model.type = 5; } }, "model.type", /not a tokenizer model/],
    ["invalid UTF-8", { tjBytes: new Uint8Array([...Buffer.from('{"model": {"type": "BPE", "vocab": {"a'), 0xff, ...Buffer.from('": 0}, "merges": []}}')]) }, "", /not valid UTF-8/],
    ["bos_token 1", { tc: (tc) => { tc.bos_token = 1; } }, "bos_token", /neither a token string/],
    ["bos_token {content: 5}", { tc: (tc) => { tc.bos_token = { content: 5 }; } }, "bos_token", /neither a token string/],
    ["add_bos_token 'yes'", { tc: (tc) => { tc.add_bos_token = "yes"; } }, "add_bos_token", /true or false/],
  ];
  for (const [name, edit, field, msg] of cases) {
    it(`${name}: InputError naming the file and [${field || "no field"}]`, async () => {
      const dir = await tokenizerDir(name.replace(/\W+/g, "-"), edit);
      const e = await inputError(TextTokenizer.fromHF(dir));
      expect(e.file).toBe(path.join(dir, edit.tc ? "tokenizer_config.json" : "tokenizer.json"));
      expect(e.field ?? "").toBe(field);
      expect(e.message).toMatch(msg);
    });
  }
});
