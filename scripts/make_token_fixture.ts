// scripts/make_token_fixture.ts — writes test/fixtures/stories260K_tokens.json: golden token ids for
// stories260K, made by an independent reference — llama2.c's own encoder (run.c `encode`, ported
// line for line below) over the model's original SentencePiece vocabulary llama2c/tok512.bin — not by
// the @huggingface/tokenizers path the tests check. Run once; rerun only if the inputs change:
//
//   npx tsx scripts/make_token_fixture.ts
//
// Cases: "Once upon a time, there was a little girl named Lily." and the first 20 stories of
// ../shared/data/tinystories-valid-sample.txt (stories separated by one blank line), each encoded
// with BOS (id 1) and no EOS, as llama2.c's `run` encodes a prompt. The file starts with a magic and
// a version, and records the sha256 of both inputs so a stale fixture fails loudly.

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import * as path from "node:path";

export const FIXTURE_MAGIC = "WGQ-TOKEN-FIXTURE";
export const FIXTURE_VERSION = 1;

const SHARED = fileURLToPath(new URL("../../shared/", import.meta.url));
const TOK = path.join(SHARED, "models/stories260K/llama2c/tok512.bin");
const DATA = path.join(SHARED, "data/tinystories-valid-sample.txt");
const OUT = fileURLToPath(new URL("../test/fixtures/stories260K_tokens.json", import.meta.url));

/** llama2.c tokenizer file: i32 max_token_length, then per token f32 score, i32 len, bytes. */
interface Llama2cVocab {
  pieces: string[]; // byte strings (latin1: one char per byte), ' ' where SentencePiece has '▁'
  scores: Float32Array;
  lookup: Map<string, number>;
}

function readTok(file: string, vocabSize: number): Llama2cVocab {
  const b = readFileSync(file);
  let o = 4;
  const pieces: string[] = [];
  const scores = new Float32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    scores[i] = b.readFloatLE(o);
    const len = b.readInt32LE(o + 4);
    pieces.push(b.subarray(o + 8, o + 8 + len).toString("latin1"));
    o += 8 + len;
  }
  if (o !== b.length) throw new Error(`${file}: ${b.length - o} trailing bytes; vocab size is not ${vocabSize}`);
  const lookup = new Map<string, number>();
  pieces.forEach((p, i) => { if (!lookup.has(p)) lookup.set(p, i); });
  return { pieces, scores, lookup };
}

/** run.c encode(t, text, bos=1, eos=0): UTF-8 code points -> ids (byte fallback +3), then greedy merges by score. */
export function llama2cEncode(v: Llama2cVocab, text: string): number[] {
  const bytes = Buffer.from(text, "utf8");
  const tokens: number[] = [1];
  if (bytes.length > 0) tokens.push(v.lookup.get(" ")!);
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if ((c & 0xc0) !== 0x80) buf = [];
    buf.push(c);
    if (i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = v.lookup.get(Buffer.from(buf).toString("latin1"));
    if (id !== undefined) tokens.push(id);
    else for (const x of buf) tokens.push(x + 3);
    buf = [];
  }
  for (;;) {
    let bestScore = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = v.lookup.get(v.pieces[tokens[i]] + v.pieces[tokens[i + 1]]);
      if (id !== undefined && v.scores[id] > bestScore) {
        bestScore = v.scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

/** The first `n` stories of the TinyStories sample (split on blank lines, as its README states). */
export function firstStories(text: string, n: number): string[] {
  return text.replace(/\n$/, "").split("\n\n").slice(0, n);
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function main(): void {
  const vocab = readTok(TOK, 512);
  const dataBytes = readFileSync(DATA);
  const texts = ["Once upon a time, there was a little girl named Lily.", ...firstStories(dataBytes.toString("utf8"), 20)];
  const cases = texts.map((text, i) => ({ name: i === 0 ? "lily" : `story_${i - 1}`, text, ids: llama2cEncode(vocab, text) }));
  const fixture = {
    magic: FIXTURE_MAGIC,
    version: FIXTURE_VERSION,
    model: "stories260K",
    how:
      "ids from llama2.c's encode() (run.c, ported in scripts/make_token_fixture.ts) over llama2c/tok512.bin, " +
      "bos=1 eos=0; regenerate with `npx tsx scripts/make_token_fixture.ts`",
    inputs: {
      "models/stories260K/llama2c/tok512.bin": sha256(readFileSync(TOK)),
      "data/tinystories-valid-sample.txt": sha256(dataBytes),
    },
    cases,
  };
  mkdirSync(path.dirname(OUT), { recursive: true });
  // one case per line: reviewable diffs without one id per line
  const head = JSON.stringify({ ...fixture, cases: [] }, null, 1).replace(/\[\]\n}$/, "[\n");
  writeFileSync(OUT, head + cases.map((c) => "  " + JSON.stringify(c)).join(",\n") + "\n ]\n}\n");
  console.log(`wrote ${OUT}: ${cases.length} cases, ${cases.reduce((a, c) => a + c.ids.length, 0)} tokens`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
