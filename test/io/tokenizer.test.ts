// test/io/tokenizer.test.ts — the HF tokenizer of stories260K against golden ids from llama2.c's
// encoder (test/fixtures/stories260K_tokens.json, made by scripts/make_token_fixture.ts), BOS/EOS rules.

import { describe, it, expect } from "vitest";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import { InputError } from "../../src/errors.ts";
import { TextTokenizer } from "../../src/io/tokenizer.ts";

const SHARED = fileURLToPath(new URL("../../../shared/", import.meta.url));
const MODEL = path.join(SHARED, "models/stories260K");
const FIXTURE = fileURLToPath(new URL("../fixtures/stories260K_tokens.json", import.meta.url));

interface Fixture {
  magic: string;
  version: number;
  inputs: Record<string, string>;
  cases: { name: string; text: string; ids: number[] }[];
}
const fixture = JSON.parse(readFileSync(FIXTURE, "utf8")) as Fixture;

describe("golden ids (llama2.c encoder over tok512.bin)", () => {
  it("the fixture is current: magic, version, input hashes, texts", () => {
    expect(fixture.magic).toBe("WGQ-TOKEN-FIXTURE");
    expect(fixture.version).toBe(1);
    for (const [rel, sha] of Object.entries(fixture.inputs)) {
      expect(createHash("sha256").update(readFileSync(path.join(SHARED, rel))).digest("hex"), rel).toBe(sha);
    }
    const stories = readFileSync(path.join(SHARED, "data/tinystories-valid-sample.txt"), "utf8").replace(/\n$/, "").split("\n\n");
    expect(fixture.cases.length).toBe(21);
    expect(fixture.cases[0].text).toBe("Once upon a time, there was a little girl named Lily.");
    expect(fixture.cases.slice(1).map((c) => c.text)).toEqual(stories.slice(0, 20));
  });

  it("tokenizer.json encodes every case to the golden ids and decodes back to the text", async () => {
    const tok = await TextTokenizer.fromHF(MODEL);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.addBos).toBe(true);
    expect(tok.addEos).toBe(false);
    expect(tok.vocabSize).toBe(512);
    for (const c of fixture.cases) {
      expect(tok.encode(c.text), c.name).toEqual(c.ids);
      expect(tok.decode(c.ids), c.name).toBe(c.text);
    }
    expect(fixture.cases[0].ids).toEqual([1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]);
  });
});

describe("BOS / EOS", () => {
  it("explicit options override the defaults", async () => {
    const tok = await TextTokenizer.fromHF(MODEL);
    const body = tok.encode("Lily", { bos: false });
    expect(tok.encode("Lily")).toEqual([1, ...body]);
    expect(tok.encode("Lily", { bos: true, eos: true })).toEqual([1, ...body, 2]);
    expect(tok.decode([1, ...body, 2], { skipSpecial: false })).toMatch(/^<s>.*Lily<\/s>$/);
    expect(tok.encode("")).toEqual([1]);
    expect(tok.idToToken(1)).toBe("<s>");
    expect(tok.tokenToId("</s>")).toBe(2);
  });

  it("without add_bos_token, BOS follows tokenizer.json's post-processor", () => {
    const tj = JSON.parse(readFileSync(path.join(MODEL, "tokenizer.json"), "utf8"));
    const tc = JSON.parse(readFileSync(path.join(MODEL, "tokenizer_config.json"), "utf8"));
    delete tc.add_bos_token;
    expect(TextTokenizer.fromJSON(tj, tc, "t").addBos).toBe(true);
    expect(TextTokenizer.fromJSON({ ...tj, post_processor: null }, tc, "t").addBos).toBe(false);
    const noSpecial = { ...tc, bos_token: null, eos_token: null };
    const t = TextTokenizer.fromJSON({ ...tj, post_processor: null }, noSpecial, "t", { bosId: 1 });
    expect(t.bosId).toBe(1);
    expect(() => t.encode("a", { eos: true })).toThrow(InputError);
    expect(() => TextTokenizer.fromJSON(tj, { ...tc, bos_token: "<nope>" }, "t")).toThrow(/bos_token/);
  });

  it("missing or malformed tokenizer.json is an InputError naming the file", async () => {
    const e = await TextTokenizer.fromHF("/nonexistent").catch((x) => x);
    expect(e).toBeInstanceOf(InputError);
    expect(e.file).toBe("/nonexistent/tokenizer.json");
    expect(() => TextTokenizer.fromJSON({ model: { type: "Nope" } }, {}, "bad.json")).toThrow(InputError);
  });
});
