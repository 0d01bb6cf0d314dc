// io/data.ts — calibration and evaluation text -> token blocks ready for upload.
// Inputs: a plain-text file (documents separated by blank lines), a JSONL file (one object per line
// with a string "text"), or a folder of them (*.txt, *.md, *.jsonl; sorted by name, not recursive).
// Every document is tokenized on its own with one BOS in front.
//   calibration: AutoAWQ-style — shuffle documents (seeded), skip ones longer than L tokens,
//                concatenate, cut the first n*L tokens into n blocks of L: (n, L) row-major.
//   evaluation:  documents in file order, concatenated, cut into non-overlapping windows of L;
//                the incomplete tail is dropped (and counted).
// Not here: the tokenizer itself (io/tokenizer.ts) and the statistics/perplexity (quant/, eval/).

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { InputError, UsageError } from "../errors.ts";
import { rng } from "../common/random.ts";

export interface Document {
  /** File (and line for JSONL) it came from, for error messages. */
  readonly source: string;
  readonly text: string;
}

/** Token ids [n, L] row-major (u32, as the GPU reads them). */
export interface TokenBlocks {
  readonly tokens: Uint32Array;
  /** number of blocks */
  readonly n: number;
  /** tokens per block */
  readonly L: number;
  /** documents used / tokens left over (tail or beyond n*L) */
  readonly docsUsed: number;
  readonly tokensDropped: number;
}

/** Anything with the TextTokenizer encode signature. */
export interface Encoder {
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): number[];
}

const TEXT_EXT = new Set([".txt", ".text", ".md"]);
const JSONL_EXT = new Set([".jsonl", ".ndjson"]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Plain text -> documents: split on blank lines (whitespace-only lines count as blank), trimmed, empty dropped. */
export function splitPlainText(text: string): string[] {
  return text.split(/\r?\n[ \t\r]*\r?\n(?:[ \t\r]*\r?\n)*/).map((d) => d.trim()).filter((d) => d.length > 0);
}

/** JSONL text -> the "text" field of each non-blank line; a bad line is an InputError naming it. */
export function parseJsonl(text: string, file: string): Document[] {
  const out: Document[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new InputError(file, `line ${i + 1}`, `not valid JSON (${(e as Error).message})`, "each line of a .jsonl file is one JSON object");
    }
    const t = typeof v === "object" && v !== null ? (v as Record<string, unknown>).text : undefined;
    if (typeof t !== "string") {
      throw new InputError(file, `line ${i + 1}.text`, "missing or not a string", 'each line must look like {"text": "..."}');
    }
    if (t.trim() !== "") out.push({ source: `${file}:${i + 1}`, text: t });
  }
  return out;
}

/** A .txt/.md/.jsonl file or a folder of them -> documents in file order. */
export async function readDocuments(p: string): Promise<Document[]> {
  let st;
  try {
    st = await fsp.stat(p);
  } catch {
    throw new InputError(p, undefined, "not found", "pass a .txt (blank-line separated documents), a .jsonl with a \"text\" field, or a folder of them");
  }
  if (!st.isDirectory()) return readFileDocs(p, true);
  const names = (await fsp.readdir(p)).sort();
  const docs: Document[] = [];
  let files = 0;
  for (const n of names) {
    const ext = path.extname(n).toLowerCase();
    if (!TEXT_EXT.has(ext) && !JSONL_EXT.has(ext)) continue;
    const f = path.join(p, n);
    if (!(await fsp.stat(f)).isFile()) continue;
    files++;
    docs.push(...(await readFileDocs(f, false)));
  }
  if (files === 0) throw new InputError(p, undefined, "no .txt, .md or .jsonl file in this folder");
  if (docs.length === 0) throw new InputError(p, undefined, "the files hold no text");
  return docs;
}

async function readFileDocs(file: string, mustHaveText: boolean): Promise<Document[]> {
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(file);
  } catch {
    throw new InputError(file, undefined, "cannot read");
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new InputError(file, undefined, "not valid UTF-8 text", "convert the file to UTF-8");
  }
  const docs = JSONL_EXT.has(path.extname(file).toLowerCase())
    ? parseJsonl(text, file)
    : splitPlainText(text).map((t) => ({ source: file, text: t }));
  if (mustHaveText && docs.length === 0) throw new InputError(file, undefined, "the file holds no text");
  return docs;
}

/** Documents [k] -> token ids [k][len_i], each with one BOS in front (and no EOS). */
export function tokenizeDocuments(tok: Encoder, docs: readonly Document[]): number[][] {
  return docs.map((d) => tok.encode(d.text, { bos: true, eos: false }));
}

/** Seeded uniform [0, 1) stream (mulberry32, the project's one PRNG). */
export const seededRandom = rng;

/**
 * Tokenized documents [k][len_i] -> calibration blocks (n, L). AutoAWQ's recipe: documents shuffled
 * by `seed` (Fisher-Yates), those longer than L tokens skipped (unless skipLonger is false), the rest
 * concatenated until n*L tokens are collected, then cut. Too little text is an InputError.
 */
export function packCalibration(
  docs: readonly (readonly number[])[],
  opts: { n: number; L: number; seed: number; skipLonger?: boolean; source?: string; options?: CalibOptionNames },
): TokenBlocks {
  const { n, L, seed } = opts;
  if (!Number.isSafeInteger(n) || n <= 0 || !Number.isSafeInteger(L) || L <= 0) {
    throw new UsageError(`packCalibration: n and L must be positive integers (got n=${n}, L=${L})`);
  }
  const order = docs.map((_, i) => i);
  const rand = seededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const need = n * L;
  const tokens = new Uint32Array(need);
  let have = 0;
  let used = 0;
  let overflow = 0;
  for (const i of order) {
    const d = docs[i];
    if (d.length === 0 || ((opts.skipLonger ?? true) && d.length > L)) continue;
    const take = Math.min(d.length, need - have);
    tokens.set(d.slice(0, take), have);
    have += take;
    overflow = d.length - take;
    used++;
    if (have === need) break;
  }
  if (have < need) {
    const o = opts.options ?? { samples: "--samples", seqLen: "--seq-len" };
    const fit = Math.floor(have / L);
    throw new InputError(opts.source ?? "calibration data", "calibration",
      `the text has ${have} usable tokens, but ${n} blocks × ${L} tokens (${o.samples} × ${o.seqLen}) need ${need}`,
      `give more text, or lower ${o.samples}${fit > 0 ? ` (at most ${fit} blocks of ${L} fit this text)` : ""} or ${o.seqLen}` +
        ((opts.skipLonger ?? true) ? ` (documents longer than ${L} tokens are skipped)` : ""));
  }
  return { tokens, n, L, docsUsed: used, tokensDropped: overflow };
}

/** Option names of a command's calibration counts, for messages. */
export interface CalibOptionNames {
  readonly samples: string;
  readonly seqLen: string;
}

/**
 * packCalibration that first skips documents longer than L (AutoAWQ's rule) and, when that leaves
 * too little text, packs every document instead; the error of the second attempt is the one shown.
 */
export function packCalibrationFallback(
  docs: readonly (readonly number[])[],
  opts: { n: number; L: number; seed: number; source?: string; options?: CalibOptionNames },
): TokenBlocks {
  try {
    return packCalibration(docs, opts);
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    return packCalibration(docs, { ...opts, skipLonger: false });
  }
}

/**
 * Tokenized documents [k][len_i] -> evaluation windows (n, L): all documents in order, concatenated,
 * cut into floor(total / L) non-overlapping windows; the tail shorter than L is dropped.
 */
export function evalWindows(docs: readonly (readonly number[])[], L: number, source = "evaluation data"): TokenBlocks {
  if (!Number.isSafeInteger(L) || L <= 0) throw new UsageError(`evalWindows: L must be a positive integer (got ${L})`);
  const total = docs.reduce((a, d) => a + d.length, 0);
  const n = Math.floor(total / L);
  if (n === 0) throw new InputError(source, "evaluation", `${total} tokens is less than one window of ${L}`, "give more text or a shorter --seqlen");
  const tokens = new Uint32Array(n * L);
  let at = 0;
  for (const d of docs) {
    if (at >= tokens.length) break;
    const take = Math.min(d.length, tokens.length - at);
    tokens.set(d.slice(0, take), at);
    at += take;
  }
  return { tokens, n, L, docsUsed: docs.length, tokensDropped: total - n * L };
}
