// bench/fuzz_lib.ts — structure-aware fuzzing of every input webgpu-quant reads, shared by
// bench/fuzz.ts (the large run, figures) and test/fuzz/fuzz.test.ts (a small seeded run in npm test).
//
// Cases mutate real files: stories260K's model.safetensors, the same tensors as shards with
// model.safetensors.index.json, a GGUF export of it, its config.json and tokenizer.json, and the
// calibration text. Each case = (file kind, one mutation, one target): a reader run in-process, or
// `wgq inspect` / `wgq quantize` (RTN int4; AWQ with --samples 2 --seq-len 32) run in-process.
// A case is fully determined by (seed, id), so any finding can be replayed alone (--case).
//
// Outcomes: typed (a WgqError with exit 1/2 — for CLI runs exit 1/2/3 with a plain `error:` line),
// accepted (ran to the end), crash (anything else thrown, "this is unexpected", a dead worker),
// hang (over the target's time limit), invalid-output (quantize wrote its output folder although the
// oracle below says the input is invalid). The oracle is independent of src/: its own safetensors
// parser and config rules, @huggingface/tokenizers for tokenizer.json, its own text splitting.
// This file imports nothing from src/ except the f16 codec used to build mutants.

import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";
import { f32ToF16Bits } from "../src/common/half.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SHARED = path.resolve(ROOT, "../shared");
export const MODEL_DIR = path.join(SHARED, "models/stories260K");
export const TEXT_FILE = path.join(SHARED, "data/tinystories-valid-sample.txt");

// --- kinds, targets, outcomes --------------------------------------------------------------------

export const KINDS = ["safetensors", "sharded", "gguf", "config", "tokenizer", "text"] as const;
export type Kind = (typeof KINDS)[number];
export const TARGETS = ["safetensors", "sharded", "gguf", "config", "tokenizer", "data", "inspect", "quantize", "quantize-awq"] as const;
export type Target = (typeof TARGETS)[number];
export const OUTCOMES = ["typed", "accepted", "crash", "hang", "invalid-output"] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const isCli = (t: Target): boolean => t === "inspect" || t === "quantize" || t === "quantize-awq";
/** Time limit per case: a reader 5 s, a CLI run 20 s. */
export const TIME_LIMIT_MS = (t: Target): number => (isCli(t) ? 20_000 : 5_000);
/** AWQ calibration of the quantize-awq cases: --samples 2 --seq-len 32. */
export const AWQ_SAMPLES = 2;
export const AWQ_SEQ_LEN = 32;

export interface CaseResult {
  readonly id: number;
  readonly kind: Kind;
  readonly target: Target;
  readonly mutation: string;
  readonly outcome: Outcome;
  /** Oracle: is the input valid for this target (model-level for quantize, file-level for the
   * safetensors readers)? null where no oracle applies. */
  readonly valid: boolean | null;
  readonly why?: string;
  /** CLI exit code (null for a signal/kill), undefined for reader cases. */
  readonly exitCode?: number | null;
  readonly message?: string;
  /** A partial output folder (.out.partial-*) was left behind by a failed quantize. */
  readonly partialLeft?: boolean;
  readonly ms: number;
}

// --- seeded choices ------------------------------------------------------------------------------

export class Rand {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  /** mulberry32: uniform [0, 1). */
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(this.a ^ (this.a >>> 15), this.a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** integer in [lo, hi] */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  weighted<T>(xs: readonly (readonly [T, number])[]): T {
    const total = xs.reduce((a, [, w]) => a + w, 0);
    let u = this.next() * total;
    for (const [x, w] of xs) {
      u -= w;
      if (u < 0) return x;
    }
    return xs[xs.length - 1][0];
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** (run seed, case id) -> the case's own seed. */
export function caseSeed(seed: number, id: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(id + 1, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  return h >>> 0;
}

// --- the corpus: the real files every mutant starts from -----------------------------------------

/** Files of the corpus folder (built by fuzz_pool.ts buildCorpus, read by every worker). */
export const MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] as const;

export interface Corpus {
  /** stories260K's folder, file name -> bytes */
  readonly model: ReadonlyMap<string, Uint8Array>;
  /** the same tensors as shards: model-0000i-of-0000n.safetensors and model.safetensors.index.json */
  readonly shards: ReadonlyMap<string, Uint8Array>;
  /** GGUF export of stories260K, F32 and F16 tensors */
  readonly gguf: Uint8Array;
  readonly gguf16: Uint8Array;
  /** the calibration text, whole and its first documents */
  readonly text: Uint8Array;
  readonly textShort: Uint8Array;
}

export function loadCorpus(dir: string): Corpus {
  const rd = (p: string) => new Uint8Array(fs.readFileSync(path.join(dir, p)));
  const model = new Map(MODEL_FILES.map((f) => [f, rd(path.join("model", f))] as const));
  const shards = new Map(fs.readdirSync(path.join(dir, "shards")).sort().map((f) => [f, rd(path.join("shards", f))] as const));
  return { model, shards, gguf: rd("stories260K.gguf"), gguf16: rd("stories260K-f16.gguf"), text: rd("calib.txt"), textShort: rd("calib-short.txt") };
}

/** The first `n` blank-line separated documents of a text. */
export function firstDocuments(text: string, n: number): string {
  return text.split(/\n\s*\n/).slice(0, n).join("\n\n") + "\n";
}

// --- byte and JSON helpers -----------------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();
/** Strict UTF-8; a byte order mark is kept (and then fails JSON.parse, as in Python's json). */
const decStrict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const RAW = "\u0000raw:";
/** A JSON value written verbatim by jsonText (1e400, 18446744073709551616, NaN, …). */
const raw = (text: string): string => `${RAW}${text}\u0000`;
/** JSON.stringify that writes raw() markers verbatim. */
function jsonText(v: unknown, indent?: number): string {
  return JSON.stringify(v, null, indent).replace(/"\\u0000raw:(.*?)\\u0000"/g, (_, t: string) => t.replace(/\\"/g, '"'));
}
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const u8 = (s: string): Uint8Array => enc.encode(s);

/** Byte-level mutations any file kind gets some of. */
function randomBytes(r: Rand, b: Uint8Array, headerBias = 0): { desc: string; bytes: Uint8Array } {
  const out = b.slice();
  const op = r.pick(["set", "flip", "zero-run", "splice"] as const);
  const where = () => (headerBias > 0 && r.chance(0.6) ? r.int(Math.min(headerBias, out.length)) : r.int(out.length));
  if (op === "set") {
    const k = r.between(1, 8);
    const at: number[] = [];
    for (let i = 0; i < k; i++) {
      const p = where();
      out[p] = r.int(256);
      at.push(p);
    }
    return { desc: `random bytes: ${k} bytes set at ${at.slice(0, 4).join(", ")}${k > 4 ? ", …" : ""}`, bytes: out };
  }
  if (op === "flip") {
    const k = r.between(1, 16);
    for (let i = 0; i < k; i++) out[where()] ^= 1 << r.int(8);
    return { desc: `random bytes: ${k} bit flips`, bytes: out };
  }
  if (op === "zero-run") {
    const p = where();
    const n = r.between(1, 64);
    out.fill(r.pick([0, 0xff, 0x20]), p, p + n);
    return { desc: `random bytes: run of ${n} bytes overwritten at ${p}`, bytes: out };
  }
  const from = r.int(b.length), to = where(), n = r.between(1, 256);
  const chunk = b.slice(from, from + n);
  return { desc: `random bytes: ${chunk.length} bytes from ${from} spliced in at ${to}`, bytes: concat(b.subarray(0, to), chunk, b.subarray(to)) };
}

/** Text-level JSON damage, for config.json, tokenizer.json, index.json. */
function jsonTextMutation(r: Rand, text: string): { desc: string; bytes: Uint8Array } {
  const op = r.pick(["truncate", "drop-brace", "trailing-comma", "bom", "empty", "literal", "comment", "deep", "whitespace", "invalid-utf8", "single-quotes", "nan", "dup-key"] as const);
  switch (op) {
    case "truncate": {
      const n = r.int(text.length);
      return { desc: `json: truncated at ${n} of ${text.length} chars`, bytes: u8(text.slice(0, n)) };
    }
    case "drop-brace": {
      const i = text.lastIndexOf("}");
      return { desc: "json: last '}' removed", bytes: u8(text.slice(0, i) + text.slice(i + 1)) };
    }
    case "trailing-comma": {
      const i = text.lastIndexOf("}");
      return { desc: "json: trailing comma before the last '}'", bytes: u8(text.slice(0, i).trimEnd() + ",\n" + text.slice(i)) };
    }
    case "bom":
      return { desc: "json: UTF-8 byte order mark in front", bytes: concat(new Uint8Array([0xef, 0xbb, 0xbf]), u8(text)) };
    case "empty":
      return { desc: "json: empty file", bytes: new Uint8Array(0) };
    case "literal": {
      const v = r.pick(["null", "[]", "42", '"config"', "true", "[{}]"]);
      return { desc: `json: the file is ${v}`, bytes: u8(v) };
    }
    case "comment":
      return { desc: "json: a // comment in front", bytes: u8("// comment\n" + text) };
    case "deep": {
      const n = r.pick([1000, 100_000]);
      return { desc: `json: a key holding ${n} nested arrays`, bytes: u8(text.replace("{", `{"deep": ${"[".repeat(n)}${"]".repeat(n)},`)) };
    }
    case "whitespace": {
      const n = r.pick([1 << 20, 8 << 20]);
      return { desc: `json: ${n} bytes of whitespace in front`, bytes: u8(" ".repeat(n) + text) };
    }
    case "invalid-utf8": {
      const b = u8(text);
      const q = [...b.keys()].filter((i) => b[i] === 0x22);
      const at = q.length ? r.pick(q) + 1 : r.int(b.length);
      const bad = r.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82]]);
      return { desc: `json: invalid UTF-8 (${bad.map((x) => x.toString(16)).join(" ")}) at byte ${at}`, bytes: concat(b.subarray(0, at), new Uint8Array(bad), b.subarray(at)) };
    }
    case "single-quotes":
      return { desc: "json: single quotes instead of double", bytes: u8(text.replace(/"/g, "'")) };
    case "nan":
      return { desc: "json: a NaN literal", bytes: u8(text.replace("{", '{"x": NaN,')) };
    case "dup-key": {
      const m = /"(\w+)":\s*([^,\n{}[\]]+)/.exec(text);
      if (!m) return { desc: "json: unchanged", bytes: u8(text) };
      return { desc: `json: key '${m[1]}' appears twice (first "bogus")`, bytes: u8(text.replace("{", `{"${m[1]}": "bogus",`)) };
    }
  }
}

// --- safetensors: structure ----------------------------------------------------------------------

export interface StTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

const ST_DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};
const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/** A well-formed safetensors file -> (header object in file order, header text, data region). */
export function stParse(b: Uint8Array): { header: Record<string, any>; text: string; data: Uint8Array } {
  const n = Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(0, true));
  const text = dec.decode(b.subarray(8, 8 + n));
  return { header: JSON.parse(text) as Record<string, any>, text, data: b.subarray(8 + n) };
}

/** Tensors of a well-formed file, in data order, plus its __metadata__. */
export function stTensors(b: Uint8Array): { tensors: StTensor[]; metadata: Record<string, string> | undefined } {
  const { header, data } = stParse(b);
  const tensors: StTensor[] = [];
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    tensors.push({ name, dtype: e.dtype, shape: [...e.shape], data: data.slice(e.data_offsets[0], e.data_offsets[1]) });
  }
  tensors.sort((x, y) => header[x.name].data_offsets[0] - header[y.name].data_offsets[0]);
  return { tensors, metadata: header.__metadata__ };
}

/** (header JSON text or bytes, data) -> file; the length prefix is the header's unless given. */
export function stAssemble(header: string | Uint8Array, data: Uint8Array, len?: bigint): Uint8Array {
  let hb = typeof header === "string" ? u8(header) : header;
  if (typeof header === "string" && hb.length % 8) hb = u8(header + " ".repeat(8 - (hb.length % 8)));
  const lenBytes = new Uint8Array(8);
  new DataView(lenBytes.buffer).setBigUint64(0, len ?? BigInt(hb.length), true);
  return concat(lenBytes, hb, data);
}

/** Tensors -> a consistent file (offsets tiling the data in the given order). */
export function stBuild(tensors: readonly StTensor[], metadata?: Record<string, string>): Uint8Array {
  const h: Record<string, unknown> = {};
  if (metadata) h.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    h[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  return stAssemble(JSON.stringify(h), concat(...tensors.map((t) => t.data)));
}

/** f32 bytes -> bytes of the same values stored as `dtype`. */
function castF32(data: Uint8Array, dtype: string): Uint8Array {
  const f = new Float32Array(data.slice().buffer);
  switch (dtype) {
    case "F16": return new Uint8Array(Uint16Array.from(f, (x) => f32ToF16Bits(x)).buffer);
    case "BF16": return new Uint8Array(Uint16Array.from(new Uint32Array(f.buffer), (x) => x >>> 16).buffer);
    case "F64": return new Uint8Array(Float64Array.from(f).buffer);
    case "I32": return new Uint8Array(Int32Array.from(f, (x) => Math.round(x * 100)).buffer);
    case "I8": return new Uint8Array(Int8Array.from(f, (x) => Math.round(x * 100)).buffer);
    case "U8": return Uint8Array.from(f, (x) => Math.abs(Math.round(x * 100)));
    default: return data.slice();
  }
}

/** Non-finite and extreme f32 bit patterns. */
const F32_NONFINITE: readonly [string, number][] = [["NaN", 0x7fc00000], ["-NaN", 0xffc00000], ["sNaN", 0x7f800001], ["+Inf", 0x7f800000], ["-Inf", 0xff800000]];
const F32_EXTREME: readonly [string, number][] = [["3.4e38", 0x7f7fffff], ["-3.4e38", 0xff7fffff], ["1e-45 (denormal)", 0x00000001], ["-0", 0x80000000], ["65504", 0x477fe000]];

// --- safetensors: mutations ----------------------------------------------------------------------

type Mut = { desc: string; bytes: Uint8Array };

/** One structure-aware (or byte-level) mutation of a well-formed safetensors file. */
export function mutateSafetensors(r: Rand, b: Uint8Array): Mut {
  const { header, text, data } = stParse(b);
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const name = r.pick(names);
  const e = header[name];
  const h = clone(header);
  const withHeader = (desc: string, hh: Record<string, unknown> = h): Mut => ({ desc, bytes: stAssemble(jsonText(hh), data) });
  const op = r.weighted([
    ["dtype", 6], ["dtype-consistent", 4], ["shape", 8], ["shape-same-bytes", 4], ["offsets", 8], ["offsets-swap", 2],
    ["remove-entry", 2], ["remove-tensor", 3], ["rename", 3], ["add-tensor", 4], ["metadata", 3], ["entry-type", 3],
    ["header-len", 4], ["header-text", 5], ["duplicate-key", 2], ["nan", 6], ["finite-extreme", 3], ["bitflip-data", 4],
    ["insert-bytes", 2], ["delete-bytes", 2], ["truncate", 4], ["append", 2], ["random-bytes", 6], ["huge-number", 4],
  ] as const);
  switch (op) {
    case "dtype": {
      const v = r.pick<unknown>(["F16", "BF16", "F64", "I32", "I8", "U8", "BOOL", "I64", "U64", "F8_E4M3", "f32", "float32", "", 7, null, ["F32"], " F32"]);
      h[name].dtype = v;
      return withHeader(`dtype: ${name} F32 -> ${JSON.stringify(v)} (offsets unchanged)`);
    }
    case "dtype-consistent": {
      const { tensors, metadata } = stTensors(b);
      const t = tensors.find((x) => x.name === name)!;
      const to = r.pick(["F16", "BF16", "F64", "I32", "I8", "U8"]);
      t.data = castF32(t.data, to);
      t.dtype = to;
      return { desc: `dtype-consistent: ${name} re-stored as ${to}`, bytes: stBuild(tensors, metadata) };
    }
    case "shape": {
      const s: number[] = e.shape;
      const i = r.int(s.length);
      const v = r.pick<unknown>([s[i] + 1, s[i] - 1, 0, -1, -s[i], 2 ** 31, 2 ** 32 + s[i], 2 ** 53, 1e20, 1.5, `${s[i]}`, null, [s[i]], true]);
      const shape: unknown[] = [...s];
      shape[i] = v;
      const variant = r.pick(["dim", "dim", "dim", "append", "drop", "scalar", "missing", "object"]);
      if (variant === "dim") h[name].shape = shape;
      else if (variant === "append") h[name].shape = [...s, r.pick([1, 2, 0])];
      else if (variant === "drop") h[name].shape = s.slice(1);
      else if (variant === "scalar") h[name].shape = [];
      else if (variant === "missing") delete h[name].shape;
      else h[name].shape = { 0: s[0] };
      return withHeader(`shape: ${name} ${JSON.stringify(s)} -> ${JSON.stringify(h[name].shape) ?? "(missing)"}`);
    }
    case "shape-same-bytes": {
      const s: number[] = e.shape;
      const numel = s.reduce((a, x) => a * x, 1);
      const v = r.pick([[...s].reverse(), [numel], [1, ...s], [...s, 1], s.length === 2 && s[0] % 2 === 0 ? [s[0] / 2, s[1] * 2] : [numel, 1]]);
      h[name].shape = v;
      return withHeader(`shape-same-bytes: ${name} ${JSON.stringify(s)} -> ${JSON.stringify(v)} (same byte length)`);
    }
    case "offsets": {
      const [o0, o1] = e.data_offsets as number[];
      const v = r.pick<unknown>([
        [o0, o1 + 4], [o0 + 4, o1 + 4], [o0 - 4, o1 - 4], [o1, o0], [-4, o1 - o0 - 4], [o0, 2 ** 53], [o0, raw("1e400")], [raw("-0"), o1 - o0],
        [o0, raw("18446744073709551616")], [o0 + 0.5, o1 + 0.5], [`${o0}`, o1], [o0], [o0, o1, 0], null, {}, [o0, o1 + data.length], [0, o1 - o0],
      ]);
      h[name].data_offsets = v;
      return withHeader(`offsets: ${name} ${JSON.stringify([o0, o1])} -> ${jsonText(v)}`);
    }
    case "offsets-swap": {
      const same = names.filter((n) => n !== name && header[n].data_offsets[1] - header[n].data_offsets[0] === e.data_offsets[1] - e.data_offsets[0]);
      const other = same.length ? r.pick(same) : r.pick(names);
      [h[name].data_offsets, h[other].data_offsets] = [h[other].data_offsets, h[name].data_offsets];
      return withHeader(`offsets-swap: data of ${name} <-> ${other}${same.includes(other) ? " (same size)" : ""}`);
    }
    case "remove-entry":
      delete h[name];
      return withHeader(`remove-entry: ${name} left out of the header (its bytes stay)`);
    case "remove-tensor": {
      const { tensors, metadata } = stTensors(b);
      return { desc: `remove-tensor: ${name} and its bytes removed`, bytes: stBuild(tensors.filter((t) => t.name !== name), metadata) };
    }
    case "rename": {
      const other = r.pick(names.filter((n) => n !== name));
      const to = r.pick([name + "s", name.replace("weight", "bias"), name.toUpperCase(), "", "__metadata__", other, name.replace(/layers\.\d+/, "layers.99"), "x".repeat(100_000), name + "\u0000", "模型.weight"]);
      const text2 = text.replace(JSON.stringify(name) + ":", JSON.stringify(to) + ":");
      return { desc: `rename: ${name} -> ${JSON.stringify(to.length > 60 ? to.slice(0, 20) + "…" : to)}`, bytes: stAssemble(text2.trimEnd(), data) };
    }
    case "add-tensor": {
      const { tensors, metadata } = stTensors(b);
      const [extra, shape, dtype] = r.pick<[string, number[], string]>([
        ["lm_head.weight", [512, 64], "F32"], ["lm_head.weight", [64, 512], "F32"], ["lm_head.weight", [512, 64], "I8"],
        ["model.layers.5.self_attn.q_proj.weight", [64, 64], "F32"], ["model.layers.0.self_attn.q_proj.bias", [64], "F32"],
        ["model.layers.0.self_attn.rotary_emb.inv_freq", [4], "F32"], ["extra.tensor", [0], "F32"], ["extra.tensor", [3, 5], "U8"],
        ["model.layers.0.mlp.gate_proj.weight_scale", [1], "F32"],
      ]);
      const numel = shape.reduce((a, x) => a * x, 1);
      const dataBytes = castF32(new Uint8Array(new Float32Array(numel).map((_, i) => Math.sin(i) * 0.05).buffer), dtype);
      const at = r.int(tensors.length + 1);
      tensors.splice(at, 0, { name: extra, dtype, shape, data: dataBytes });
      return { desc: `add-tensor: ${extra} ${dtype} ${JSON.stringify(shape)} at position ${at}`, bytes: stBuild(tensors, metadata) };
    }
    case "metadata": {
      const v = r.pick<unknown>([{ format: 1 }, [], "pt", null, undefined, { format: "pt", note: "x".repeat(1 << 20) }, { a: { b: "c" } }, { format: null }, Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, `${i}`]))]);
      if (v === undefined) delete h.__metadata__;
      else h.__metadata__ = v;
      const shown = v === undefined ? "(removed)" : JSON.stringify(v).slice(0, 50);
      return withHeader(`metadata: __metadata__ -> ${shown}`);
    }
    case "entry-type": {
      const v = r.pick<unknown>([[], "F32", 5, null, {}, { ...e, extra: 1 }, { ...e, dtype: undefined }, { ...e, data_offsets: undefined }, [e]]);
      h[name] = v;
      return withHeader(`entry-type: ${name} -> ${JSON.stringify(v)?.slice(0, 60)}`);
    }
    case "header-len": {
      const n = BigInt(b.length - 8 - data.length);
      const v = r.pick([n - 1n, n + 1n, n + 8n, n - 8n, 0n, 1n, 2n, 8n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n, BigInt(b.length - 8), BigInt(b.length), 100_000_001n]);
      return { desc: `header-len: length prefix ${n} -> ${v}`, bytes: stAssemble(u8(text), data, v) };
    }
    case "header-text": {
      const t = r.pick([
        ["leading whitespace", " " + text.trimEnd()], ["garbage after the JSON in the padding", text.trimEnd() + "x"],
        ["NUL in the padding", text.trimEnd() + "\u0000"], ["trailing comma", text.trimEnd().replace(/}$/, ",}")],
        ["truncated JSON", text.slice(0, r.int(text.length))], ["a JSON array", "[" + text.trimEnd() + "]"],
        ["deep nesting in __metadata__", text.replace('"__metadata__":', `"__deep__":${"[".repeat(50_000)}${"]".repeat(50_000)},"__metadata__":`)],
        ["BOM in front", "\ufeff" + text.trimEnd()], ["key with a lone surrogate escape", text.replace('{"', '{"\\ud800x":0,"')],
      ] as const);
      return { desc: `header-text: ${t[0]}`, bytes: stAssemble(u8(t[1]), data) };
    }
    case "duplicate-key": {
      const other = r.pick(names);
      const entry = r.chance(0.5) ? header[name] : header[other];
      const text2 = text.trimEnd().replace(/}$/, `,${JSON.stringify(name)}:${JSON.stringify(entry)}}`);
      return { desc: `duplicate-key: ${name} appears twice (second ${entry === e ? "identical" : `with ${other}'s entry`})`, bytes: stAssemble(text2, data) };
    }
    case "huge-number": {
      const field = r.pick(["shape", "data_offsets"]);
      const v = r.pick(["1e400", "-1e400", "18446744073709551615", "9007199254740993", "1e-400", "-0.0", "4294967296"]);
      if (field === "shape") h[name].shape = [raw(v), ...e.shape.slice(1)];
      else h[name].data_offsets = [e.data_offsets[0], raw(v)];
      return withHeader(`huge-number: ${name}.${field} gets ${v}`);
    }
    case "nan":
    case "finite-extreme": {
      const out = b.slice();
      const start = b.length - data.length + e.data_offsets[0];
      const numel = (e.data_offsets[1] - e.data_offsets[0]) / 4;
      const [label, bits] = r.pick(op === "nan" ? F32_NONFINITE : F32_EXTREME);
      const k = r.pick([1, 1, 3, numel]);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < Math.min(k, numel); i++) dv.setUint32(start + 4 * (k >= numel ? i : r.int(numel)), bits, true);
      return { desc: `${op}: ${k >= numel ? "every element" : `${k} element(s)`} of ${name} set to ${label}`, bytes: out };
    }
    case "bitflip-data": {
      const out = b.slice();
      const k = r.between(1, 32);
      const start = b.length - data.length;
      for (let i = 0; i < k; i++) out[start + r.int(data.length)] ^= 1 << r.int(8);
      return { desc: `bitflip-data: ${k} random bits of the tensor data flipped`, bytes: out };
    }
    case "insert-bytes": {
      const at = b.length - data.length + r.int(data.length);
      const n = r.pick([1, 3, 4, 8, 4096]);
      return { desc: `insert-bytes: ${n} bytes inserted in the data at byte ${at}`, bytes: concat(b.subarray(0, at), r.bytes(n), b.subarray(at)) };
    }
    case "delete-bytes": {
      const at = b.length - data.length + r.int(data.length);
      const n = r.pick([1, 3, 4, 8, 4096]);
      return { desc: `delete-bytes: ${n} bytes removed from the data at byte ${at}`, bytes: concat(b.subarray(0, at), b.subarray(at + n)) };
    }
    case "truncate": {
      const hdrEnd = b.length - data.length;
      const at = r.pick([0, 4, 7, 8, 9, r.int(hdrEnd), hdrEnd, hdrEnd + 1, hdrEnd + r.int(data.length), b.length - 1]);
      return { desc: `truncate: file cut to ${at} of ${b.length} bytes`, bytes: b.slice(0, at) };
    }
    case "append": {
      const n = r.pick([1, 8, 64, 100_000]);
      return { desc: `append: ${n} bytes after the last tensor`, bytes: concat(b, r.bytes(n)) };
    }
    case "random-bytes":
      return randomBytes(r, b, b.length - data.length);
  }
}

// --- GGUF: structure -----------------------------------------------------------------------------

/** GGUF value types (gguf.md): 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array, 10 u64, 11 i64, 12 f64. */
const G = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STR: 8, ARR: 9, U64: 10, I64: 11, F64: 12 } as const;
const G_SIZE: Readonly<Record<number, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

type GVal = number | bigint | boolean | string | Uint8Array | { elemType: number; values: GVal[] };
export interface GKv {
  key: string;
  /** type tag written */
  type: number;
  value: GVal;
  /** encode the value as this type (a lie about `type` when they differ) */
  as?: number;
}
export interface GTensor {
  name: string | Uint8Array;
  ne: bigint[];
  type: number;
  offset: bigint;
}
export interface GParts {
  magic: number;
  version: number;
  kvs: GKv[];
  tensors: GTensor[];
  alignment: number;
  /** everything from the aligned data start to the end of the file */
  data: Uint8Array;
}

/** A well-formed GGUF (v3, little-endian) -> its parts. */
export function ggufParse(b: Uint8Array): GParts {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const u32 = () => { const v = dv.getUint32(p, true); p += 4; return v; };
  const u64 = () => { const v = dv.getBigUint64(p, true); p += 8; return v; };
  const str = () => { const n = Number(u64()); const s = dec.decode(b.subarray(p, p + n)); p += n; return s; };
  const scalar = (t: number): GVal => {
    const q = p;
    p += G_SIZE[t] ?? 0;
    switch (t) {
      case 0: return dv.getUint8(q);
      case 1: return dv.getInt8(q);
      case 2: return dv.getUint16(q, true);
      case 3: return dv.getInt16(q, true);
      case 4: return dv.getUint32(q, true);
      case 5: return dv.getInt32(q, true);
      case 6: return dv.getFloat32(q, true);
      case 7: return dv.getUint8(q) !== 0;
      case 10: return dv.getBigUint64(q, true);
      case 11: return dv.getBigInt64(q, true);
      case 12: return dv.getFloat64(q, true);
      default: throw new Error(`fuzz: GGUF type ${t} in the corpus`);
    }
  };
  const value = (t: number): GVal => {
    if (t === G.STR) return str();
    if (t !== G.ARR) return scalar(t);
    const et = u32();
    const n = Number(u64());
    const values: GVal[] = [];
    for (let i = 0; i < n; i++) values.push(value(et));
    return { elemType: et, values };
  };
  const magic = u32();
  const version = u32();
  const nT = Number(u64());
  const nKv = Number(u64());
  const kvs: GKv[] = [];
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    kvs.push({ key, type, value: value(type) });
  }
  const tensors: GTensor[] = [];
  for (let i = 0; i < nT; i++) {
    const name = str();
    const nd = u32();
    const ne: bigint[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    tensors.push({ name, ne, type: u32(), offset: u64() });
  }
  const al = kvs.find((k) => k.key === "general.alignment")?.value;
  const alignment = typeof al === "number" ? al : 32;
  const dataStart = Math.ceil(p / alignment) * alignment;
  return { magic, version, kvs, tensors, alignment, data: b.subarray(dataStart) };
}

/** Byte positions of a built GGUF's fields, for raw pokes. */
interface GPositions {
  kvKeyLen: number[];
  kvValue: number[];
  tNameLen: number[];
  tNd: number[];
  dataStart: number;
}

class GSink {
  buf = new Uint8Array(1 << 16);
  len = 0;
  private grow(n: number) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
  }
  put(n: number, f: (dv: DataView, at: number) => void) {
    this.grow(n);
    f(new DataView(this.buf.buffer), this.len);
    this.len += n;
  }
  u32(v: number) { this.put(4, (d, a) => d.setUint32(a, v >>> 0, true)); }
  u64(v: bigint | number) { this.put(8, (d, a) => d.setBigUint64(a, BigInt.asUintN(64, BigInt(v)), true)); }
  bytes(b: Uint8Array) { this.grow(b.length); this.buf.set(b, this.len); this.len += b.length; }
  str(s: string | Uint8Array) { const b = typeof s === "string" ? u8(s) : s; this.u64(b.length); this.bytes(b); }
  value(t: number, v: GVal) {
    if (t === G.ARR) {
      const a = v as { elemType: number; values: GVal[] };
      this.u32(a.elemType);
      this.u64(a.values.length);
      for (const x of a.values) this.value(a.elemType, x);
      return;
    }
    if (t === G.STR) return this.str(v instanceof Uint8Array ? v : String(v));
    const n = Number(typeof v === "boolean" ? Number(v) : v);
    switch (t) {
      case 0: case 7: this.put(1, (d, a) => d.setUint8(a, n & 0xff)); break;
      case 1: this.put(1, (d, a) => d.setInt8(a, n)); break;
      case 2: this.put(2, (d, a) => d.setUint16(a, n, true)); break;
      case 3: this.put(2, (d, a) => d.setInt16(a, n, true)); break;
      case 4: this.u32(n); break;
      case 5: this.put(4, (d, a) => d.setInt32(a, n, true)); break;
      case 6: this.put(4, (d, a) => d.setFloat32(a, n, true)); break;
      case 10: this.u64(BigInt.asUintN(64, BigInt(v as bigint | number))); break;
      case 11: this.put(8, (d, a) => d.setBigInt64(a, BigInt.asIntN(64, BigInt(v as bigint | number)), true)); break;
      case 12: this.put(8, (d, a) => d.setFloat64(a, n, true)); break;
      default: this.u32(n); // an unknown type tag: some 4 bytes
    }
  }
}

/** Parts -> file bytes; counts may be overridden (a lie), the header is padded to `alignment`. */
export function ggufBuild(g: GParts, o: { nTensors?: bigint; nKv?: bigint } = {}): { bytes: Uint8Array; pos: GPositions } {
  const s = new GSink();
  const pos: GPositions = { kvKeyLen: [], kvValue: [], tNameLen: [], tNd: [], dataStart: 0 };
  s.u32(g.magic);
  s.u32(g.version);
  s.u64(o.nTensors ?? BigInt(g.tensors.length));
  s.u64(o.nKv ?? BigInt(g.kvs.length));
  for (const kv of g.kvs) {
    pos.kvKeyLen.push(s.len);
    s.str(kv.key);
    s.u32(kv.type);
    pos.kvValue.push(s.len);
    s.value(kv.as ?? kv.type, kv.value);
  }
  for (const t of g.tensors) {
    pos.tNameLen.push(s.len);
    s.str(t.name);
    pos.tNd.push(s.len);
    s.u32(t.ne.length);
    for (const x of t.ne) s.u64(x);
    s.u32(t.type);
    s.u64(t.offset);
  }
  const al = g.alignment > 0 ? g.alignment : 32;
  const padded = Math.ceil(s.len / al) * al;
  pos.dataStart = padded;
  const head = s.buf.slice(0, s.len);
  return { bytes: concat(head, new Uint8Array(padded - s.len), g.data), pos };
}

const cloneG = (g: GParts): GParts => ({
  ...g,
  kvs: g.kvs.map((k) => ({ ...k, value: cloneGVal(k.value) })),
  tensors: g.tensors.map((t) => ({ ...t, ne: [...t.ne] })),
});
function cloneGVal(v: GVal): GVal {
  if (typeof v === "object" && !(v instanceof Uint8Array)) return { elemType: v.elemType, values: v.values.map(cloneGVal) };
  return v;
}

// --- GGUF: mutations -----------------------------------------------------------------------------

/** Metadata the llama config and tokenizer come from, with the values a damaged file might hold. */
const GGUF_EDITS: readonly [string, readonly [number, GVal][]][] = [
  ["llama.block_count", [[G.U32, 0], [G.U32, 1], [G.U32, 4], [G.U32, 6], [G.U32, 100_000_000], [G.U32, 0xffffffff], [G.I32, -1], [G.F32, 5.5], [G.STR, "5"], [G.U64, 2n ** 63n]]],
  ["llama.embedding_length", [[G.U32, 0], [G.U32, 63], [G.U32, 65], [G.U32, 1 << 30], [G.I32, -64], [G.F64, 64.5]]],
  ["llama.attention.head_count", [[G.U32, 0], [G.U32, 3], [G.U32, 7], [G.U32, 16], [G.U32, 0xffffffff]]],
  ["llama.attention.head_count_kv", [[G.U32, 0], [G.U32, 3], [G.U32, 16], [G.U32, 8]]],
  ["llama.feed_forward_length", [[G.U32, 0], [G.U32, 171], [G.U32, 0xffffffff]]],
  ["llama.context_length", [[G.U32, 0], [G.U32, 0xffffffff], [G.U64, 2n ** 64n - 1n]]],
  ["llama.rope.dimension_count", [[G.U32, 0], [G.U32, 7], [G.U32, 1_000_000]]],
  ["llama.attention.layer_norm_rms_epsilon", [[G.F32, NaN], [G.F32, Infinity], [G.F32, -1], [G.F32, 0], [G.STR, "1e-5"]]],
  ["llama.rope.freq_base", [[G.F32, NaN], [G.F32, 0], [G.F32, -1], [G.F64, 1e308]]],
  ["general.architecture", [[G.STR, "gpt2"], [G.STR, ""], [G.STR, "qwen2"], [G.STR, "llama\u0000"], [G.U32, 1]]],
  ["general.alignment", [[G.U32, 0], [G.U32, 3], [G.U32, 1], [G.U32, 64], [G.U32, 2 ** 31], [G.STR, "32"], [G.F32, 32]]],
  ["general.file_type", [[G.U32, 2], [G.U32, 9999], [G.STR, "F32"]]],
  ["tokenizer.ggml.model", [[G.STR, "gpt2"], [G.STR, "bert"], [G.STR, ""], [G.U32, 0]]],
  ["tokenizer.ggml.bos_token_id", [[G.U32, 512], [G.U32, 0xffffffff], [G.I32, -1], [G.STR, "<s>"]]],
  ["tokenizer.ggml.eos_token_id", [[G.U32, 511], [G.U32, 100_000], [G.F32, 2.5]]],
  ["tokenizer.ggml.unknown_token_id", [[G.U32, 512], [G.I64, -5n]]],
  ["tokenizer.ggml.add_bos_token", [[G.U8, 1], [G.STR, "true"]]],
  ["llama.rope.scaling.type", [[G.STR, "yarn"], [G.STR, "linear"], [G.STR, "none"]]],
  ["llama.rope.scaling.factor", [[G.F32, 0], [G.F32, NaN], [G.F32, 4]]],
];

/** One structure-aware (or byte-level) mutation of a well-formed GGUF. */
export function mutateGguf(r: Rand, b: Uint8Array): Mut {
  const base = ggufParse(b);
  const g = cloneG(base);
  const built = (desc: string, o: { nTensors?: bigint; nKv?: bigint } = {}): Mut => ({ desc, bytes: ggufBuild(g, o).bytes });
  const t = r.pick(g.tensors);
  const tname = String(t.name);
  const kv = r.pick(g.kvs);
  const op = r.weighted([
    ["kv-value", 10], ["kv-type", 3], ["kv-remove", 4], ["kv-dup", 1], ["kv-count", 2], ["tensor-count", 2], ["tensor-dims", 4],
    ["tensor-ne", 5], ["tensor-type", 4], ["tensor-offset", 4], ["tensor-name", 3], ["tensor-remove", 2], ["version", 2], ["magic", 1],
    ["string-len", 3], ["array-count", 3], ["tokenizer", 5], ["nan", 4], ["bitflip-data", 3], ["truncate", 4], ["append", 1],
    ["insert-bytes", 2], ["random-bytes", 6],
  ] as const);
  switch (op) {
    case "kv-value": {
      const [key, vals] = r.pick(GGUF_EDITS);
      const [type, value] = r.pick(vals);
      const i = g.kvs.findIndex((k) => k.key === key);
      if (i >= 0) g.kvs[i] = { key, type, value };
      else g.kvs.push({ key, type, value });
      if (key === "general.alignment" && typeof value === "number" && value > 0 && (value & (value - 1)) === 0) g.alignment = value;
      return built(`kv-value: ${key} = ${String(value)} (type ${type})${i < 0 ? " (added)" : ""}`);
    }
    case "kv-type": {
      const to = r.pick([G.STR, G.ARR, G.U64, G.U8, G.BOOL, 13, 0xffffffff]);
      const i = g.kvs.indexOf(kv);
      g.kvs[i] = { ...kv, type: to, as: kv.as ?? kv.type };
      return built(`kv-type: ${kv.key} type tag ${kv.type} -> ${to} (value bytes unchanged)`);
    }
    case "kv-remove": {
      const key = r.pick(["llama.block_count", "llama.embedding_length", "llama.attention.head_count", "llama.feed_forward_length", "llama.context_length",
        "llama.attention.layer_norm_rms_epsilon", "general.architecture", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.model", kv.key]);
      g.kvs = g.kvs.filter((k) => k.key !== key);
      const lie = r.chance(0.25);
      return built(`kv-remove: ${key} removed${lie ? " (count not updated)" : ""}`, lie ? { nKv: BigInt(base.kvs.length) } : {});
    }
    case "kv-dup":
      g.kvs.push({ ...kv });
      return built(`kv-dup: ${kv.key} twice`);
    case "kv-count": {
      const v = r.pick([BigInt(g.kvs.length + 1), BigInt(g.kvs.length - 1), 0n, 2n ** 64n - 1n, 2n ** 32n]);
      return built(`kv-count: ${g.kvs.length} -> ${v}`, { nKv: v });
    }
    case "tensor-count": {
      const v = r.pick([BigInt(g.tensors.length + 1), BigInt(g.tensors.length - 1), 0n, 2n ** 63n, 2n ** 20n]);
      return built(`tensor-count: ${g.tensors.length} -> ${v}`, { nTensors: v });
    }
    case "tensor-dims": {
      const { bytes, pos } = ggufBuild(g);
      const i = g.tensors.indexOf(t);
      const v = r.pick([0, 1, 3, 5, 0xffffffff]);
      new DataView(bytes.buffer).setUint32(pos.tNd[i], v, true);
      return { desc: `tensor-dims: ${tname} n_dims ${t.ne.length} -> ${v} (ne list unchanged)`, bytes };
    }
    case "tensor-ne": {
      const d = r.int(t.ne.length);
      const v = r.pick([0n, 1n, t.ne[d] + 1n, t.ne[d] - 1n, 2n ** 40n, 2n ** 63n, 2n ** 53n + 1n]);
      const variant = r.pick(["dim", "dim", "swap", "extra"]);
      if (variant === "dim") t.ne[d] = v;
      else if (variant === "swap") t.ne.reverse();
      else t.ne.push(r.pick([1n, 2n]));
      return built(`tensor-ne: ${tname} ne -> [${t.ne.join(", ")}]`);
    }
    case "tensor-type": {
      const v = r.pick([1, 0, 2, 8, 12, 30, 4, 99, 0xffffffff]);
      const old = t.type;
      t.type = v;
      return built(`tensor-type: ${tname} ggml type ${old} -> ${v}`);
    }
    case "tensor-offset": {
      const other = r.pick(g.tensors);
      const v = r.pick([t.offset + 1n, t.offset + BigInt(g.alignment), BigInt(g.data.length), BigInt(g.data.length) + 32n, other.offset, 2n ** 63n, 2n ** 64n - 32n]);
      t.offset = v;
      return built(`tensor-offset: ${tname} offset -> ${v}${v === other.offset ? ` (${String(other.name)}'s)` : ""}`);
    }
    case "tensor-name": {
      const other = r.pick(g.tensors);
      const v = r.pick<string | Uint8Array>(["blk.0.attn_qq.weight", String(other.name), "", "token_embd.weight", new Uint8Array([0xff, 0xfe, 0x41]), "blk.99.attn_q.weight", "rope_freqs.weight", "x".repeat(70_000)]);
      t.name = v;
      return built(`tensor-name: ${tname} -> ${typeof v === "string" ? JSON.stringify(v.slice(0, 40)) : "invalid UTF-8 bytes"}`);
    }
    case "tensor-remove": {
      const lie = r.chance(0.25);
      g.tensors = g.tensors.filter((x) => x !== t);
      return built(`tensor-remove: ${tname} removed${lie ? " (count not updated)" : ""}`, lie ? { nTensors: BigInt(base.tensors.length) } : {});
    }
    case "version":
      g.version = r.pick([1, 2, 4, 0, 0xffffffff, 0x03000000]);
      return built(`version: 3 -> ${g.version}`);
    case "magic":
      g.magic = r.pick([0x58554747, 0x47475546, 0, 0x46554746]);
      return built(`magic: 0x${g.magic.toString(16)}`);
    case "string-len": {
      const { bytes, pos } = ggufBuild(g);
      const useTensor = r.chance(0.4);
      const at = useTensor ? r.pick(pos.tNameLen) : r.pick(pos.kvKeyLen);
      const v = r.pick([0n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 32n, 1n << 20n, BigInt(bytes.length)]);
      new DataView(bytes.buffer).setBigUint64(at, v, true);
      return { desc: `string-len: a ${useTensor ? "tensor name" : "metadata key"} length field -> ${v}`, bytes };
    }
    case "array-count": {
      const arrays = g.kvs.filter((k) => k.type === G.ARR);
      const a = r.pick(arrays);
      const { bytes, pos } = ggufBuild(g);
      const at = pos.kvValue[g.kvs.indexOf(a)] + 4;
      const v = r.pick([0n, 2n ** 62n, 2n ** 64n - 1n, 1n << 31n, BigInt((a.value as { values: GVal[] }).values.length + 1)]);
      new DataView(bytes.buffer).setBigUint64(at, v, true);
      return { desc: `array-count: ${a.key} element count -> ${v}`, bytes };
    }
    case "tokenizer": {
      const tok = g.kvs.find((k) => k.key === "tokenizer.ggml.tokens")!;
      const arr = tok.value as { elemType: number; values: GVal[] };
      const sc = g.kvs.find((k) => k.key === "tokenizer.ggml.scores")!;
      const scores = sc.value as { elemType: number; values: GVal[] };
      const tt = g.kvs.find((k) => k.key === "tokenizer.ggml.token_type");
      const v = r.pick(["drop-token", "empty", "bad-utf8", "dup", "scores-nan", "scores-type", "types-short", "types-range", "types-type", "huge-token"]);
      if (v === "drop-token") arr.values.pop();
      else if (v === "empty") { arr.values = []; scores.values = []; }
      else if (v === "bad-utf8") arr.values[r.int(arr.values.length)] = new Uint8Array([0xe2, 0x96, 0xff, 0x41]);
      else if (v === "dup") arr.values[r.between(3, arr.values.length - 1)] = arr.values[r.between(3, arr.values.length - 1)];
      else if (v === "scores-nan") for (let i = 0; i < 10; i++) scores.values[r.int(scores.values.length)] = NaN;
      else if (v === "scores-type") { sc.type = G.ARR; scores.elemType = G.I32; }
      else if (v === "types-short" && tt) (tt.value as { values: GVal[] }).values.pop();
      else if (v === "types-range" && tt) (tt.value as { values: GVal[] }).values[r.int(512)] = r.pick([0, 99, -1]);
      else if (v === "types-type" && tt) (tt.value as { elemType: number }).elemType = G.U8;
      else if (v === "huge-token") arr.values[r.int(arr.values.length)] = "▁".repeat(100_000);
      return built(`tokenizer: ${v}`);
    }
    case "nan": {
      const f32 = g.tensors.filter((x) => x.type === 0);
      if (!f32.length) return built("nan: no F32 tensor (unchanged)");
      const x = r.pick(f32);
      const { bytes, pos } = ggufBuild(g);
      const numel = Number(x.ne.reduce((a, d) => a * d, 1n));
      const [label, bits] = r.pick(F32_NONFINITE);
      const dv = new DataView(bytes.buffer);
      const k = r.pick([1, 5, numel]);
      for (let i = 0; i < k; i++) dv.setUint32(pos.dataStart + Number(x.offset) + 4 * (k === numel ? i : r.int(numel)), bits, true);
      return { desc: `nan: ${k === numel ? "every element" : `${k} element(s)`} of ${String(x.name)} set to ${label}`, bytes };
    }
    case "bitflip-data": {
      const { bytes, pos } = ggufBuild(g);
      const k = r.between(1, 32);
      for (let i = 0; i < k; i++) bytes[pos.dataStart + r.int(bytes.length - pos.dataStart)] ^= 1 << r.int(8);
      return { desc: `bitflip-data: ${k} random bits of the tensor data flipped`, bytes };
    }
    case "truncate": {
      const { bytes, pos } = ggufBuild(g);
      const at = r.pick([0, 3, 4, 8, 16, 23, r.int(pos.dataStart), pos.dataStart, pos.dataStart + r.int(bytes.length - pos.dataStart), bytes.length - 1]);
      return { desc: `truncate: file cut to ${at} of ${bytes.length} bytes`, bytes: bytes.slice(0, at) };
    }
    case "append": {
      const n = r.pick([1, 31, 4096]);
      return { desc: `append: ${n} bytes at the end`, bytes: concat(b, r.bytes(n)) };
    }
    case "insert-bytes": {
      const { pos } = ggufBuild(g);
      const at = r.int(pos.dataStart);
      const n = r.pick([1, 4, 8]);
      return { desc: `insert-bytes: ${n} bytes inserted in the header at byte ${at}`, bytes: concat(b.subarray(0, at), r.bytes(n), b.subarray(at)) };
    }
    case "random-bytes":
      return randomBytes(r, b, ggufBuild(g).pos.dataStart);
  }
}

// --- config.json: mutations ----------------------------------------------------------------------

const CONFIG_EDITS: readonly [string, readonly unknown[]][] = [
  ["num_hidden_layers", [1e8, 0, -1, 4, 6, 1.5, "5", null, 2 ** 53, raw("1e400"), 1025, 1024]],
  ["hidden_size", [0, -1, 63, 65, 128, 32, "64", 1e9, 2 ** 31]],
  ["intermediate_size", [0, 171, 173, 344, -172, 1e12]],
  ["num_attention_heads", [0, 3, 16, 7, 4, 64, -8]],
  ["num_key_value_heads", [3, 8, 0, 16, 2, 1, null]],
  ["head_dim", [7, 16, 0, 4, null, -8, 8.5, 1e6]],
  ["vocab_size", [511, 513, 0, 1e7, 256, 2 ** 23]],
  ["max_position_embeddings", [0, -1, 1e12, 16, 31, 32, 1, 2 ** 24]],
  ["rms_norm_eps", [0, -1, 1e-6, "1e-5", raw("1e400"), 1e300]],
  ["rope_theta", [0, -1, 500000, raw("1e400"), "10000", 1e-300]],
  ["model_type", ["gpt2", "", 5, "mistral", "qwen2", "LLAMA", "llama "]],
  ["architectures", [["GPT2LMHeadModel"], [], "LlamaForCausalLM", [5], ["MistralForCausalLM"], null]],
  ["hidden_act", ["gelu", "silu", "swish", "relu", 1]],
  ["attention_bias", [true, "false", 0]],
  ["mlp_bias", [true, "no"]],
  ["tie_word_embeddings", [false, "true", 1, null]],
  ["bos_token_id", [-1, 1e9, "1", [1, 2], 512, 1.5]],
  ["eos_token_id", [[2, 3], -2, 600, "2", [2, "x"], []]],
  ["torch_dtype", ["float16", "int8", 5, "bfloat16"]],
  ["sliding_window", [4096, -1, 0, "x"]],
  ["quantization_config", [{}, { quant_method: "awq", bits: 4 }, null]],
];

const ROPE_SCALING: readonly unknown[] = [
  { type: "linear", factor: 2 }, { rope_type: "linear", factor: 0 }, { type: "linear" }, { type: "yarn", factor: 4 }, { rope_type: "dynamic", factor: 2 },
  { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 },
  { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 }, { rope_type: "llama3", factor: -8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 },
  { rope_type: "default" }, [], "linear", 2, { type: 5 }, {},
];

/** Edits of several fields that must agree with the weights (head split, GQA, sizes). */
const CONFIG_COMBOS: readonly Record<string, unknown>[] = [
  { num_attention_heads: 16, head_dim: 4 }, { num_attention_heads: 4, head_dim: 16, num_key_value_heads: 2 }, { hidden_size: 128, head_dim: 16 },
  { num_key_value_heads: 8 }, { head_dim: null }, { head_dim: null, num_attention_heads: 7 }, { num_attention_heads: 8, num_key_value_heads: 8, head_dim: 8 },
  { hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5 }, { vocab_size: 512, tie_word_embeddings: true }, { num_hidden_layers: 5, model_type: "llama", architectures: ["LlamaForCausalLM"] },
];

export function mutateConfig(r: Rand, b: Uint8Array): Mut {
  const text = dec.decode(b);
  const c = JSON.parse(text) as Record<string, unknown>;
  const out = (desc: string) => ({ desc, bytes: u8(jsonText(c, 2) + "\n") });
  const op = r.weighted([["set-field", 14], ["delete-field", 5], ["add-field", 2], ["combo", 4], ["rope", 4], ["wrong-type", 4], ["json-text", 5], ["random-bytes", 3]] as const);
  switch (op) {
    case "set-field": {
      const [k, vs] = r.pick(CONFIG_EDITS);
      const v = r.pick(vs);
      c[k] = v;
      return out(`set-field: ${k} = ${jsonText(v)}`);
    }
    case "delete-field": {
      const k = r.chance(0.7) ? r.pick(["num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "model_type", "architectures", "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps"]) : r.pick(Object.keys(c));
      delete c[k];
      return out(`delete-field: ${k}`);
    }
    case "add-field": {
      const [k, v] = r.pick<[string, unknown]>([["unknown_field", 1], ["transformers_version", "4.99"], ["__proto__", { hidden_size: 1 }], ["num_layers", 1e8], ["layer_types", ["full_attention"]]]);
      if (k === "__proto__") Object.defineProperty(c, k, { value: v, enumerable: true });
      else c[k] = v;
      return out(`add-field: ${k} = ${JSON.stringify(v)}`);
    }
    case "combo": {
      const m = r.pick(CONFIG_COMBOS);
      Object.assign(c, m);
      return out(`combo: ${JSON.stringify(m)}`);
    }
    case "rope": {
      const v = r.pick(ROPE_SCALING);
      c.rope_scaling = v;
      return out(`rope: rope_scaling = ${JSON.stringify(v)}`);
    }
    case "wrong-type": {
      const k = r.pick(Object.keys(c));
      const v = r.pick<unknown>([String(c[k]), [c[k]], { value: c[k] }, true, null, -0.5]);
      c[k] = v;
      return out(`wrong-type: ${k} = ${JSON.stringify(v)}`);
    }
    case "json-text":
      return jsonTextMutation(r, text);
    case "random-bytes":
      return randomBytes(r, b);
  }
}

// --- tokenizer.json / tokenizer_config.json: mutations -------------------------------------------

export function mutateTokenizer(r: Rand, tjBytes: Uint8Array, tcBytes: Uint8Array): { desc: string; tokenizer?: Uint8Array | null; config?: Uint8Array } {
  const tjText = dec.decode(tjBytes);
  const tj = JSON.parse(tjText) as Record<string, any>;
  const out = (desc: string) => ({ desc, tokenizer: u8(jsonText(tj, 2)) });
  const op = r.weighted([["model-type", 4], ["vocab", 6], ["merges", 5], ["added-tokens", 4], ["pipeline", 5], ["byte-fallback", 2], ["tokenizer-config", 4], ["json-text", 4], ["random-bytes", 3], ["delete-file", 1]] as const);
  const vocab = tj.model.vocab as Record<string, number>;
  switch (op) {
    case "model-type": {
      const v = r.pick<unknown>(["WordPiece", "Unigram", "WordLevel", "XYZ", undefined, 5, "bpe"]);
      if (v === undefined) delete tj.model.type;
      else tj.model.type = v;
      return out(`model-type: model.type = ${JSON.stringify(v) ?? "(removed)"}`);
    }
    case "vocab": {
      const v = r.pick(["delete-bos", "delete-random", "add-600", "add-1e9", "add-negative", "add-string", "add-float", "dup-id", "array", "empty", "null", "string"]);
      const keys = Object.keys(vocab);
      if (v === "delete-bos") delete vocab["<s>"];
      else if (v === "delete-random") delete vocab[r.pick(keys.slice(3))];
      else if (v === "add-600") vocab["▁zzz"] = 600;
      else if (v === "add-1e9") vocab["▁zzz"] = 1e9;
      else if (v === "add-negative") vocab["▁zzz"] = -1;
      else if (v === "add-string") (vocab as Record<string, unknown>)["▁zzz"] = "7";
      else if (v === "add-float") vocab["▁zzz"] = 7.5;
      else if (v === "dup-id") vocab[r.pick(keys.slice(3))] = vocab[r.pick(keys.slice(3))];
      else if (v === "array") tj.model.vocab = keys;
      else if (v === "empty") tj.model.vocab = {};
      else if (v === "null") tj.model.vocab = null;
      else tj.model.vocab = "vocab";
      return out(`vocab: ${v}`);
    }
    case "merges": {
      const m = tj.model.merges as unknown[];
      const v = r.pick(["drop-all", "malformed-1", "malformed-3", "numbers", "unknown-tokens", "string", "reverse", "null"]);
      if (v === "drop-all") tj.model.merges = [];
      else if (v === "malformed-1") m[r.int(m.length)] = "a";
      else if (v === "malformed-3") m[r.int(m.length)] = "a b c";
      else if (v === "numbers") m[r.int(m.length)] = [1, 2];
      else if (v === "unknown-tokens") m.unshift(typeof m[0] === "string" ? "qq zz" : ["qq", "zz"]);
      else if (v === "string") tj.model.merges = "merges";
      else if (v === "reverse") m.reverse();
      else tj.model.merges = null;
      return out(`merges: ${v}`);
    }
    case "added-tokens": {
      const a = tj.added_tokens as Record<string, unknown>[];
      const v = r.pick(["id-999", "id-negative", "id-string", "content-number", "content-empty", "remove", "object", "dup"]);
      const t = a[r.int(a.length)];
      if (v === "id-999") t.id = 999;
      else if (v === "id-negative") t.id = -1;
      else if (v === "id-string") t.id = "x";
      else if (v === "content-number") t.content = 5;
      else if (v === "content-empty") t.content = "";
      else if (v === "remove") delete tj.added_tokens;
      else if (v === "object") tj.added_tokens = {};
      else a.push({ ...t });
      return out(`added-tokens: ${v}`);
    }
    case "pipeline": {
      const part = r.pick(["normalizer", "pre_tokenizer", "decoder", "post_processor"]);
      const v = r.pick<unknown>([
        { type: "Unknown" }, null, 5, [], { type: "Split", pattern: { Regex: "(" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: "(a+)+$" }, behavior: "Isolated", invert: false },
        { type: "Sequence", normalizers: "x" }, { type: "Replace", pattern: { Regex: "[" }, content: "" },
        { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<nope>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }], pair: [], special_tokens: {} },
      ]);
      tj[part] = v;
      return out(`pipeline: ${part} = ${JSON.stringify(v)?.slice(0, 80)}`);
    }
    case "byte-fallback": {
      const v = r.pick(["byte_fallback false", "unk_token missing", "unk_token null", "fuse_unk string"]);
      if (v === "byte_fallback false") tj.model.byte_fallback = false;
      else if (v === "unk_token missing") tj.model.unk_token = "<missing>";
      else if (v === "unk_token null") tj.model.unk_token = null;
      else tj.model.fuse_unk = "yes";
      return out(`byte-fallback: ${v}`);
    }
    case "tokenizer-config": {
      const tc = JSON.parse(dec.decode(tcBytes)) as Record<string, unknown>;
      const v = r.pick(["bos-missing", "bos-number", "bos-object-number", "add-bos-string", "eos-missing", "not-json", "array", "bos-null"]);
      if (v === "not-json") return { desc: "tokenizer-config: not JSON", config: u8("{bos_token: <s>") };
      if (v === "array") return { desc: "tokenizer-config: a JSON array", config: u8("[]") };
      if (v === "bos-missing") tc.bos_token = "<nope>";
      else if (v === "bos-number") tc.bos_token = 1;
      else if (v === "bos-object-number") tc.bos_token = { content: 5 };
      else if (v === "add-bos-string") tc.add_bos_token = "yes";
      else if (v === "eos-missing") tc.eos_token = { content: "</nope>" };
      else tc.bos_token = null;
      return { desc: `tokenizer-config: ${v}`, config: u8(JSON.stringify(tc, null, 2)) };
    }
    case "json-text": {
      const m = jsonTextMutation(r, tjText);
      return { desc: m.desc, tokenizer: m.bytes };
    }
    case "random-bytes": {
      const m = randomBytes(r, tjBytes);
      return { desc: m.desc, tokenizer: m.bytes };
    }
    case "delete-file":
      return { desc: "delete-file: no tokenizer.json", tokenizer: null };
  }
}

// --- calibration text: mutations -----------------------------------------------------------------

/** A text mutant: one file (calib.txt / calib.jsonl) or a folder of files. */
export interface TextMutant {
  desc: string;
  /** relative path -> bytes (null: a folder) */
  files: [string, Uint8Array | null][];
  /** what --calib names */
  input: string;
}

export function mutateText(r: Rand, full: Uint8Array, short: Uint8Array): TextMutant {
  const base = r.chance(0.15) ? full : short;
  const text = dec.decode(base);
  const one = (desc: string, bytes: Uint8Array, name = "calib.txt"): TextMutant => ({ desc, files: [[name, bytes]], input: name });
  const op = r.weighted([
    ["empty", 2], ["whitespace", 2], ["binary", 3], ["giant-line", 3], ["invalid-utf8", 5], ["nul", 2], ["bom", 1], ["crlf", 2], ["short", 3],
    ["truncate", 3], ["many-tiny", 2], ["unicode", 2], ["jsonl", 4], ["folder", 2], ["random-bytes", 4], ["control", 1], ["long-doc", 2],
  ] as const);
  const size = base === full ? "whole text" : "first documents";
  switch (op) {
    case "empty": return one("empty: an empty file", new Uint8Array(0));
    case "whitespace": return one("whitespace: only blank lines", u8(r.pick(["\n\n\n", "   \n\t\n \r\n", " ".repeat(100_000)])));
    case "binary": return one("binary: random bytes", r.bytes(r.pick([16, 4096, 200_000])));
    case "giant-line": return one(`giant-line: the ${size} as one line`, u8(text.replace(/\s*\n\s*/g, " ")));
    case "invalid-utf8": {
      const bad = r.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]]);
      const at = r.chance(0.3) ? base.length : r.int(base.length);
      return one(`invalid-utf8: ${bad.map((x) => x.toString(16)).join(" ")} at byte ${at} of the ${size}`, concat(base.subarray(0, at), new Uint8Array(bad), base.subarray(at)));
    }
    case "nul": {
      const b = base.slice();
      for (let i = 0; i < 20; i++) b[r.int(b.length)] = 0;
      return one(`nul: 20 NUL bytes in the ${size}`, b);
    }
    case "bom": return one(`bom: byte order mark in front of the ${size}`, concat(new Uint8Array([0xef, 0xbb, 0xbf]), base));
    case "crlf": return one(`crlf: the ${size} with CRLF line ends`, u8(text.replace(/\n/g, "\r\n")));
    case "short": return one("short: one short document", u8(r.pick(["Once upon a time.", "a", "The end.\n\nHi."])));
    case "truncate": {
      const n = r.pick([1, 10, 100, 300, 1000, r.int(base.length)]);
      return one(`truncate: the first ${n} bytes of the ${size}`, base.slice(0, n));
    }
    case "many-tiny": return one("many-tiny: 20000 one-word documents", u8("a\n\n".repeat(20_000)));
    case "unicode": return one("unicode: emoji, CJK and combining marks", u8(("Once 🦄 upon 時間 a ti\u0301me, ".repeat(200) + "\n\n").repeat(4)));
    case "control": return one("control: control characters throughout", u8(text.replace(/ /g, () => String.fromCharCode(r.int(32)))));
    case "long-doc": return one("long-doc: one 24000-word document", u8("Once upon a time there was a girl. ".repeat(3000)));
    case "jsonl": {
      const docs = text.split(/\n\s*\n/).filter((d) => d.trim());
      const lines = docs.map((d) => JSON.stringify({ text: d }));
      const v = r.pick(["valid", "bad-line", "no-text", "text-number", "array-line", "blank-lines"]);
      if (v === "bad-line") lines.splice(r.int(lines.length), 0, "{not json");
      else if (v === "no-text") lines[r.int(lines.length)] = JSON.stringify({ body: "x" });
      else if (v === "text-number") lines[r.int(lines.length)] = JSON.stringify({ text: 5 });
      else if (v === "array-line") lines[r.int(lines.length)] = "[1, 2]";
      else if (v === "blank-lines") lines.push("", "   ", "");
      return one(`jsonl: ${v}`, u8(lines.join("\n") + "\n"), "calib.jsonl");
    }
    case "folder": {
      const v = r.pick(["two-files", "no-text-files", "with-subfolder", "bad-file-inside"]);
      const files: [string, Uint8Array | null][] = [["calib", null]];
      if (v === "two-files") files.push(["calib/a.txt", short], ["calib/b.md", short]);
      else if (v === "no-text-files") files.push(["calib/a.bin", short]);
      else if (v === "with-subfolder") files.push(["calib/sub.txt", null], ["calib/sub.txt/x.txt", short], ["calib/a.txt", short]);
      else files.push(["calib/a.txt", short], ["calib/b.txt", new Uint8Array([0x41, 0xff, 0x41])]);
      return { desc: `folder: ${v}`, files, input: "calib" };
    }
    case "random-bytes": {
      const m = randomBytes(r, base);
      return one(`${m.desc} (${size})`, m.bytes);
    }
  }
}

// --- sharded checkpoint: mutations ---------------------------------------------------------------

export const INDEX = "model.safetensors.index.json";

/** A mutation of the shards + index: file name -> new bytes, or null to leave the file out. */
export function mutateSharded(r: Rand, shards: ReadonlyMap<string, Uint8Array>, single: Uint8Array): { desc: string; files: Map<string, Uint8Array | null> } {
  const files = new Map<string, Uint8Array | null>();
  const idxText = dec.decode(shards.get(INDEX)!);
  const idx = JSON.parse(idxText) as { metadata: Record<string, unknown>; weight_map: Record<string, unknown> };
  const shardNames = [...shards.keys()].filter((n) => n !== INDEX);
  const tensor = r.pick(Object.keys(idx.weight_map));
  const setIndex = (desc: string) => {
    files.set(INDEX, u8(jsonText(idx, 2)));
    return { desc, files };
  };
  const op = r.weighted([["weight-map-entry", 8], ["weight-map", 3], ["metadata", 2], ["index-text", 4], ["delete-shard", 3], ["swap-shard", 2], ["shard-content", 8], ["stray-files", 2]] as const);
  switch (op) {
    case "weight-map-entry": {
      const other = shardNames.find((s) => s !== idx.weight_map[tensor]) ?? shardNames[0];
      const v = r.pick<unknown>(["model-00009-of-00004.safetensors", other, "../model.safetensors", "/etc/hostname", "", ".", "..", 5, null, "sub/x.safetensors", "config.json", undefined, "REMOVE-MANY"]);
      if (v === undefined) {
        delete idx.weight_map[tensor];
        return setIndex(`weight-map-entry: ${tensor} left out of the index`);
      }
      if (v === "REMOVE-MANY") {
        for (const k of Object.keys(idx.weight_map)) if (k.includes("layers.4.")) delete idx.weight_map[k];
        return setIndex("weight-map-entry: every layer-4 tensor left out of the index");
      }
      if (r.chance(0.2)) {
        idx.weight_map["model.layers.0.self_attn.extra.weight"] = shardNames[0];
        return setIndex(`weight-map-entry: a tensor the shard does not hold is listed in ${shardNames[0]}`);
      }
      idx.weight_map[tensor] = v;
      return setIndex(`weight-map-entry: ${tensor} -> ${JSON.stringify(v)}`);
    }
    case "weight-map": {
      const v = r.pick<unknown>([[], "x", null, {}, undefined, Object.keys(idx.weight_map)]);
      if (v === undefined) delete (idx as Record<string, unknown>).weight_map;
      else idx.weight_map = v as Record<string, unknown>;
      return setIndex(`weight-map: weight_map = ${JSON.stringify(v)?.slice(0, 40) ?? "(removed)"}`);
    }
    case "metadata": {
      const v = r.pick<unknown>([{ total_size: "abc" }, { total_size: -1 }, { total_size: raw("1e400") }, null, "meta", []]);
      idx.metadata = v as Record<string, unknown>;
      return setIndex(`metadata: metadata = ${jsonText(v)}`);
    }
    case "index-text": {
      const m = jsonTextMutation(r, idxText);
      files.set(INDEX, m.bytes);
      return { desc: `index-text: ${m.desc}`, files };
    }
    case "delete-shard": {
      const s = r.pick(shardNames);
      files.set(s, null);
      return { desc: `delete-shard: ${s} missing`, files };
    }
    case "swap-shard": {
      const [a, b] = [r.pick(shardNames), r.pick(shardNames)];
      files.set(a, shards.get(b)!);
      files.set(b, shards.get(a)!);
      return { desc: a === b ? `swap-shard: ${a} unchanged` : `swap-shard: contents of ${a} and ${b} swapped`, files };
    }
    case "shard-content": {
      const s = r.pick(shardNames);
      const m = mutateSafetensors(r, shards.get(s)!);
      files.set(s, m.bytes);
      return { desc: `shard ${s}: ${m.desc}`, files };
    }
    case "stray-files": {
      const v = r.pick(["model.safetensors", "model-00009-of-00009.safetensors", "model.safetensors.index.json.bak"]);
      files.set(v, v === "model.safetensors" ? single : shards.get(shardNames[0])!);
      return { desc: `stray-files: an extra ${v} next to the index`, files };
    }
  }
}

// --- the oracle: is a mutant still a valid input? ------------------------------------------------
// Written from the formats' own rules, not from src/: safetensors (header JSON, dtypes, offsets that
// tile the data), a Llama-family config.json whose tensors the weights hold with the right shapes,
// float dtypes and finite values, a tokenizer.json that @huggingface/tokenizers loads with ids inside
// vocab_size, and (AWQ) calibration text that is UTF-8 and long enough.

export interface Verdict {
  readonly valid: boolean;
  readonly why: string;
}
const VALID: Verdict = { valid: true, why: "valid" };
const bad = (why: string): Verdict => ({ valid: false, why });

interface StEntry {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isNat = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** A safetensors file -> its tensors, or why it is not a valid safetensors file. */
export function stCheck(b: Uint8Array): { tensors: Map<string, StEntry> } | Verdict {
  if (b.length < 8) return bad("safetensors: shorter than the 8-byte length");
  const n = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(0, true);
  if (n > 100_000_000n) return bad("safetensors: header length over 100 MB");
  if (8n + n > BigInt(b.length)) return bad("safetensors: header runs past the end of the file");
  let text: string;
  try {
    text = decStrict.decode(b.subarray(8, 8 + Number(n)));
  } catch {
    return bad("safetensors: header is not UTF-8");
  }
  if (!text.startsWith("{")) return bad("safetensors: header does not start with '{'");
  let h: unknown;
  try {
    h = JSON.parse(text);
  } catch {
    return bad("safetensors: header is not JSON");
  }
  if (!isObj(h)) return bad("safetensors: header is not an object");
  const data = b.subarray(8 + Number(n));
  const ranges: [number, number, string][] = [];
  const tensors = new Map<string, StEntry>();
  for (const [name, e] of Object.entries(h)) {
    if (name === "__metadata__") {
      if (e === null) continue;
      if (!isObj(e) || !Object.values(e).every((v) => typeof v === "string")) return bad("safetensors: __metadata__ is not a map of strings");
      continue;
    }
    if (!isObj(e)) return bad(`safetensors: ${name} is not an object`);
    const size = typeof e.dtype === "string" ? ST_DTYPE_BYTES[e.dtype] : undefined;
    if (size === undefined) return bad(`safetensors: ${name} has dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every(isNat)) return bad(`safetensors: ${name} shape ${JSON.stringify(e.shape)}`);
    const numel = (e.shape as number[]).reduce((a, x) => a * x, 1);
    const o = e.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !o.every(isNat) || o[0] > o[1]) return bad(`safetensors: ${name} data_offsets ${JSON.stringify(o)}`);
    if (o[1] - o[0] !== numel * size) return bad(`safetensors: ${name} byte length ${o[1] - o[0]} != ${numel} x ${size}`);
    ranges.push([o[0], o[1], name]);
    tensors.set(name, { dtype: e.dtype as string, shape: e.shape as number[], bytes: data.subarray(o[0], Math.min(o[1], data.length)) });
  }
  ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let end = 0;
  for (const [s, e, name] of ranges) {
    if (s !== end) return bad(`safetensors: ${name} ${s < end ? "overlaps" : "leaves a hole before it"}`);
    end = e;
  }
  if (end !== data.length) return bad(`safetensors: data region ${data.length} bytes, tensors cover ${end}`);
  return { tensors };
}

/** Sharded checkpoint folder -> tensors of the index, or why it is not valid. */
function shardedCheck(dir: string): { tensors: Map<string, StEntry> } | Verdict {
  const index = readStrictJson(path.join(dir, INDEX));
  if ("valid" in index) return bad(`index: ${index.why}`);
  const wm = index.json.weight_map;
  if (!isObj(wm)) return bad("index: weight_map is not an object");
  const out = new Map<string, StEntry>();
  const opened = new Map<string, Map<string, StEntry>>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== "string" || shard === "" || shard !== path.basename(shard) || shard === "." || shard === "..") {
      return bad(`index: ${name} -> ${JSON.stringify(shard)} is not a file of the folder`);
    }
    let ts = opened.get(shard);
    if (!ts) {
      const p = path.join(dir, shard);
      if (!fs.existsSync(p) || !fs.statSync(p).isFile()) return bad(`index: shard ${shard} is missing`);
      const c = stCheck(new Uint8Array(fs.readFileSync(p)));
      if ("valid" in c) return bad(`${shard}: ${c.why}`);
      ts = c.tensors;
      opened.set(shard, ts);
    }
    const t = ts.get(name);
    if (!t) return bad(`index: ${name} is not in ${shard}`);
    out.set(name, t);
  }
  return { tensors: out };
}

/** The weights of a model folder (index, else model.safetensors, else the only *.safetensors). */
export function weightsCheck(dir: string): { tensors: Map<string, StEntry> } | Verdict {
  if (fs.existsSync(path.join(dir, INDEX))) return shardedCheck(dir);
  const single = path.join(dir, "model.safetensors");
  let file = single;
  if (!fs.existsSync(single)) {
    const found = fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors"));
    if (found.length !== 1) return bad(`weights: ${found.length} .safetensors files and no index`);
    file = path.join(dir, found[0]);
  }
  if (!fs.statSync(file).isFile()) return bad("weights: not a file");
  return stCheck(new Uint8Array(fs.readFileSync(file)));
}

function readStrictJson(file: string): { json: Record<string, unknown> } | Verdict {
  if (!fs.existsSync(file)) return bad("missing");
  let v: unknown;
  try {
    v = JSON.parse(decStrict.decode(fs.readFileSync(file)));
  } catch {
    return bad("not UTF-8 JSON");
  }
  return isObj(v) ? { json: v } : bad("not a JSON object");
}

export interface OracleConfig {
  D: number; I: number; L: number; H: number; KV: number; hd: number; V: number; maxPos: number;
  tie: boolean; qkvBias: boolean; oBias: boolean; mlpBias: boolean;
}

/** config.json object -> the dimensions it implies, or why it is not a usable Llama-family config. */
export function configCheck(c: Record<string, unknown>): { cfg: OracleConfig } | Verdict {
  const mt = c.model_type;
  if (mt !== "llama" && mt !== "mistral" && mt !== "qwen2") return bad(`config: model_type ${JSON.stringify(mt)}`);
  const arch = c.architectures;
  if (arch !== undefined && arch !== null) {
    if (!Array.isArray(arch) || !["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"].includes(arch[0])) return bad(`config: architectures ${JSON.stringify(arch)}`);
  }
  const pos = (k: string): number | string => {
    const v = c[k];
    return typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : `config: ${k} = ${JSON.stringify(v)}`;
  };
  const dims: Record<string, number> = {};
  for (const k of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"]) {
    const v = pos(k);
    if (typeof v === "string") return bad(v);
    dims[k] = v;
  }
  const opt = (k: string, dflt: number): number | string => (c[k] === undefined || c[k] === null ? dflt : pos(k));
  const H = dims.num_attention_heads, D = dims.hidden_size;
  const KV = opt("num_key_value_heads", H);
  if (typeof KV === "string") return bad(KV);
  if (H % KV) return bad(`config: ${KV} kv heads do not divide ${H} heads`);
  if ((c.head_dim === undefined || c.head_dim === null) && D % H) return bad("config: hidden_size not a multiple of the heads");
  const hd = opt("head_dim", D / H);
  if (typeof hd === "string") return bad(hd);
  if (hd % 2) return bad(`config: head_dim ${hd} is odd`);
  const maxPos = opt("max_position_embeddings", 2048);
  if (typeof maxPos === "string") return bad(maxPos);
  for (const k of ["rms_norm_eps", "rope_theta"]) {
    const v = c[k];
    if (v !== undefined && v !== null && !(typeof v === "number" && Number.isFinite(v) && v > 0)) return bad(`config: ${k} = ${JSON.stringify(v)}`);
  }
  const rs = c.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (!isObj(rs)) return bad("config: rope_scaling is not an object");
    const type = rs.rope_type ?? rs.type;
    const posNum = (k: string) => typeof rs[k] === "number" && Number.isFinite(rs[k]) && (rs[k] as number) > 0;
    if (type === "linear") {
      if (!posNum("factor")) return bad("config: rope_scaling.factor");
    } else if (type === "llama3") {
      if (!["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"].every(posNum)) return bad("config: llama3 rope_scaling fields");
    } else if (type !== "default") return bad(`config: rope_scaling type ${JSON.stringify(type)} unsupported`);
  }
  const act = c.hidden_act;
  if (act !== undefined && act !== null && act !== "silu" && act !== "swish") return bad(`config: hidden_act ${JSON.stringify(act)}`);
  const flag = (k: string, dflt: boolean): boolean | string => {
    const v = c[k];
    if (v === undefined || v === null) return dflt; // transformers reads None as false
    return typeof v === "boolean" ? v : `config: ${k} = ${JSON.stringify(v)}`;
  };
  const tie = flag("tie_word_embeddings", false), ab = flag("attention_bias", false), mb = flag("mlp_bias", false);
  for (const f of [tie, ab, mb]) if (typeof f === "string") return bad(f);
  const V = dims.vocab_size;
  const tokenId = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v < V;
  if (c.bos_token_id !== undefined && c.bos_token_id !== null && !tokenId(c.bos_token_id)) return bad(`config: bos_token_id ${JSON.stringify(c.bos_token_id)}`);
  const eos = c.eos_token_id;
  if (eos !== undefined && eos !== null && !(Array.isArray(eos) ? eos.every(tokenId) : tokenId(eos))) return bad(`config: eos_token_id ${JSON.stringify(eos)}`);
  if (c.quantization_config !== undefined && c.quantization_config !== null) return bad("config: already quantized");
  if (mt === "mistral" && c.sliding_window !== undefined && c.sliding_window !== null && typeof pos("sliding_window") === "string") return bad("config: sliding_window");
  return {
    cfg: {
      D, I: dims.intermediate_size, L: dims.num_hidden_layers, H, KV, hd, V, maxPos,
      tie: tie as boolean, qkvBias: mt === "qwen2" || (mt === "llama" && (ab as boolean)), oBias: mt === "llama" && (ab as boolean), mlpBias: mt === "llama" && (mb as boolean),
    },
  };
}

/** Every tensor a config implies, with its shape (HF names, [out, in]). */
function expectedShapes(c: OracleConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const q = c.H * c.hd, kv = c.KV * c.hd;
  m.set("model.embed_tokens.weight", [c.V, c.D]);
  for (let l = 0; l < c.L; l++) {
    const p = `model.layers.${l}.`;
    m.set(`${p}input_layernorm.weight`, [c.D]);
    m.set(`${p}post_attention_layernorm.weight`, [c.D]);
    for (const [n, s] of [["q_proj", [q, c.D]], ["k_proj", [kv, c.D]], ["v_proj", [kv, c.D]], ["o_proj", [c.D, q]]] as const) {
      m.set(`${p}self_attn.${n}.weight`, [...s]);
      if (c.qkvBias && n !== "o_proj") m.set(`${p}self_attn.${n}.bias`, [s[0]]);
      if (c.oBias && n === "o_proj") m.set(`${p}self_attn.${n}.bias`, [s[0]]);
    }
    for (const [n, s] of [["gate_proj", [c.I, c.D]], ["up_proj", [c.I, c.D]], ["down_proj", [c.D, c.I]]] as const) {
      m.set(`${p}mlp.${n}.weight`, [...s]);
      if (c.mlpBias) m.set(`${p}mlp.${n}.bias`, [s[0]]);
    }
  }
  m.set("model.norm.weight", [c.D]);
  return m;
}

function allFinite(t: StEntry): boolean {
  const b = t.bytes;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (t.dtype === "F32") {
    for (let i = 0; i + 4 <= b.length; i += 4) if ((dv.getUint32(i, true) & 0x7f800000) === 0x7f800000) return false;
  } else if (t.dtype === "F16") {
    for (let i = 0; i + 2 <= b.length; i += 2) if ((dv.getUint16(i, true) & 0x7c00) === 0x7c00) return false;
  } else if (t.dtype === "BF16") {
    for (let i = 0; i + 2 <= b.length; i += 2) if ((dv.getUint16(i, true) & 0x7f80) === 0x7f80) return false;
  } else if (t.dtype === "F64") {
    for (let i = 0; i + 8 <= b.length; i += 8) if (!Number.isFinite(dv.getFloat64(i, true))) return false;
  }
  return true;
}

/** Tensors present vs the config: every expected tensor with its shape, a float dtype, finite values. */
function tensorsCheck(c: OracleConfig, tensors: Map<string, StEntry>): Verdict {
  // the layer count first: a damaged num_hidden_layers (1e8) must not make a list of its size
  let layers = 0;
  for (const name of tensors.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (layers !== c.L) return bad(`weights: layers 0..${layers - 1}, config: ${c.L} layers`);
  const want = expectedShapes(c);
  const lm = tensors.get("lm_head.weight");
  if (!c.tie || lm) want.set("lm_head.weight", [c.V, c.D]);
  for (const [name, shape] of want) {
    const t = tensors.get(name);
    if (!t) return bad(`weights: ${name} missing`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) return bad(`weights: ${name} shape ${JSON.stringify(t.shape)} != ${JSON.stringify(shape)}`);
    if (!FLOAT_DTYPES.has(t.dtype)) return bad(`weights: ${name} dtype ${t.dtype}`);
    if (!allFinite(t)) return bad(`weights: ${name} holds NaN or Inf`);
  }
  return VALID;
}

export const SAMPLE_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside.";

/** tokenizer.json (+ tokenizer_config.json) of a model folder, against the config's vocab_size. */
export function tokenizerCheck(dir: string, V: number): { tk: Tokenizer } | Verdict {
  const tj = readStrictJson(path.join(dir, "tokenizer.json"));
  if ("valid" in tj) return bad(`tokenizer.json: ${tj.why}`);
  let tc: Record<string, unknown> = {};
  if (fs.existsSync(path.join(dir, "tokenizer_config.json"))) {
    const t = readStrictJson(path.join(dir, "tokenizer_config.json"));
    if ("valid" in t) return bad(`tokenizer_config.json: ${t.why}`);
    tc = t.json;
  }
  const model = tj.json.model;
  if (!isObj(model)) return bad("tokenizer.json: model is not an object");
  // the model's "type" tag, when present, names one of the tokenizers library's models
  if (model.type !== undefined && !["BPE", "Unigram", "WordPiece", "WordLevel"].includes(model.type as string)) return bad(`tokenizer.json: model.type ${JSON.stringify(model.type)}`);
  const ids: unknown[] = [];
  if (isObj(model.vocab)) ids.push(...Object.values(model.vocab));
  else if (Array.isArray(model.vocab)) ids.push(...model.vocab.map((_, i) => i));
  else return bad("tokenizer.json: model.vocab");
  if (ids.length === 0) return bad("tokenizer.json: empty vocabulary");
  // BPE merges as the Rust library builds them: two parts (a string split at its one space, or a
  // pair), each part and their concatenation in the vocabulary
  if (isObj(model.vocab) && Array.isArray(model.merges)) {
    const v = model.vocab;
    const pre = typeof model.continuing_subword_prefix === "string" ? model.continuing_subword_prefix : "";
    for (const m of model.merges) {
      const p = typeof m === "string" ? m.split(" ") : m;
      if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => typeof x === "string")) return bad(`tokenizer.json: merge ${JSON.stringify(m)}`);
      const joined = p[0] + (pre && p[1].startsWith(pre) ? p[1].slice(pre.length) : p[1]);
      if (![p[0], p[1], joined].every((t) => Object.prototype.hasOwnProperty.call(v, t))) return bad(`tokenizer.json: merge ${JSON.stringify(m)} outside the vocabulary`);
    }
  } else if (model.merges !== undefined && model.merges !== null && !Array.isArray(model.merges)) return bad("tokenizer.json: merges is not a list");
  const added = tj.json.added_tokens;
  if (added !== undefined) {
    if (!Array.isArray(added)) return bad("tokenizer.json: added_tokens is not a list");
    for (const a of added) {
      if (!isObj(a) || typeof a.content !== "string" || a.content === "") return bad("tokenizer.json: an added token without content");
      ids.push(a.id);
    }
  }
  if (!ids.every((i) => isNat(i) && i < V)) return bad(`tokenizer.json: a token id outside [0, ${V})`);
  let tk: Tokenizer;
  try {
    tk = new Tokenizer(tj.json, tc);
    const enc1 = tk.encode(SAMPLE_TEXT, { add_special_tokens: false }).ids;
    if (enc1.length === 0 || !enc1.every((i: number) => isNat(i) && i < V)) return bad("tokenizer.json: encodes to ids outside the vocabulary");
    tk.decode(enc1);
  } catch (e) {
    return bad(`tokenizer.json: @huggingface/tokenizers fails (${(e as Error).message?.slice(0, 80)})`);
  }
  for (const k of ["bos_token", "eos_token"]) {
    const v = tc[k];
    if (v === undefined || v === null) continue;
    const content = typeof v === "string" ? v : isObj(v) ? v.content : undefined;
    if (typeof content !== "string" || tk.token_to_id(content) === undefined) return bad(`tokenizer_config.json: ${k} ${JSON.stringify(v)} is not a token`);
  }
  for (const k of ["add_bos_token", "add_eos_token"]) {
    if (tc[k] !== undefined && tc[k] !== null && typeof tc[k] !== "boolean") return bad(`tokenizer_config.json: ${k} = ${JSON.stringify(tc[k])}`);
  }
  return { tk };
}

const TEXT_EXTS = [".txt", ".text", ".md", ".jsonl", ".ndjson"];

/** Calibration text (file or folder) -> enough UTF-8 text for AWQ_SAMPLES x AWQ_SEQ_LEN tokens? */
export function textCheck(p: string, tk: Tokenizer): Verdict {
  if (!fs.existsSync(p)) return bad("text: missing");
  const files = fs.statSync(p).isDirectory()
    ? fs.readdirSync(p).sort().map((f) => path.join(p, f)).filter((f) => TEXT_EXTS.includes(path.extname(f).toLowerCase()) && fs.statSync(f).isFile())
    : [p];
  const docs: string[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = decStrict.decode(fs.readFileSync(f));
    } catch {
      return bad(`text: ${path.basename(f)} is not UTF-8`);
    }
    if ([".jsonl", ".ndjson"].includes(path.extname(f).toLowerCase())) {
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          return bad("text: a JSONL line is not JSON");
        }
        if (!isObj(v) || typeof v.text !== "string") return bad("text: a JSONL line without a string text");
        if (v.text.trim()) docs.push(v.text);
      }
    } else {
      docs.push(...text.split(/\r?\n[ \t\r]*\r?\n/).map((d) => d.trim()).filter(Boolean));
    }
  }
  let tokens = 0;
  for (const d of docs) {
    tokens += tk.encode(d, { add_special_tokens: false }).ids.length + 1;
    if (tokens >= AWQ_SAMPLES * AWQ_SEQ_LEN) return VALID;
  }
  // below the need by a clear margin: invalid; within 12 % of it: counted as valid (splitting rules may differ)
  return tokens < 0.88 * AWQ_SAMPLES * AWQ_SEQ_LEN ? bad(`text: ${tokens} tokens, ${AWQ_SAMPLES * AWQ_SEQ_LEN} needed`) : VALID;
}

/** A whole model folder as `wgq quantize` reads it; `calib` for AWQ. */
export function modelVerdict(dir: string, calib?: string): Verdict {
  const cj = readStrictJson(path.join(dir, "config.json"));
  if ("valid" in cj) return bad(`config.json: ${cj.why}`);
  const cc = configCheck(cj.json);
  if ("valid" in cc) return cc;
  const w = weightsCheck(dir);
  if ("valid" in w) return w;
  const t = tensorsCheck(cc.cfg, w.tensors);
  if (!t.valid) return t;
  const hasTokenizer = fs.existsSync(path.join(dir, "tokenizer.json"));
  if (!hasTokenizer && calib === undefined) return VALID; // weights alone can be quantized; AWQ needs the tokenizer
  const tok = tokenizerCheck(dir, cc.cfg.V);
  if ("valid" in tok) return tok;
  if (calib === undefined) return VALID;
  if (cc.cfg.maxPos < AWQ_SEQ_LEN) return bad(`config: max_position_embeddings ${cc.cfg.maxPos} < --seq-len ${AWQ_SEQ_LEN}`);
  return textCheck(calib, tok.tk);
}

/** The corpus tokenizer through @huggingface/tokenizers (the oracle's, for text mutants). */
export function corpusTokenizer(corpus: Corpus): Tokenizer {
  const j = (n: string) => JSON.parse(dec.decode(corpus.model.get(n)!)) as Record<string, unknown>;
  return new Tokenizer(j("tokenizer.json"), j("tokenizer_config.json"));
}

/**
 * Validity of one reader's input, as far as that reader is concerned (informational: a reader may
 * accept what the model cannot use). safetensors/sharded: the format only (NaN is fine); config: the
 * file alone; tokenizer: the tokenizer files against vocab_size; data: enough UTF-8 text for AWQ.
 */
export function readerVerdict(target: Target, input: string, tk: Tokenizer): Verdict | null {
  if (target === "safetensors") {
    const c = stCheck(new Uint8Array(fs.readFileSync(input)));
    return "valid" in c ? c : VALID;
  }
  if (target === "sharded") {
    const c = weightsCheck(fs.statSync(input).isDirectory() ? input : path.dirname(input));
    return "valid" in c ? c : VALID;
  }
  if (target === "config") {
    const j = readStrictJson(input);
    if ("valid" in j) return bad(`config.json: ${j.why}`);
    const c = configCheck(j.json);
    return "valid" in c ? c : VALID;
  }
  if (target === "tokenizer") {
    const c = tokenizerCheck(input, 512);
    return "valid" in c ? c : VALID;
  }
  if (target === "data") return textCheck(input, tk);
  return null;
}

// --- case plans ----------------------------------------------------------------------------------

export interface CasePlan {
  readonly id: number;
  readonly kind: Kind;
  readonly target: Target;
  readonly mutation: string;
  /** files of the case folder, relative path -> bytes (null: a folder), parents before children */
  readonly files: readonly (readonly [string, Uint8Array | null])[];
  /** what the target opens, relative to the case folder */
  readonly input: string;
  /** AWQ calibration text, relative to the case folder */
  readonly calib?: string;
  readonly groupSize: number;
  readonly sym: boolean;
}

const KIND_WEIGHTS: readonly (readonly [Kind, number])[] = [["safetensors", 25], ["sharded", 12], ["gguf", 20], ["config", 18], ["tokenizer", 12], ["text", 13]];
const TARGET_WEIGHTS: Readonly<Record<Kind, readonly (readonly [Target, number])[]>> = {
  safetensors: [["safetensors", 45], ["inspect", 20], ["quantize", 30], ["quantize-awq", 5]],
  sharded: [["sharded", 45], ["inspect", 20], ["quantize", 30], ["quantize-awq", 5]],
  gguf: [["gguf", 75], ["inspect", 25]],
  config: [["config", 45], ["inspect", 20], ["quantize", 30], ["quantize-awq", 5]],
  tokenizer: [["tokenizer", 50], ["quantize", 35], ["quantize-awq", 15]],
  text: [["data", 65], ["quantize-awq", 35]],
};

/** (corpus, run seed, case id) -> the case: its mutant files, target and options. Deterministic. */
export function planCase(corpus: Corpus, seed: number, id: number): CasePlan {
  const r = new Rand(caseSeed(seed, id));
  const kind = r.weighted(KIND_WEIGHTS);
  const target = r.weighted(TARGET_WEIGHTS[kind]);
  const groupSize = r.pick([32, 64, 128]);
  const sym = r.chance(0.25);
  const files: [string, Uint8Array | null][] = [];
  const modelFolder = (replace: ReadonlyMap<string, Uint8Array | null>, sharded = false) => {
    files.push(["model", null]);
    const names = new Map<string, Uint8Array | null>(corpus.model);
    if (sharded) {
      names.delete("model.safetensors");
      for (const [n, b] of corpus.shards) names.set(n, b);
    }
    for (const [n, b] of replace) names.set(n, b);
    for (const [n, b] of names) if (b) files.push([`model/${n}`, b]);
  };
  const plan = (mutation: string, input: string, calib?: string): CasePlan => {
    if (target === "quantize-awq" && calib === undefined) {
      files.push(["calib.txt", corpus.textShort]);
      calib = "calib.txt";
    }
    return { id, kind, target, mutation, files, input, calib, groupSize, sym };
  };
  switch (kind) {
    case "safetensors": {
      const m = mutateSafetensors(r, corpus.model.get("model.safetensors")!);
      if (target === "safetensors") {
        files.push(["model.safetensors", m.bytes]);
        return plan(m.desc, "model.safetensors");
      }
      modelFolder(new Map([["model.safetensors", m.bytes]]));
      return plan(m.desc, "model");
    }
    case "sharded": {
      const m = mutateSharded(r, corpus.shards, corpus.model.get("model.safetensors")!);
      if (target === "sharded") {
        files.push(["model", null]);
        const names = new Map<string, Uint8Array | null>(corpus.shards);
        for (const [n, b] of m.files) names.set(n, b);
        for (const [n, b] of names) if (b) files.push([`model/${n}`, b]);
        return plan(m.desc, r.chance(0.8) ? "model" : `model/${INDEX}`);
      }
      modelFolder(m.files, true);
      return plan(m.desc, "model");
    }
    case "gguf": {
      const f16 = r.chance(0.2);
      const m = mutateGguf(r, f16 ? corpus.gguf16 : corpus.gguf);
      files.push(["model.gguf", m.bytes]);
      return plan(`${f16 ? "(F16) " : ""}${m.desc}`, "model.gguf");
    }
    case "config": {
      const m = mutateConfig(r, corpus.model.get("config.json")!);
      if (target === "config") {
        files.push(["config.json", m.bytes]);
        return plan(m.desc, "config.json");
      }
      modelFolder(new Map([["config.json", m.bytes]]));
      return plan(m.desc, "model");
    }
    case "tokenizer": {
      const m = mutateTokenizer(r, corpus.model.get("tokenizer.json")!, corpus.model.get("tokenizer_config.json")!);
      const replace = new Map<string, Uint8Array | null>();
      if (m.tokenizer !== undefined) replace.set("tokenizer.json", m.tokenizer);
      if (m.config !== undefined) replace.set("tokenizer_config.json", m.config);
      if (target === "tokenizer") {
        files.push(["model", null]);
        for (const n of ["config.json", "tokenizer.json", "tokenizer_config.json"]) {
          const b = replace.has(n) ? replace.get(n) : corpus.model.get(n);
          if (b) files.push([`model/${n}`, b]);
        }
        return plan(m.desc, "model");
      }
      modelFolder(replace);
      return plan(m.desc, "model");
    }
    case "text": {
      const m = mutateText(r, corpus.text, corpus.textShort);
      files.push(...m.files);
      if (target === "data") return plan(m.desc, m.input);
      modelFolder(new Map());
      return plan(m.desc, "model", m.input);
    }
  }
}

// --- figures ------------------------------------------------------------------------------------

export interface Tally {
  cases: number;
  typed: number;
  accepted: number;
  crash: number;
  hang: number;
  "invalid-output": number;
  /** informational: accepted although the oracle says invalid (readers: format; inspect: no oracle) */
  acceptedInvalid: number;
  /** informational: a typed error although the oracle says valid */
  rejectedValid: number;
  /** informational: a failed quantize left its partial output folder behind */
  partialLeft: number;
}

const emptyTally = (): Tally => ({ cases: 0, typed: 0, accepted: 0, crash: 0, hang: 0, "invalid-output": 0, acceptedInvalid: 0, rejectedValid: 0, partialLeft: 0 });

function add(t: Tally, r: CaseResult): void {
  t.cases++;
  t[r.outcome]++;
  if (r.outcome === "accepted" && r.valid === false) t.acceptedInvalid++;
  if (r.outcome === "typed" && r.valid === true) t.rejectedValid++;
  if (r.partialLeft) t.partialLeft++;
}

export interface Figures {
  overall: Tally;
  byTarget: Record<string, Tally>;
  byKind: Record<string, Tally>;
}

export function figures(results: readonly CaseResult[]): Figures {
  const f: Figures = { overall: emptyTally(), byTarget: {}, byKind: {} };
  for (const r of results) {
    add(f.overall, r);
    add((f.byTarget[r.target] ??= emptyTally()), r);
    add((f.byKind[r.kind] ??= emptyTally()), r);
  }
  return f;
}

/** Figures -> a Markdown table (one row per target or kind, then the total). */
export function formatTable(label: string, rows: Record<string, Tally>, overall: Tally): string {
  const cols: [string, (t: Tally) => number][] = [
    ["cases", (t) => t.cases], ["typed errors", (t) => t.typed], ["accepted", (t) => t.accepted], ["crashes", (t) => t.crash],
    ["hangs", (t) => t.hang], ["outputs from invalid input", (t) => t["invalid-output"]],
    ["(accepted, invalid)", (t) => t.acceptedInvalid], ["(typed, valid)", (t) => t.rejectedValid],
  ];
  const lines = [`| ${label} | ${cols.map((c) => c[0]).join(" | ")} |`, `|---|${cols.map(() => "---:").join("|")}|`];
  for (const [name, t] of Object.entries(rows).sort((a, b) => b[1].cases - a[1].cases)) lines.push(`| ${name} | ${cols.map((c) => c[1](t)).join(" | ")} |`);
  lines.push(`| **all** | ${cols.map((c) => `**${c[1](overall)}**`).join(" | ")} |`);
  return lines.join("\n");
}

/** The first `n` results of each failing outcome, one paragraph each. */
export function formatFindings(results: readonly CaseResult[], n = 5): string {
  const out: string[] = [];
  for (const o of ["crash", "hang", "invalid-output"] as const) {
    const xs = results.filter((r) => r.outcome === o);
    if (!xs.length) continue;
    out.push(`${o}: ${xs.length} case(s)`);
    for (const r of xs.slice(0, n)) {
      out.push(`  #${r.id} ${r.kind} -> ${r.target}${r.exitCode !== undefined ? ` (exit ${r.exitCode})` : ""}: ${r.mutation}`);
      if (r.why && o === "invalid-output") out.push(`      oracle: ${r.why}`);
      if (r.message) out.push(`      ${r.message.split("\n").slice(0, 4).join("\n      ")}`);
    }
  }
  return out.length ? out.join("\n") : "no crashes, hangs or outputs from invalid input";
}
