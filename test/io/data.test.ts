// test/io/data.test.ts — document readers (text, JSONL, folder), BOS per document, seeded AutoAWQ
// packing and non-overlapping eval windows, on TinyStories with the stories260K tokenizer.

import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../../src/errors.ts";
import {
  evalWindows, packCalibration, parseJsonl, readDocuments, seededRandom, splitPlainText, tokenizeDocuments,
} from "../../src/io/data.ts";
import { TextTokenizer } from "../../src/io/tokenizer.ts";

const SHARED = fileURLToPath(new URL("../../../shared/", import.meta.url));
const DATA = path.join(SHARED, "data/tinystories-valid-sample.txt");
const MODEL = path.join(SHARED, "models/stories260K");

let tmp: string;
beforeAll(async () => { tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-data-")); });
afterAll(async () => { await fsp.rm(tmp, { recursive: true, force: true }); });

describe("reading documents", () => {
  it("plain text splits on blank lines", () => {
    expect(splitPlainText("a b\nc\n\nd\n \n\n\ne  \r\n\r\nf\n")).toEqual(["a b\nc", "d", "e", "f"]);
    expect(splitPlainText("\n\n")).toEqual([]);
  });

  it("the TinyStories sample has 200 stories", async () => {
    const docs = await readDocuments(DATA);
    expect(docs.length).toBe(200);
    expect(docs[0].text.startsWith("Once upon a time, in a big forest")).toBe(true);
    expect(docs[0].source).toBe(DATA);
  });

  it("JSONL: text field per line; bad lines name the line", () => {
    expect(parseJsonl('{"text":"a"}\n\n{"text":"b","id":2}\n', "x.jsonl").map((d) => d.text)).toEqual(["a", "b"]);
    const e1 = (() => { try { parseJsonl('{"text":"a"}\n{oops', "x.jsonl"); } catch (x) { return x; } })() as InputError;
    expect(e1).toBeInstanceOf(InputError);
    expect(e1.file).toBe("x.jsonl");
    expect(e1.field).toBe("line 2");
    expect(() => parseJsonl('{"content":"a"}', "x.jsonl")).toThrow(/line 1.text/);
  });

  it("a folder: text and JSONL files in name order, other files ignored", async () => {
    const dir = await fsp.mkdtemp(path.join(tmp, "f-"));
    await fsp.writeFile(path.join(dir, "b.jsonl"), '{"text":"third"}\n');
    await fsp.writeFile(path.join(dir, "a.txt"), "first\n\nsecond\n");
    await fsp.writeFile(path.join(dir, "c.bin"), "ignored");
    expect((await readDocuments(dir)).map((d) => d.text)).toEqual(["first", "second", "third"]);
    const empty = await fsp.mkdtemp(path.join(tmp, "e-"));
    await expect(readDocuments(empty)).rejects.toBeInstanceOf(InputError);
    await expect(readDocuments(path.join(tmp, "missing.txt"))).rejects.toThrow(/not found/);
    await fsp.writeFile(path.join(dir, "bad.txt"), new Uint8Array([0x61, 0xff, 0x62]));
    await expect(readDocuments(path.join(dir, "bad.txt"))).rejects.toThrow(/UTF-8/);
  });
});

describe("packing", () => {
  it("BOS in front of every document", async () => {
    const tok = await TextTokenizer.fromHF(MODEL);
    const docs = tokenizeDocuments(tok, (await readDocuments(DATA)).slice(0, 5));
    for (const d of docs) {
      expect(d[0]).toBe(1);
      expect(d.slice(1)).not.toContain(1);
    }
  });

  it("calibration: n blocks of L, deterministic by seed, AutoAWQ skips long documents", async () => {
    const tok = await TextTokenizer.fromHF(MODEL);
    const docs = tokenizeDocuments(tok, await readDocuments(DATA));
    const a = packCalibration(docs, { n: 16, L: 256, seed: 42 });
    const b = packCalibration(docs, { n: 16, L: 256, seed: 42 });
    const c = packCalibration(docs, { n: 16, L: 256, seed: 7 });
    expect(a.tokens.length).toBe(16 * 256);
    expect(a.n).toBe(16);
    expect(Buffer.from(a.tokens.buffer).equals(Buffer.from(b.tokens.buffer))).toBe(true);
    expect(Buffer.from(a.tokens.buffer).equals(Buffer.from(c.tokens.buffer))).toBe(false);
    // every BOS starts a document no longer than L, and the stream is made of whole documents
    const starts = [...a.tokens.keys()].filter((i) => a.tokens[i] === 1);
    expect(starts[0]).toBe(0);
    expect(starts.length).toBe(a.docsUsed);
    for (let k = 0; k + 1 < starts.length; k++) expect(starts[k + 1] - starts[k]).toBeLessThanOrEqual(256);
    expect(() => packCalibration(docs, { n: 1000, L: 256, seed: 1, source: "ts.txt" })).toThrow(/ts.txt.*need 256000/);
    expect(() => packCalibration(docs, { n: 1, L: 8, seed: 1 })).toThrow(InputError); // all skipped
    expect(packCalibration(docs, { n: 1, L: 8, seed: 1, skipLonger: false }).tokens.length).toBe(8);
  });

  it("seeded shuffle is a fixed stream", () => {
    const r = seededRandom(42);
    const xs = [r(), r(), r()];
    const r2 = seededRandom(42);
    expect([r2(), r2(), r2()]).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it("eval windows: non-overlapping, in order, tail dropped", () => {
    const docs = [[1, 10, 11, 12], [1, 20, 21], [1, 30, 31, 32, 33]];
    const w = evalWindows(docs, 5);
    expect(w.n).toBe(2);
    expect([...w.tokens]).toEqual([1, 10, 11, 12, 1, 20, 21, 1, 30, 31]);
    expect(w.tokensDropped).toBe(2);
    expect(() => evalWindows(docs, 100)).toThrow(InputError);
  });
});
