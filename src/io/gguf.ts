// io/gguf.ts — GGUF (llama.cpp's model file, versions 2 and 3): a bounded, validated reader of the
// header, metadata (every value type, nested arrays) and tensor infos; F32/F16/BF16 (and plain
// integer) tensors read one at a time; llama metadata -> the same LlamaConfig as config.json;
// tokenizer.ggml.* SentencePiece arrays -> an HF tokenizer.json (as transformers' SpmConverter builds
// it); HF names and orientation restored, with llama.cpp's Q/K row permutation undone. And a streaming
// writer, used to export an HF checkpoint to GGUF (F32/F16/BF16 for now).
//
// Layout: "GGUF" | u32 version | u64 n_tensors | u64 n_kv | kv* | tensor_info* | pad to alignment | data
//   kv          = string key | u32 type | value          string = u64 length | UTF-8 bytes
//   tensor_info = string name | u32 n_dims | u64 ne[n_dims] (ne[0] fastest) | u32 ggml_type | u64 offset
// Offsets are relative to the data start and multiples of general.alignment (default 32).
// Not here: quantized GGUF block formats (Q4_0, Q4_K, ...) — their sizes are known, reading them is later.

import * as path from "node:path";
import { InputError, UnsupportedModelError, UsageError } from "../errors.ts";
import { type LlamaConfig, type RopeScaling, tensorRole, type TensorRole } from "../common/llama.ts";
import { AtomicFile, InputFile } from "./file.ts";
import { DTYPE_BYTES, type DType, type HostTensor, type ReadAs, type TensorData, type TensorInfo, numelOf, readTensorData } from "./safetensors.ts";
import { TextTokenizer } from "./tokenizer.ts";

// --- value types -------------------------------------------------------------------------------

export const GGUF_TYPE = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9,
  UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GGUFType = (typeof GGUF_TYPE)[keyof typeof GGUF_TYPE];

/** Numeric arrays are typed arrays; 64-bit integers are bigint (BigInt64Array / BigUint64Array). */
export type GGUFArrayValues = TensorData | Int8Array | Int16Array | Float64Array | string[] | boolean[] | GGUFArray[];
export interface GGUFArray {
  readonly elemType: GGUFType;
  readonly values: GGUFArrayValues;
}
export type GGUFScalar = number | bigint | boolean | string;
export interface GGUFValue {
  readonly type: GGUFType;
  readonly value: GGUFScalar | GGUFArray;
}

const SCALAR_BYTES: Partial<Record<GGUFType, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

// --- ggml tensor types -------------------------------------------------------------------------

/** ggml_type id -> name, elements per block, bytes per block (ggml.c type_traits). */
export const GGML_TYPES: Readonly<Record<number, { name: string; block: number; bytes: number; dtype?: DType }>> = {
  0: { name: "F32", block: 1, bytes: 4, dtype: "F32" },
  1: { name: "F16", block: 1, bytes: 2, dtype: "F16" },
  2: { name: "Q4_0", block: 32, bytes: 18 },
  3: { name: "Q4_1", block: 32, bytes: 20 },
  6: { name: "Q5_0", block: 32, bytes: 22 },
  7: { name: "Q5_1", block: 32, bytes: 24 },
  8: { name: "Q8_0", block: 32, bytes: 34 },
  9: { name: "Q8_1", block: 32, bytes: 36 },
  10: { name: "Q2_K", block: 256, bytes: 84 },
  11: { name: "Q3_K", block: 256, bytes: 110 },
  12: { name: "Q4_K", block: 256, bytes: 144 },
  13: { name: "Q5_K", block: 256, bytes: 176 },
  14: { name: "Q6_K", block: 256, bytes: 210 },
  15: { name: "Q8_K", block: 256, bytes: 292 },
  16: { name: "IQ2_XXS", block: 256, bytes: 66 },
  17: { name: "IQ2_XS", block: 256, bytes: 74 },
  18: { name: "IQ3_XXS", block: 256, bytes: 98 },
  19: { name: "IQ1_S", block: 256, bytes: 50 },
  20: { name: "IQ4_NL", block: 32, bytes: 18 },
  21: { name: "IQ3_S", block: 256, bytes: 110 },
  22: { name: "IQ2_S", block: 256, bytes: 82 },
  23: { name: "IQ4_XS", block: 256, bytes: 136 },
  24: { name: "I8", block: 1, bytes: 1, dtype: "I8" },
  25: { name: "I16", block: 1, bytes: 2, dtype: "I16" },
  26: { name: "I32", block: 1, bytes: 4, dtype: "I32" },
  27: { name: "I64", block: 1, bytes: 8, dtype: "I64" },
  28: { name: "F64", block: 1, bytes: 8, dtype: "F64" },
  29: { name: "IQ1_M", block: 256, bytes: 56 },
  30: { name: "BF16", block: 1, bytes: 2, dtype: "BF16" },
};
const GGML_ID: Readonly<Record<string, number>> = Object.fromEntries(Object.entries(GGML_TYPES).map(([k, v]) => [v.name, Number(k)]));

export interface GGUFTensorInfo {
  readonly name: string;
  /** ggml order: ne[0] is the fastest-varying dimension */
  readonly ne: readonly number[];
  /** row-major shape (reversed ne), the orientation safetensors uses */
  readonly shape: readonly number[];
  readonly ggmlType: number;
  readonly typeName: string;
  readonly numel: number;
  readonly byteLength: number;
  /** absolute offset in the file, bytes */
  readonly offset: number;
}

// --- reader ------------------------------------------------------------------------------------

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Most bytes of header (metadata + tensor infos) the reader will hold; bigger is treated as corrupt. */
export const MAX_GGUF_HEADER_BYTES = 512 * 1024 * 1024;
const MAX_TENSORS = 1 << 20;
const MAX_KV = 1 << 20;
const MAX_ARRAY_DEPTH = 8;
const GGML_MAX_DIMS = 4;

const NEED_MORE = Symbol("need more header bytes");
// ignoreBOM: strings are taken verbatim (a key that starts with U+FEFF is not the key without it)
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Lenient = new TextDecoder("utf-8", { ignoreBOM: true });

/** Synchronous cursor over the header bytes read so far; throws NEED_MORE when they run out early. */
class Cursor {
  pos = 0;
  private readonly dv: DataView;
  constructor(private readonly b: Uint8Array, private readonly fileSize: number, private readonly file: string) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  need(n: number, field: string): void {
    if (this.pos + n <= this.b.byteLength) return;
    if (this.pos + n > this.fileSize) {
      throw new InputError(this.file, field, `truncated: needs ${n} bytes at offset ${this.pos}, the file has ${this.fileSize}`,
        "the file is incomplete; download it again");
    }
    throw NEED_MORE;
  }
  u32(field: string): number { this.need(4, field); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  u64(field: string): bigint { this.need(8, field); const v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return v; }
  /** u64 count of items of at least `minBytes` each; more than the rest of the file can hold is absurd. */
  count(field: string, minBytes: number, cap = Number.MAX_SAFE_INTEGER): number {
    const n = this.u64(field);
    const room = Math.floor((this.fileSize - this.pos) / Math.max(1, minBytes));
    if (n > BigInt(Math.min(room, cap))) {
      throw new InputError(this.file, field,
        `absurd count ${n}: the rest of the file holds at most ${Math.min(room, cap)} (truncated or corrupted file)`,
        "the file is incomplete or not GGUF; download it again");
    }
    return Number(n);
  }
  bytes(n: number, field: string): Uint8Array { this.need(n, field); const v = this.b.subarray(this.pos, this.pos + n); this.pos += n; return v; }
  str(field: string, strict: boolean): string {
    const n = this.count(field, 1, MAX_GGUF_HEADER_BYTES);
    const raw = this.bytes(n, field);
    if (!strict) return utf8Lenient.decode(raw);
    try {
      return utf8Strict.decode(raw);
    } catch {
      throw new InputError(this.file, field, "string is not valid UTF-8", "the file is corrupted");
    }
  }
  scalar(type: GGUFType, field: string): GGUFScalar {
    const size = SCALAR_BYTES[type];
    if (type === GGUF_TYPE.STRING) return this.str(field, false);
    if (size === undefined) throw new InputError(this.file, field, `unknown value type ${type}`);
    this.need(size, field);
    const p = this.pos;
    this.pos += size;
    switch (type) {
      case 0: return this.dv.getUint8(p);
      case 1: return this.dv.getInt8(p);
      case 2: return this.dv.getUint16(p, true);
      case 3: return this.dv.getInt16(p, true);
      case 4: return this.dv.getUint32(p, true);
      case 5: return this.dv.getInt32(p, true);
      case 6: return this.dv.getFloat32(p, true);
      case 7: {
        const v = this.dv.getUint8(p);
        if (v > 1) throw new InputError(this.file, field, `bool value ${v} is not 0 or 1`);
        return v === 1;
      }
      case 10: return this.dv.getBigUint64(p, true);
      case 11: return this.dv.getBigInt64(p, true);
      default: return this.dv.getFloat64(p, true);
    }
  }
  value(type: number, field: string, depth = 0): GGUFScalar | GGUFArray {
    if (type !== GGUF_TYPE.ARRAY) {
      if (type > 12 || type < 0) throw new InputError(this.file, field, `unknown value type ${type}`, "the file is corrupted or uses a newer GGUF");
      return this.scalar(type as GGUFType, field);
    }
    if (depth >= MAX_ARRAY_DEPTH) throw new InputError(this.file, field, `arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
    const elemType = this.u32(field);
    if (elemType > 12) throw new InputError(this.file, field, `unknown array element type ${elemType}`);
    const et = elemType as GGUFType;
    const minBytes = et === GGUF_TYPE.STRING ? 8 : et === GGUF_TYPE.ARRAY ? 12 : SCALAR_BYTES[et]!;
    const n = this.count(field, minBytes);
    if (et === GGUF_TYPE.STRING) {
      const out: string[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = this.str(field, false);
      return { elemType: et, values: out };
    }
    if (et === GGUF_TYPE.ARRAY) {
      const out: GGUFArray[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = this.value(GGUF_TYPE.ARRAY, field, depth + 1) as GGUFArray;
      return { elemType: et, values: out };
    }
    if (et === GGUF_TYPE.BOOL) {
      const raw = this.bytes(n, field);
      return { elemType: et, values: Array.from(raw, (v) => v !== 0) };
    }
    const raw = this.bytes(n * minBytes, field).slice(); // copy: aligned, and detached from the header window
    return { elemType: et, values: numericArray(et, raw.buffer) };
  }
}

/** f32 value -> the shortest decimal whose f32 rounding is that value. */
function shortestF32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

function numericArray(t: GGUFType, buf: ArrayBuffer): GGUFArrayValues {
  switch (t) {
    case 0: return new Uint8Array(buf);
    case 1: return new Int8Array(buf);
    case 2: return new Uint16Array(buf);
    case 3: return new Int16Array(buf);
    case 4: return new Uint32Array(buf);
    case 5: return new Int32Array(buf);
    case 6: return new Float32Array(buf);
    case 10: return new BigUint64Array(buf);
    case 11: return new BigInt64Array(buf);
    default: return new Float64Array(buf);
  }
}

export interface GGUFHeader {
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GGUFValue>;
  readonly tensors: readonly GGUFTensorInfo[];
  readonly alignment: number;
  readonly dataStart: number;
}

/** (header bytes read so far [k], file size, file name) -> header; throws NEED_MORE if k is too short. */
function parseGGUFHeader(b: Uint8Array, fileSize: number, file: string): GGUFHeader {
  const c = new Cursor(b, fileSize, file);
  if (c.u32("magic") !== GGUF_MAGIC) throw new InputError(file, "magic", "not a GGUF file (magic is not 'GGUF')", "pass a .gguf file or a Hugging Face folder");
  const version = c.u32("version");
  if (version !== 2 && version !== 3) {
    throw new InputError(file, "version", `unsupported GGUF version ${version}; supported: 2, 3`,
      version === 1 ? "GGUF v1 is obsolete; convert the model again with a current llama.cpp" : "the file is corrupted or newer than this reader");
  }
  const nTensors = c.count("tensor_count", 4 + 8 + 4 + 4 + 8, MAX_TENSORS);
  const nKv = c.count("metadata_kv_count", 8 + 4 + 1, MAX_KV);
  const metadata = new Map<string, GGUFValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str(`metadata key #${i}`, true);
    if (metadata.has(key)) throw new InputError(file, key, "metadata key appears twice");
    const type = c.u32(key);
    const value = c.value(type, key);
    metadata.set(key, { type: type as GGUFType, value });
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al !== undefined) {
    const v = al.value;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || (v & (v - 1)) !== 0) {
      throw new InputError(file, "general.alignment", `must be a power of two, got ${String(v)}`);
    }
    alignment = v;
  }
  const raw: { name: string; ne: number[]; type: number; off: bigint }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`tensor #${i} name`, true);
    const nd = c.u32(name);
    if (nd > GGML_MAX_DIMS) throw new InputError(file, name, `n_dims ${nd} > ${GGML_MAX_DIMS}`, "the file is corrupted");
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) {
      const x = c.u64(name);
      if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new InputError(file, name, `dimension ${x} is absurd`);
      ne.push(Number(x));
    }
    const type = c.u32(name);
    const off = c.u64(name);
    raw.push({ name, ne, type, off });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  const seen = new Set<string>();
  const tensors: GGUFTensorInfo[] = raw.map(({ name, ne, type, off }) => {
    if (seen.has(name)) throw new InputError(file, name, "tensor name appears twice");
    seen.add(name);
    const tt = GGML_TYPES[type];
    if (!tt) throw new InputError(file, name, `unknown ggml type ${type}`, "the file uses a tensor type this reader does not know");
    const numel = numelOf(ne);
    if (!Number.isSafeInteger(numel)) throw new InputError(file, name, `shape ${JSON.stringify(ne)} is absurd`);
    if ((ne[0] ?? 1) % tt.block !== 0) throw new InputError(file, name, `ne[0] = ${ne[0]} is not a multiple of the ${tt.name} block (${tt.block})`);
    const byteLength = (numel / tt.block) * tt.bytes;
    if (off % BigInt(alignment) !== 0n) {
      throw new InputError(file, name, `data offset ${off} is not a multiple of the alignment ${alignment}`, "the file is corrupted (misaligned tensor data)");
    }
    if (BigInt(dataStart) + off + BigInt(byteLength) > BigInt(fileSize)) {
      throw new InputError(file, name, `data [${off}, +${byteLength}) runs past the end of the file (${fileSize} bytes)`,
        "the file is truncated; download it again");
    }
    return { name, ne, shape: [...ne].reverse(), ggmlType: type, typeName: tt.name, numel, byteLength, offset: dataStart + Number(off) };
  });
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1];
    if (sorted[i].offset < p.offset + p.byteLength) throw new InputError(file, sorted[i].name, `data overlaps tensor '${p.name}'`);
  }
  return { version, metadata, tensors, alignment, dataStart };
}

/** One open .gguf file. Tensor access by GGUF name (`read`) or by HF name with HF layout (`readHF`). */
export class GGUFFile {
  private constructor(
    private readonly f: InputFile,
    readonly version: number,
    readonly metadata: ReadonlyMap<string, GGUFValue>,
    readonly tensors: ReadonlyMap<string, GGUFTensorInfo>,
    readonly alignment: number,
    readonly dataStart: number,
  ) {}

  get path(): string { return this.f.path; }
  get size(): number { return this.f.size; }

  /** path -> validated GGUF; reads the header in growing windows (1 MiB, doubling, at most 512 MiB). */
  static async open(file: string): Promise<GGUFFile> {
    const f = await InputFile.open(file);
    try {
      let window = Math.min(f.size, 1 << 20);
      for (;;) {
        const bytes = await f.read(0, window, "header");
        try {
          const h = parseGGUFHeader(bytes, f.size, file);
          return new GGUFFile(f, h.version, h.metadata, new Map(h.tensors.map((t) => [t.name, t])), h.alignment, h.dataStart);
        } catch (e) {
          if (e !== NEED_MORE) throw e;
          if (window >= MAX_GGUF_HEADER_BYTES) {
            throw new InputError(file, "header", `metadata and tensor infos exceed ${MAX_GGUF_HEADER_BYTES} bytes`, "the file is corrupted");
          }
          window = Math.min(f.size, window * 2, MAX_GGUF_HEADER_BYTES);
        }
      }
    } catch (e) {
      await f.close();
      throw e;
    }
  }

  async close(): Promise<void> { await this.f.close(); }

  /** key -> value or undefined. */
  get(key: string): GGUFScalar | GGUFArray | undefined {
    return this.metadata.get(key)?.value;
  }
  /** key -> integer (from any integer type); missing: `dflt` or an InputError naming the key. */
  int(key: string, dflt?: number): number {
    const v = this.get(key);
    if (v === undefined) {
      if (dflt !== undefined) return dflt;
      throw new InputError(this.path, key, "required metadata key is missing", "the GGUF was not made by a llama.cpp converter for this architecture");
    }
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw new InputError(this.path, key, `must be a non-negative integer, got ${String(v)}`);
    return n;
  }
  /** key -> number; a FLOAT32 value comes back as the shortest decimal that rounds to it (1e-5, not 9.99999974e-6). */
  float(key: string, dflt?: number): number {
    const e = this.metadata.get(key);
    if (e === undefined && dflt !== undefined) return dflt;
    const v = e?.value;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new InputError(this.path, key, v === undefined ? "required metadata key is missing" : `must be a number, got ${String(v)}`);
    return e!.type === GGUF_TYPE.FLOAT32 ? shortestF32(v) : v;
  }
  string(key: string): string | undefined {
    const v = this.get(key);
    if (v !== undefined && typeof v !== "string") throw new InputError(this.path, key, "must be a string");
    return v;
  }
  array(key: string, elemType?: GGUFType): GGUFArray | undefined {
    const v = this.get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "object" || !("elemType" in v) || (elemType !== undefined && v.elemType !== elemType)) {
      throw new InputError(this.path, key, `must be an array${elemType !== undefined ? ` of type ${elemType}` : ""}`);
    }
    return v;
  }

  info(name: string): GGUFTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new InputError(this.path, name, "no such tensor in this GGUF");
    return t;
  }

  /** GGUF tensor name -> host tensor as stored (GGUF name, row-major shape = reversed ne). */
  async read(name: string, as: ReadAs = "raw"): Promise<HostTensor> {
    const t = this.info(name);
    const dtype = GGML_TYPES[t.ggmlType].dtype;
    if (!dtype) {
      throw new InputError(this.path, name, `GGUF tensor type ${t.typeName} cannot be read yet (F32, F16, BF16 and integer types can)`,
        "use the model's Hugging Face safetensors checkpoint, or an F16/BF16/F32 GGUF");
    }
    const info: TensorInfo = { name, dtype, shape: t.shape, numel: t.numel, byteLength: t.byteLength, offset: t.offset, file: this.path };
    return readTensorData(this.f, info, as);
  }

  /** HF tensor names this file holds (unknown GGUF names are left out). */
  hfNames(): string[] {
    return [...this.tensors.keys()].map(hfNameOf).filter((n): n is string => n !== null);
  }

  /**
   * HF name -> host tensor in HF layout: renamed, and for architecture "llama" the q/k rows put back
   * from llama.cpp's interleaved-pair order into HF's rotate_half order.
   */
  async readHF(hfName: string, as: ReadAs = "raw"): Promise<HostTensor> {
    const role = tensorRole(hfName);
    const gname = role ? ggufNameOf(role) : null;
    if (!gname || !this.tensors.has(gname)) throw new InputError(this.path, hfName, `no GGUF tensor for this name${gname ? ` (looked for '${gname}')` : ""}`);
    const t = await this.read(gname, as);
    let data = t.data;
    if (this.string("general.architecture") === "llama" && role!.layer !== null && (role!.role === "q_proj" || role!.role === "k_proj")) {
      const heads = this.int(role!.role === "q_proj" ? "llama.attention.head_count" : "llama.attention.head_count_kv",
        role!.role === "k_proj" ? this.int("llama.attention.head_count") : undefined);
      data = permuteQK(data, t.shape, heads, "from-gguf");
    }
    return { name: hfName, dtype: t.dtype, shape: t.shape, data };
  }
}

// --- names and the Q/K permutation -------------------------------------------------------------

const GGUF_LAYER_NAMES: Record<string, string> = {
  q_proj: "attn_q", k_proj: "attn_k", v_proj: "attn_v", o_proj: "attn_output",
  gate_proj: "ffn_gate", up_proj: "ffn_up", down_proj: "ffn_down",
  input_layernorm: "attn_norm", post_attention_layernorm: "ffn_norm",
};
const HF_LAYER_NAMES = Object.fromEntries(Object.entries(GGUF_LAYER_NAMES).map(([k, v]) => [v, k]));

/** Role -> llama.cpp tensor name (token_embd.weight, blk.N.attn_q.weight, output_norm.weight, ...). */
export function ggufNameOf(r: TensorRole): string {
  if (r.layer === null) return r.role === "embed_tokens" ? "token_embd.weight" : r.role === "norm" ? "output_norm.weight" : "output.weight";
  return `blk.${r.layer}.${GGUF_LAYER_NAMES[r.role]}.${r.param}`;
}

/** llama.cpp tensor name -> HF name, or null for names outside the Llama family (e.g. rope_freqs.weight). */
export function hfNameOf(gguf: string): string | null {
  if (gguf === "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf === "output_norm.weight") return "model.norm.weight";
  if (gguf === "output.weight") return "lm_head.weight";
  const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(gguf);
  if (!m || !HF_LAYER_NAMES[m[2]]) return null;
  const role = HF_LAYER_NAMES[m[2]];
  const block = role.endsWith("layernorm") ? "" : ["gate_proj", "up_proj", "down_proj"].includes(role) ? "mlp." : "self_attn.";
  if (m[3] === "bias" && block === "") return null;
  return `model.layers.${m[1]}.${block}${role}.${m[3]}`;
}

/**
 * Rows of a q/k weight [heads*hd, in] (or bias [heads*hd]) between HF's rotate_half order and
 * llama.cpp's interleaved pairs (convert_hf_to_gguf.py `permute`):
 *   gguf row h*hd + 2j + t  <->  hf row h*hd + t*(hd/2) + j,   t in {0,1}, j < hd/2.
 */
export function permuteQK<T extends TensorData>(data: T, shape: readonly number[], heads: number, dir: "to-gguf" | "from-gguf"): T {
  const rows = shape[0];
  const cols = shape.length > 1 ? numelOf(shape.slice(1)) : 1;
  if (heads <= 0 || rows % heads !== 0 || (rows / heads) % 2 !== 0) {
    throw new UsageError(`permuteQK: ${rows} rows do not split into ${heads} heads of even size`);
  }
  const hd = rows / heads;
  const out = new (data.constructor as new (n: number) => T)(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd / 2; j++) {
      for (let t = 0; t < 2; t++) {
        const g = h * hd + 2 * j + t;
        const f = h * hd + t * (hd / 2) + j;
        const [src, dst] = dir === "to-gguf" ? [f, g] : [g, f];
        out.set(data.subarray(src * cols, (src + 1) * cols) as never, dst * cols);
      }
    }
  }
  return out;
}

// --- config from metadata ----------------------------------------------------------------------

const GGUF_ARCHS: Readonly<Record<string, LlamaConfig["modelType"]>> = { llama: "llama", qwen2: "qwen2" };

/** GGUF metadata ({arch}.* keys, tensor presence) -> the same LlamaConfig config.json gives. */
export function configFromGGUF(g: GGUFFile): LlamaConfig {
  const arch = g.string("general.architecture");
  if (arch === undefined) throw new InputError(g.path, "general.architecture", "required metadata key is missing");
  const modelType = GGUF_ARCHS[arch];
  if (!modelType) throw new UnsupportedModelError(g.path, "general.architecture", arch, Object.keys(GGUF_ARCHS));
  if (g.tensors.has("rope_freqs.weight")) {
    throw new UnsupportedModelError(g.path, "rope_freqs.weight", "per-frequency rope factors (Llama 3.1 rope scaling)", ["GGUF without rope_freqs"]);
  }
  const k = (s: string) => `${arch}.${s}`;
  const D = g.int(k("embedding_length"));
  const H = g.int(k("attention.head_count"));
  const HKV = g.int(k("attention.head_count_kv"), H);
  const headDim = g.int(k("attention.key_length"), g.int(k("rope.dimension_count"), H > 0 ? Math.floor(D / H) : 0));
  if (H === 0 || HKV === 0 || H % HKV !== 0) throw new InputError(g.path, k("attention.head_count_kv"), `${HKV} does not divide head_count ${H}`);
  const tokens = g.array("tokenizer.ggml.tokens", GGUF_TYPE.STRING);
  const emb = g.tensors.get("token_embd.weight");
  const vocabSize = g.int(k("vocab_size"), tokens ? tokens.values.length : emb ? emb.shape[0] : undefined);
  const scaleType = g.string(k("rope.scaling.type"));
  let ropeScaling: RopeScaling | null = null;
  if (scaleType === "linear") ropeScaling = { type: "linear", factor: g.float(k("rope.scaling.factor")) };
  else if (scaleType !== undefined && scaleType !== "none") {
    throw new UnsupportedModelError(g.path, k("rope.scaling.type"), scaleType, ["none", "linear"]);
  }
  const ft = g.get("general.file_type");
  const fileType = typeof ft === "number" ? ft : undefined;
  const eos = g.get("tokenizer.ggml.eos_token_id");
  const bos = g.get("tokenizer.ggml.bos_token_id");
  const cfg: LlamaConfig = {
    modelType,
    architecture: modelType === "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM",
    hiddenSize: D,
    intermediateSize: g.int(k("feed_forward_length")),
    numLayers: g.int(k("block_count")),
    numHeads: H,
    numKvHeads: HKV,
    headDim,
    vocabSize,
    maxPositionEmbeddings: g.int(k("context_length")),
    rmsNormEps: g.float(k("attention.layer_norm_rms_epsilon")),
    ropeTheta: g.float(k("rope.freq_base"), 10000),
    ropeScaling,
    qkvBias: g.tensors.has("blk.0.attn_q.bias"),
    oBias: g.tensors.has("blk.0.attn_output.bias"),
    mlpBias: g.tensors.has("blk.0.ffn_up.bias"),
    tieWordEmbeddings: !g.tensors.has("output.weight"),
    slidingWindow: null,
    bosTokenId: typeof bos === "number" ? bos : null,
    eosTokenIds: typeof eos === "number" ? [eos] : [],
    torchDtype: fileType === 0 ? "float32" : fileType === 1 ? "float16" : fileType === 32 ? "bfloat16" : null,
  };
  for (const [key, v] of [["embedding_length", D], ["feed_forward_length", cfg.intermediateSize], ["block_count", cfg.numLayers], ["head_count", H]] as const) {
    if (v <= 0) throw new InputError(g.path, k(key), "must be positive");
  }
  return cfg;
}

// --- tokenizer from metadata -------------------------------------------------------------------

/** SentencePiece token types as llama.cpp stores them (tokenizer.ggml.token_type). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * SentencePiece pieces [V] ('▁' for space), scores [V], types [V] -> HF tokenizer.json for a
 * byte-fallback BPE, as transformers' SpmConverter builds it: merges are every split of a piece into
 * two vocabulary pieces, ordered by the piece's score (higher first), then longer left part, then
 * longer right part, then (left id, right id).
 */
export function spmTokenizerJson(
  pieces: readonly string[], scores: ArrayLike<number>, types: ArrayLike<number>,
  special: { bos: number | null; eos: number | null; unk: number | null; addBos: boolean; addEos: boolean },
): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  const vocab: Record<string, number> = {};
  const ids = new Map<string, number>();
  pieces.forEach((p, i) => { if (!ids.has(p)) { ids.set(p, i); vocab[p] = i; } });
  const merges: { l: string; r: string; score: number; li: number; ri: number; order: number }[] = [];
  let order = 0;
  // both parts of a split are vocabulary pieces, so only split points at piece lengths can match:
  // linear in a piece's length (a corrupted file may hold a piece of a million characters)
  const chars = pieces.map((p) => [...p]);
  const lengths = [...new Set(chars.map((c) => c.length))].sort((a, b) => a - b);
  const hasLength = new Set(lengths);
  pieces.forEach((p, i) => {
    if (ids.get(p) !== i) return;
    const local: typeof merges = [];
    const n = chars[i].length;
    for (const s of lengths) {
      if (s < 1) continue;
      if (s >= n) break;
      if (!hasLength.has(n - s)) continue;
      const l = chars[i].slice(0, s).join(""), r = chars[i].slice(s).join("");
      const li = ids.get(l), ri = ids.get(r);
      if (li !== undefined && ri !== undefined) local.push({ l, r, score: scores[i], li, ri, order: 0 });
    }
    local.sort((a, b) => a.li - b.li || a.ri - b.ri);
    for (const m of local) merges.push({ ...m, order: order++ });
  });
  // transformers: sorted(merges, key=(score, len(left), len(right)), reverse=True), stable
  const len = (x: string) => [...x].length;
  merges.sort((a, b) => b.score - a.score || len(b.l) - len(a.l) || len(b.r) - len(a.r) || a.order - b.order);
  const added = pieces.map((p, i) => ({ p, i })).filter(({ i }) => types[i] === TOKEN_TYPE.CONTROL || types[i] === TOKEN_TYPE.UNKNOWN || types[i] === TOKEN_TYPE.USER_DEFINED)
    .map(({ p, i }) => ({ id: i, content: p, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[i] !== TOKEN_TYPE.USER_DEFINED }));
  const bosPiece = special.bos !== null ? pieces[special.bos] : null;
  const eosPiece = special.eos !== null ? pieces[special.eos] : null;
  const single: unknown[] = [];
  if (special.addBos && bosPiece !== null) single.push({ SpecialToken: { id: bosPiece, type_id: 0 } });
  single.push({ Sequence: { id: "A", type_id: 0 } });
  if (special.addEos && eosPiece !== null) single.push({ SpecialToken: { id: eosPiece, type_id: 0 } });
  const specialTokens: Record<string, unknown> = {};
  for (const [p, id] of [[bosPiece, special.bos], [eosPiece, special.eos]] as const) {
    if (p !== null && id !== null) specialTokens[p] = { id: p, ids: [id], tokens: [p] };
  }
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
    pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing", single, pair: [...single, { Sequence: { id: "B", type_id: 1 } }], special_tokens: specialTokens },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE", dropout: null, unk_token: special.unk !== null ? pieces[special.unk] : null, continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false,
      vocab, merges: merges.map((m) => [m.l, m.r]),
    },
  };
  const tokenizerConfig = {
    add_bos_token: special.addBos, add_eos_token: special.addEos, bos_token: bosPiece, eos_token: eosPiece,
    unk_token: special.unk !== null ? pieces[special.unk] : null, legacy: true, clean_up_tokenization_spaces: false,
  };
  return { tokenizerJson, tokenizerConfig };
}

/** tokenizer.ggml.* (model "llama": SentencePiece BPE) -> TextTokenizer equivalent to the HF one. */
export function tokenizerFromGGUF(g: GGUFFile): TextTokenizer {
  const { tokenizerJson, tokenizerConfig, bosId, eosId } = tokenizerJsonFromGGUF(g);
  return TextTokenizer.fromJSON(tokenizerJson, tokenizerConfig, g.path, { bosId, eosId });
}

/** tokenizer.ggml.* -> the tokenizer.json / tokenizer_config.json objects (see spmTokenizerJson). */
export function tokenizerJsonFromGGUF(g: GGUFFile): {
  tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown>; bosId: number | null; eosId: number | null;
} {
  const model = g.string("tokenizer.ggml.model");
  if (model !== "llama") {
    throw new UnsupportedModelError(g.path, "tokenizer.ggml.model", String(model), ["llama (SentencePiece BPE); for others use the HF tokenizer.json"]);
  }
  const tokens = g.array("tokenizer.ggml.tokens", GGUF_TYPE.STRING);
  if (!tokens) throw new InputError(g.path, "tokenizer.ggml.tokens", "required metadata key is missing");
  const pieces = tokens.values as string[];
  const V = pieces.length;
  const scores = g.array("tokenizer.ggml.scores", GGUF_TYPE.FLOAT32)?.values as Float32Array | undefined;
  const types = g.array("tokenizer.ggml.token_type", GGUF_TYPE.INT32)?.values as Int32Array | undefined;
  if (!scores) throw new InputError(g.path, "tokenizer.ggml.scores", "required for a SentencePiece tokenizer");
  if (scores.length !== V) throw new InputError(g.path, "tokenizer.ggml.scores", `${scores.length} scores for ${V} tokens`);
  if (types && types.length !== V) throw new InputError(g.path, "tokenizer.ggml.token_type", `${types.length} types for ${V} tokens`);
  const id = (key: string): number | null => {
    const v = g.get(key);
    if (v === undefined) return null;
    const n = g.int(key);
    if (n >= V) throw new InputError(g.path, key, `token id ${n} is outside the vocabulary (${V})`);
    return n;
  };
  const bool = (key: string, dflt: boolean) => {
    const v = g.get(key);
    return typeof v === "boolean" ? v : dflt;
  };
  const special = {
    bos: id("tokenizer.ggml.bos_token_id"), eos: id("tokenizer.ggml.eos_token_id"), unk: id("tokenizer.ggml.unknown_token_id"),
    addBos: bool("tokenizer.ggml.add_bos_token", true), addEos: bool("tokenizer.ggml.add_eos_token", false),
  };
  const t = types ?? Int32Array.from(pieces, (p, i) => (i === special.unk ? 2 : i === special.bos || i === special.eos ? 3 : /^<0x[0-9A-F]{2}>$/.test(p) ? 6 : 1));
  return { ...spmTokenizerJson(pieces, scores, t, special), bosId: special.bos, eosId: special.eos };
}

// --- writer ------------------------------------------------------------------------------------

export interface GGUFTensorSpec {
  readonly name: string;
  /** ggml type name: "F32" | "F16" | "BF16" (and plain integer types) */
  readonly type: string;
  /** row-major shape; written as ne = reversed */
  readonly shape: readonly number[];
}

const enc = new TextEncoder();

/** Growable little-endian byte sink for the header. */
class Sink {
  private buf = new Uint8Array(1 << 16);
  private dv = new DataView(this.buf.buffer);
  len = 0;
  private grow(n: number) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.dv = new DataView(nb.buffer);
  }
  u8(v: number) { this.grow(1); this.dv.setUint8(this.len, v); this.len += 1; }
  u32(v: number) { this.grow(4); this.dv.setUint32(this.len, v, true); this.len += 4; }
  u64(v: number | bigint) { this.grow(8); this.dv.setBigUint64(this.len, BigInt(v), true); this.len += 8; }
  bytes(b: Uint8Array) { this.grow(b.length); this.buf.set(b, this.len); this.len += b.length; }
  str(s: string) { const b = enc.encode(s); this.u64(b.length); this.bytes(b); }
  pad(alignment: number) { const n = (alignment - (this.len % alignment)) % alignment; this.grow(n); this.len += n; }
  scalar(type: GGUFType, v: GGUFScalar) {
    switch (type) {
      case 0: case 7: this.u8(typeof v === "boolean" ? Number(v) : Number(v)); break;
      case 1: this.grow(1); this.dv.setInt8(this.len, Number(v)); this.len += 1; break;
      case 2: this.grow(2); this.dv.setUint16(this.len, Number(v), true); this.len += 2; break;
      case 3: this.grow(2); this.dv.setInt16(this.len, Number(v), true); this.len += 2; break;
      case 4: this.u32(Number(v)); break;
      case 5: this.grow(4); this.dv.setInt32(this.len, Number(v), true); this.len += 4; break;
      case 6: this.grow(4); this.dv.setFloat32(this.len, Number(v), true); this.len += 4; break;
      case 8: this.str(String(v)); break;
      case 10: this.u64(BigInt(v as number | bigint)); break;
      case 11: this.grow(8); this.dv.setBigInt64(this.len, BigInt(v as number | bigint), true); this.len += 8; break;
      case 12: this.grow(8); this.dv.setFloat64(this.len, Number(v), true); this.len += 8; break;
      default: throw new UsageError(`GGUF writer: cannot write value type ${type}`);
    }
  }
  value(v: GGUFValue) {
    if (v.type !== GGUF_TYPE.ARRAY) return this.scalar(v.type, v.value as GGUFScalar);
    const a = v.value as GGUFArray;
    this.u32(a.elemType);
    const vals = a.values as ArrayLike<unknown>;
    this.u64(vals.length);
    for (let i = 0; i < vals.length; i++) {
      if (a.elemType === GGUF_TYPE.ARRAY) this.value({ type: GGUF_TYPE.ARRAY, value: vals[i] as GGUFArray });
      else this.scalar(a.elemType, vals[i] as GGUFScalar);
    }
  }
  view(): Uint8Array { return this.buf.subarray(0, this.len); }
}

/** Streaming GGUF v3 writer: header from (metadata, specs) first, then each tensor in spec order, then rename. */
export class GGUFWriter {
  #next = 0;
  private constructor(
    private readonly out: AtomicFile,
    private readonly specs: readonly GGUFTensorSpec[],
    private readonly sizes: readonly number[],
    private readonly alignment: number,
    private readonly protect: readonly string[],
  ) {}

  static async create(
    dest: string, metadata: ReadonlyMap<string, GGUFValue> | readonly (readonly [string, GGUFValue])[], specs: readonly GGUFTensorSpec[],
    opts: { protect?: readonly string[] } = {},
  ): Promise<GGUFWriter> {
    const kv = [...(metadata instanceof Map ? metadata.entries() : (metadata as readonly (readonly [string, GGUFValue])[]))];
    const al = kv.find(([k]) => k === "general.alignment")?.[1].value;
    const alignment = typeof al === "number" ? al : GGUF_DEFAULT_ALIGNMENT;
    const h = new Sink();
    h.u32(GGUF_MAGIC);
    h.u32(3);
    h.u64(specs.length);
    h.u64(kv.length);
    for (const [k, v] of kv) {
      h.str(k);
      h.u32(v.type);
      h.value(v);
    }
    const sizes: number[] = [];
    let off = 0;
    for (const s of specs) {
      const id = GGML_ID[s.type];
      const tt = GGML_TYPES[id];
      if (id === undefined || !tt.dtype) throw new UsageError(`GGUF writer: ${s.name} has type ${s.type}; the writer supports F32, F16, BF16 and integer types`);
      h.str(s.name);
      h.u32(s.shape.length);
      for (const d of [...s.shape].reverse()) h.u64(d);
      h.u32(id);
      h.u64(off);
      const n = numelOf(s.shape) * tt.bytes;
      sizes.push(n);
      off += Math.ceil(n / alignment) * alignment;
    }
    h.pad(alignment);
    const out = await AtomicFile.create(dest, opts.protect);
    try {
      await out.write(h.view());
    } catch (e) {
      await out.abort();
      throw e;
    }
    return new GGUFWriter(out, specs, sizes, alignment, opts.protect ?? []);
  }

  /** The next tensor's data (row-major, the spec's type), in spec order. */
  async write(name: string, data: ArrayBufferView): Promise<void> {
    const i = this.#next;
    const s = this.specs[i];
    if (!s || s.name !== name || data.byteLength !== this.sizes[i]) {
      await this.abort();
      throw new UsageError(`GGUF writer: expected ${s ? `'${s.name}' (${this.sizes[i]} bytes)` : "no more tensors"}, got '${name}' (${data.byteLength} bytes)`);
    }
    await this.out.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    const pad = (this.alignment - (data.byteLength % this.alignment)) % this.alignment;
    if (pad > 0 && i < this.specs.length - 1) await this.out.write(new Uint8Array(pad));
    this.#next++;
  }

  async close(): Promise<void> {
    if (this.#next !== this.specs.length) {
      await this.abort();
      throw new UsageError(`GGUF writer: closed after ${this.#next} of ${this.specs.length} tensors; nothing was written`);
    }
    await this.out.commit(this.protect);
  }

  async abort(): Promise<void> { await this.out.abort(); }
}

// --- HF -> GGUF export -------------------------------------------------------------------------

/** The subset of a checkpoint the exporter reads (SafetensorsCheckpoint satisfies it). */
export interface TensorSource {
  names(): string[];
  info(name: string): { shape: readonly number[]; dtype: DType };
  read(name: string, as?: ReadAs): Promise<HostTensor>;
}

const u32v = (v: number): GGUFValue => ({ type: GGUF_TYPE.UINT32, value: v });
const f32v = (v: number): GGUFValue => ({ type: GGUF_TYPE.FLOAT32, value: v });
const strv = (v: string): GGUFValue => ({ type: GGUF_TYPE.STRING, value: v });
const boolv = (v: boolean): GGUFValue => ({ type: GGUF_TYPE.BOOL, value: v });

/**
 * HF tokenizer.json (SentencePiece-style byte-fallback BPE) -> tokenizer.ggml.* arrays. Scores are
 * made so llama.cpp's score-greedy merging and the SpmConverter merge derivation both reproduce the
 * HF merge order: a piece first produced by merge rank r gets score -r; other pieces -(merges + id).
 */
export function ggufTokenizerMetadata(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>, file: string): [string, GGUFValue][] {
  const model = tokenizerJson.model as Record<string, unknown> | undefined;
  if (!model || model.type !== "BPE" || model.byte_fallback !== true) {
    throw new UnsupportedModelError(file, "model.type", String(model?.type) + (model?.byte_fallback ? "" : " without byte_fallback"), ["BPE with byte_fallback (SentencePiece-style)"]);
  }
  const vocab = model.vocab as Record<string, number>;
  const added = (tokenizerJson.added_tokens as { id: number; content: string; special: boolean }[] | undefined) ?? [];
  const V = Math.max(...Object.values(vocab), ...added.map((a) => a.id)) + 1;
  const pieces: string[] = new Array(V).fill("");
  for (const [p, i] of Object.entries(vocab)) pieces[i] = p;
  for (const a of added) pieces[a.id] = a.content;
  const merges = (model.merges as (string | [string, string])[]).map((m) => (typeof m === "string" ? m.split(" ") : m));
  const scores = new Float32Array(V).fill(NaN);
  merges.forEach(([l, r], rank) => {
    const id = vocab[l + r];
    if (id !== undefined && Number.isNaN(scores[id])) scores[id] = -rank;
  });
  for (let i = 0; i < V; i++) if (Number.isNaN(scores[i])) scores[i] = -(merges.length + i);
  const special = new Map(added.map((a) => [a.id, a]));
  const unk = typeof model.unk_token === "string" ? vocab[model.unk_token] : undefined;
  const types = Int32Array.from(pieces, (p, i) =>
    i === unk ? TOKEN_TYPE.UNKNOWN : special.get(i)?.special ? TOKEN_TYPE.CONTROL : special.has(i) ? TOKEN_TYPE.USER_DEFINED
      : /^<0x[0-9A-F]{2}>$/.test(p) ? TOKEN_TYPE.BYTE : TOKEN_TYPE.NORMAL);
  const tok = TextTokenizer.fromJSON(tokenizerJson, tokenizerConfig, file);
  const kv: [string, GGUFValue][] = [
    ["tokenizer.ggml.model", strv("llama")],
    ["tokenizer.ggml.tokens", { type: GGUF_TYPE.ARRAY, value: { elemType: GGUF_TYPE.STRING, values: pieces } }],
    ["tokenizer.ggml.scores", { type: GGUF_TYPE.ARRAY, value: { elemType: GGUF_TYPE.FLOAT32, values: scores } }],
    ["tokenizer.ggml.token_type", { type: GGUF_TYPE.ARRAY, value: { elemType: GGUF_TYPE.INT32, values: types } }],
  ];
  if (tok.bosId !== null) kv.push(["tokenizer.ggml.bos_token_id", u32v(tok.bosId)]);
  if (tok.eosId !== null) kv.push(["tokenizer.ggml.eos_token_id", u32v(tok.eosId)]);
  if (unk !== undefined) kv.push(["tokenizer.ggml.unknown_token_id", u32v(unk)]);
  kv.push(["tokenizer.ggml.add_bos_token", boolv(tok.addBos)], ["tokenizer.ggml.add_eos_token", boolv(tok.addEos)]);
  return kv;
}

/** LlamaConfig -> general.* and {arch}.* metadata, as llama.cpp's converter writes them. */
export function ggufModelMetadata(c: LlamaConfig, name: string, fileType: number): [string, GGUFValue][] {
  if (c.ropeScaling?.type === "llama3") {
    throw new UsageError("GGUF export of Llama 3.1 rope scaling (rope_freqs tensor) is not implemented yet");
  }
  const arch = c.modelType === "qwen2" ? "qwen2" : "llama";
  const kv: [string, GGUFValue][] = [
    ["general.architecture", strv(arch)],
    ["general.name", strv(name)],
    ["general.file_type", u32v(fileType)],
    [`${arch}.vocab_size`, u32v(c.vocabSize)],
    [`${arch}.context_length`, u32v(c.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32v(c.hiddenSize)],
    [`${arch}.block_count`, u32v(c.numLayers)],
    [`${arch}.feed_forward_length`, u32v(c.intermediateSize)],
    [`${arch}.rope.dimension_count`, u32v(c.headDim)],
    [`${arch}.attention.head_count`, u32v(c.numHeads)],
    [`${arch}.attention.head_count_kv`, u32v(c.numKvHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32v(c.rmsNormEps)],
    [`${arch}.rope.freq_base`, f32v(c.ropeTheta)],
  ];
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    kv.push([`${arch}.attention.key_length`, u32v(c.headDim)], [`${arch}.attention.value_length`, u32v(c.headDim)]);
  }
  if (c.ropeScaling?.type === "linear") {
    kv.push([`${arch}.rope.scaling.type`, strv("linear")], [`${arch}.rope.scaling.factor`, f32v(c.ropeScaling.factor)]);
  }
  return kv;
}

/**
 * (config, tensor source, tokenizer files, dest) -> GGUF file, streamed one tensor at a time.
 * Floating tensors are stored as `dtype` (default: as in the checkpoint); llama q/k rows permuted.
 */
export async function exportGGUF(
  c: LlamaConfig, src: TensorSource, tokenizer: { json: Record<string, unknown>; config: Record<string, unknown>; file: string },
  dest: string, opts: { dtype?: "F32" | "F16" | "BF16"; name?: string; protect?: readonly string[] } = {},
): Promise<void> {
  const names = src.names().filter((n) => tensorRole(n) !== null);
  const specs = names.map((n) => {
    const { shape, dtype } = src.info(n);
    const isFloat = dtype === "F32" || dtype === "F16" || dtype === "BF16";
    return { hf: n, name: ggufNameOf(tensorRole(n)!), type: isFloat ? opts.dtype ?? dtype : dtype, shape };
  });
  const types = new Set(specs.filter((s) => s.shape.length > 1).map((s) => s.type));
  const fileType = types.size === 1 && types.has("F16") ? 1 : types.size === 1 && types.has("BF16") ? 32 : 0;
  const meta = [...ggufModelMetadata(c, opts.name ?? path.basename(path.dirname(path.resolve(dest))), fileType),
    ...ggufTokenizerMetadata(tokenizer.json, tokenizer.config, tokenizer.file)];
  const w = await GGUFWriter.create(dest, meta, specs, { protect: opts.protect });
  try {
    for (const s of specs) {
      const t = await src.read(s.hf, s.type === "F32" ? "f32" : s.type === "F16" ? "f16" : "raw");
      let data = t.data;
      if (s.type === "BF16" && t.dtype !== "BF16") throw new UsageError(`GGUF export: converting ${t.dtype} to BF16 is not implemented`);
      const role = tensorRole(s.hf)!;
      if (c.modelType !== "qwen2" && role.layer !== null && (role.role === "q_proj" || role.role === "k_proj")) {
        data = permuteQK(data, s.shape, role.role === "q_proj" ? c.numHeads : c.numKvHeads, "to-gguf");
      }
      await w.write(s.name, data);
    }
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.close();
}

/** Known-size check used by inspect: bytes of a ggml tensor of `numel` elements. */
export function ggmlBytes(typeName: string, numel: number): number {
  const tt = GGML_TYPES[GGML_ID[typeName]];
  return tt ? (numel / tt.block) * tt.bytes : numel * (DTYPE_BYTES[typeName as DType] ?? 4);
}

