// io/safetensors.ts — the safetensors format (https://github.com/huggingface/safetensors): a bounded,
// fully validated header reader; tensors read one at a time with positioned reads (never the whole
// file in memory) and converted on the way to f32 or f16 bits when asked; sharded checkpoints through
// model.safetensors.index.json; and a streaming writer (temp file + rename, never over an input).
//
// Layout: u64 LE N | N bytes of UTF-8 JSON header {name: {dtype, shape, data_offsets: [b, e]}, __metadata__}
//         | data region; offsets are relative to the data region, tensors tile it with no holes.
// A tensor comes back as { name, dtype, shape, data } — row-major, little-endian, ready for one upload.
// Not here: the model's meaning of the tensors (model/config.ts) and GPU uploads (gpu/tensor.ts).

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { InputError, OutputError, UsageError } from "../errors.ts";
import { bf16ArrayToF32, f16BitsToF32, f32ToF16Bits } from "../common/half.ts";
import { AtomicFile, InputFile, readJsonObject } from "./file.ts";

// --- dtypes ------------------------------------------------------------------------------------

/** Bytes per element of every dtype this reader accepts. */
export const DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
} as const;
export type DType = keyof typeof DTYPE_BYTES;

/** Host storage of a tensor: F16/BF16 are raw 16-bit patterns (Uint16Array), BOOL is Uint8Array (0/1). */
export type TensorData =
  | Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array
  | BigUint64Array | Uint32Array | Uint8Array;

/** One tensor on the host: the unit that goes to the GPU in one call. */
export interface HostTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TensorData;
}

/** Where a tensor lives in its file. `offset` is absolute (header included), in bytes. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly byteLength: number;
  readonly offset: number;
  readonly file: string;
}

/** "raw": as stored; "f32": Float32Array; "f16": Uint16Array of IEEE half bit patterns. */
export type ReadAs = "raw" | "f32" | "f16";

/** Largest header the reader accepts, as the reference implementation (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

/** (dtype, ArrayBuffer slice) -> the typed array view that stores that dtype. */
export function typedView(dtype: DType, buf: ArrayBuffer, byteOffset = 0, length?: number): TensorData {
  switch (dtype) {
    case "F64": return new Float64Array(buf, byteOffset, length);
    case "F32": return new Float32Array(buf, byteOffset, length);
    case "F16": case "BF16": case "U16": return new Uint16Array(buf, byteOffset, length);
    case "I64": return new BigInt64Array(buf, byteOffset, length);
    case "I32": return new Int32Array(buf, byteOffset, length);
    case "I16": return new Int16Array(buf, byteOffset, length);
    case "I8": return new Int8Array(buf, byteOffset, length);
    case "U64": return new BigUint64Array(buf, byteOffset, length);
    case "U32": return new Uint32Array(buf, byteOffset, length);
    case "U8": case "BOOL": return new Uint8Array(buf, byteOffset, length);
  }
}

/** Product of a shape; 1 for a scalar. */
export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// --- bf16 / f16 conversion (codecs: common/half.ts) --------------------------------------------

let f16Table: Float32Array | undefined;
/** f16 bits -> f32 lookup table (65,536 entries, 256 KiB), built on first use. */
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/** Convert n elements of `src` (stored as `dtype`) into `dst` (f32 values or f16 bits) at `at`. */
function convertInto(dtype: DType, src: TensorData, to: "f32" | "f16", dst: Float32Array | Uint16Array, at: number): void {
  const n = src.length;
  if (to === "f32") {
    const out = dst as Float32Array;
    if (dtype === "F16") {
      const t = f16ToF32Table();
      const s = src as Uint16Array;
      for (let i = 0; i < n; i++) out[at + i] = t[s[i]];
    } else if (dtype === "BF16") {
      bf16ArrayToF32(src as Uint16Array, out.subarray(at, at + n));
    } else {
      for (let i = 0; i < n; i++) out[at + i] = Number(src[i]);
    }
    return;
  }
  const out = dst as Uint16Array;
  if (dtype === "BF16") {
    const s = src as Uint16Array;
    const tmp = new Float32Array(1);
    const t32 = new Uint32Array(tmp.buffer);
    for (let i = 0; i < n; i++) {
      t32[0] = s[i] << 16;
      out[at + i] = f32ToF16Bits(tmp[0]);
    }
  } else {
    for (let i = 0; i < n; i++) out[at + i] = f32ToF16Bits(Number(src[i]));
  }
}

// --- header ------------------------------------------------------------------------------------

export interface SafetensorsHeader {
  readonly metadata: Readonly<Record<string, string>>;
  /** Sorted by offset. */
  readonly tensors: readonly TensorInfo[];
  /** 8 + N: where the data region starts, in bytes. */
  readonly dataStart: number;
}

/** Strict UTF-8 that keeps a byte order mark (a header starting with one does not start with '{'). */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * (file name, header JSON bytes [N], data region size in bytes) -> validated header.
 * Checks: UTF-8, a JSON object, `__metadata__` a string->string map, every dtype known, shapes of
 * non-negative safe integers, offsets [b, e] with b <= e <= data size, e - b = numel x dtype size,
 * and tensors tiling the data region exactly (no overlap, no hole, no trailing bytes).
 */
export function parseHeader(file: string, json: Uint8Array, dataSize: number): SafetensorsHeader {
  let text: string;
  try {
    text = utf8.decode(json);
  } catch {
    throw new InputError(file, "header", "header is not valid UTF-8", "the file is not safetensors or is corrupted");
  }
  if (!text.startsWith("{")) {
    throw new InputError(file, "header", "header does not start with '{'", "the file is not safetensors or is corrupted");
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new InputError(file, "header", `header is not valid JSON (${(e as Error).message})`,
      "the file is not safetensors or is corrupted");
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new InputError(file, "header", "header is not a JSON object");
  }
  const dataStart = 8 + json.byteLength;
  let metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(obj as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(file, entry);
      continue;
    }
    tensors.push(parseEntry(file, name, entry, dataSize, dataStart));
  }
  tensors.sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let end = dataStart;
  let prev: string | undefined;
  for (const t of tensors) {
    if (t.offset < end) {
      throw new InputError(file, t.name, `data_offsets overlap tensor '${prev}'`, "the file is corrupted");
    }
    if (t.offset > end) {
      throw new InputError(file, t.name, `hole of ${t.offset - end} bytes before this tensor's data`,
        "safetensors forbids unindexed bytes; the file is corrupted");
    }
    end = t.offset + t.byteLength;
    prev = t.name;
  }
  if (end !== dataStart + dataSize) {
    throw new InputError(file, "data_offsets",
      `${dataStart + dataSize - end} trailing bytes after the last tensor are not covered by the header`,
      "safetensors forbids unindexed bytes; the file is corrupted or was appended to");
  }
  return { metadata, tensors, dataStart };
}

function parseMetadata(file: string, v: unknown): Record<string, string> {
  if (v === null) return {}; // as the reference implementation reads it: no metadata
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new InputError(file, "__metadata__", "must be an object of string values");
  }
  const out: Record<string, string> = {};
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== "string") throw new InputError(file, `__metadata__.${k}`, "value is not a string");
    out[k] = s;
  }
  return out;
}

function parseEntry(file: string, name: string, v: unknown, dataSize: number, dataStart: number): TensorInfo {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InputError(file, name, "tensor entry is not an object {dtype, shape, data_offsets}");
  }
  const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
  if (!isDType(dtype)) {
    throw new InputError(file, name, `unknown dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(DTYPE_BYTES).join(", ")}`,
      "convert the tensor to a supported dtype (e.g. with safetensors in Python)");
  }
  if (!Array.isArray(shape)) throw new InputError(file, name, "shape is not an array");
  let numel = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new InputError(file, name, `shape ${JSON.stringify(shape)} has an entry that is not a non-negative integer`);
    }
    numel *= d;
    if (!Number.isSafeInteger(numel)) throw new InputError(file, name, `shape ${JSON.stringify(shape)} is too large`);
  }
  if (!Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
    throw new InputError(file, name, `data_offsets ${JSON.stringify(offs)} is not [begin, end] of non-negative integers`);
  }
  const [b, e] = offs as [number, number];
  if (e < b) throw new InputError(file, name, `data_offsets [${b}, ${e}] are reversed (end < begin)`);
  if (e > dataSize) {
    throw new InputError(file, name, `data_offsets end ${e} is past the end of the data region (${dataSize} bytes)`,
      "the file is truncated or corrupted; download it again");
  }
  const want = numel * DTYPE_BYTES[dtype];
  if (e - b !== want) {
    throw new InputError(file, name,
      `byte length ${e - b} != ${want} = ${numel} elements (shape ${JSON.stringify(shape)}) x ${DTYPE_BYTES[dtype]} bytes (${dtype})`);
  }
  return { name, dtype, shape: shape as number[], numel, byteLength: want, offset: dataStart + b, file };
}

// --- one file ----------------------------------------------------------------------------------

/** Elements converted per chunk when reading with conversion (bounds the temporary buffer). */
const CONVERT_CHUNK_ELEMS = 4 * 1024 * 1024;

/** One open .safetensors file; the header is parsed and validated at open. */
export class SafetensorsFile {
  private constructor(
    private readonly f: InputFile,
    readonly metadata: Readonly<Record<string, string>>,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly dataStart: number,
  ) {}

  get path(): string {
    return this.f.path;
  }
  /** File size in bytes. */
  get size(): number {
    return this.f.size;
  }

  /** path -> open, validated file. Reads at most 8 + 100 MB. */
  static async open(file: string): Promise<SafetensorsFile> {
    const f = await InputFile.open(file);
    try {
      if (f.size < 8) {
        throw new InputError(file, "header length", `truncated: ${f.size} bytes, the 8-byte header length is missing`,
          "the file is incomplete; download it again");
      }
      const lenBytes = await f.read(0, 8, "header length");
      const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw new InputError(file, "header length", `header length ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`,
          "the file is not safetensors or is corrupted");
      }
      const len = Number(n);
      if (len < 2) throw new InputError(file, "header length", `header length ${len} is too small for a JSON object`);
      if (8 + len > f.size) {
        throw new InputError(file, "header", `truncated: header needs ${8 + len} bytes but the file has ${f.size}`,
          "the file is incomplete; download it again");
      }
      const json = await f.read(8, len, "header");
      const h = parseHeader(file, json, f.size - 8 - len);
      return new SafetensorsFile(f, h.metadata, new Map(h.tensors.map((t) => [t.name, t])), h.dataStart);
    } catch (e) {
      await f.close();
      throw e;
    }
  }

  /** name -> TensorInfo; an unknown name is an InputError naming it. */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new InputError(this.path, name, "no such tensor in this file");
    return t;
  }

  /** name -> { name, dtype, shape, data }; `as` converts to f32 values or f16 bits. */
  async read(name: string, as: ReadAs = "raw"): Promise<HostTensor> {
    return readTensorData(this.f, this.info(name), as);
  }

  /** name -> raw bytes into `dst` (exactly byteLength bytes): reuse one staging buffer across tensors. */
  async readRawInto(name: string, dst: Uint8Array): Promise<void> {
    const t = this.info(name);
    if (dst.byteLength !== t.byteLength) {
      throw new UsageError(`readRawInto(${name}): destination has ${dst.byteLength} bytes, tensor has ${t.byteLength}`);
    }
    await this.f.readInto(dst, t.offset, name);
  }

  async close(): Promise<void> {
    await this.f.close();
  }
}

/**
 * (open file, tensor location, conversion) -> host tensor. Shared with the GGUF reader: one positioned
 * read for "raw", or chunks of 4 Mi elements converted into the output (no full raw copy) otherwise.
 */
export async function readTensorData(f: InputFile, t: TensorInfo, as: ReadAs): Promise<HostTensor> {
  const { name, shape } = t;
  const wantRaw = as === "raw" || (as === "f32" && t.dtype === "F32") || (as === "f16" && t.dtype === "F16");
  if (wantRaw) {
    const buf = new ArrayBuffer(t.byteLength);
    await f.readInto(new Uint8Array(buf), t.offset, name);
    return { name, dtype: t.dtype, shape, data: typedView(t.dtype, buf) };
  }
  const out = as === "f32" ? new Float32Array(t.numel) : new Uint16Array(t.numel);
  const size = DTYPE_BYTES[t.dtype];
  const chunk = new ArrayBuffer(Math.min(t.numel, CONVERT_CHUNK_ELEMS) * size);
  for (let i = 0; i < t.numel; i += CONVERT_CHUNK_ELEMS) {
    const n = Math.min(CONVERT_CHUNK_ELEMS, t.numel - i);
    const bytes = new Uint8Array(chunk, 0, n * size);
    await f.readInto(bytes, t.offset + i * size, name);
    convertInto(t.dtype, typedView(t.dtype, chunk, 0, n), as, out, i);
  }
  return { name, dtype: as === "f32" ? "F32" : "F16", shape, data: out };
}

// --- checkpoints (one file or shards) ----------------------------------------------------------

export const INDEX_FILE = "model.safetensors.index.json";

/** A model's tensors across one or more .safetensors files, addressed by name. */
export class SafetensorsCheckpoint {
  private constructor(
    /** The file or index that was opened (for error messages). */
    readonly source: string,
    readonly files: readonly SafetensorsFile[],
    private readonly owner: ReadonlyMap<string, SafetensorsFile>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /**
   * path -> checkpoint. `path` is a .safetensors file, a model.safetensors.index.json, or a folder
   * holding either (index preferred, then model.safetensors, then a single *.safetensors).
   * Sharded: every shard named by the index must exist and hold the tensors the index puts in it.
   */
  static async open(p: string): Promise<SafetensorsCheckpoint> {
    let st;
    try {
      st = await fsp.stat(p);
    } catch {
      throw new InputError(p, undefined, "not found", "pass a Hugging Face model folder or a .safetensors file");
    }
    if (st.isDirectory()) {
      const names = await fsp.readdir(p);
      if (names.includes(INDEX_FILE)) return SafetensorsCheckpoint.openIndex(path.join(p, INDEX_FILE));
      if (names.includes("model.safetensors")) return SafetensorsCheckpoint.openSingle(path.join(p, "model.safetensors"));
      const found = names.filter((n) => n.endsWith(".safetensors")).sort();
      if (found.length === 1) return SafetensorsCheckpoint.openSingle(path.join(p, found[0]));
      throw new InputError(p, undefined,
        found.length === 0 ? "no .safetensors file in this folder" : `${found.length} .safetensors files but no ${INDEX_FILE}`,
        "a Hugging Face checkpoint holds model.safetensors, or shards listed by model.safetensors.index.json");
    }
    if (p.endsWith(".json")) return SafetensorsCheckpoint.openIndex(p);
    return SafetensorsCheckpoint.openSingle(p);
  }

  private static async openSingle(file: string): Promise<SafetensorsCheckpoint> {
    const f = await SafetensorsFile.open(file);
    const owner = new Map([...f.tensors.keys()].map((n) => [n, f]));
    return new SafetensorsCheckpoint(file, [f], owner, f.metadata);
  }

  private static async openIndex(indexFile: string): Promise<SafetensorsCheckpoint> {
    const index = await readJsonObject(indexFile);
    const wm = index.weight_map;
    if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
      throw new InputError(indexFile, "weight_map", "missing or not an object of tensor name -> shard file");
    }
    const meta = typeof index.metadata === "object" && index.metadata !== null ? index.metadata : {};
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta)) metadata[k] = String(v);
    const byShard = new Map<string, string[]>();
    for (const [tensor, shard] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof shard !== "string" || shard === "" || shard.includes("/") || shard.includes("\\") || shard === "..") {
        throw new InputError(indexFile, `weight_map.${tensor}`, `shard ${JSON.stringify(shard)} is not a file name in the index's folder`);
      }
      const list = byShard.get(shard) ?? [];
      list.push(tensor);
      byShard.set(shard, list);
    }
    const dir = path.dirname(indexFile);
    const files: SafetensorsFile[] = [];
    const owner = new Map<string, SafetensorsFile>();
    try {
      for (const [shard, tensors] of [...byShard].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
        const shardPath = path.join(dir, shard);
        try {
          await fsp.access(shardPath);
        } catch {
          throw new InputError(indexFile, `weight_map.${tensors[0]}`, `shard '${shard}' is missing`,
            "download every shard the index lists (model-0000i-of-0000n.safetensors)");
        }
        const f = await SafetensorsFile.open(shardPath);
        files.push(f);
        for (const t of tensors) {
          if (!f.tensors.has(t)) {
            throw new InputError(indexFile, `weight_map.${t}`, `tensor is not in shard '${shard}'`,
              "the index and the shards come from different versions of the model; download them again");
          }
          owner.set(t, f);
        }
      }
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
    return new SafetensorsCheckpoint(indexFile, files, owner, metadata);
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.owner.keys()];
  }
  has(name: string): boolean {
    return this.owner.has(name);
  }
  info(name: string): TensorInfo {
    const f = this.owner.get(name);
    if (!f) throw new InputError(this.source, name, "no such tensor in this checkpoint");
    return f.info(name);
  }
  /** Every tensor's info, in name order of `names()`. */
  infos(): TensorInfo[] {
    return this.names().map((n) => this.info(n));
  }
  /** name -> { name, dtype, shape, data }: one positioned read of that tensor only. */
  async read(name: string, as: ReadAs = "raw"): Promise<HostTensor> {
    this.info(name);
    return this.owner.get(name)!.read(name, as);
  }
  async readRawInto(name: string, dst: Uint8Array): Promise<void> {
    this.info(name);
    return this.owner.get(name)!.readRawInto(name, dst);
  }
  /** Total size of the files, in bytes. */
  get sizeOnDisk(): number {
    return this.files.reduce((a, f) => a + f.size, 0);
  }
  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

// --- writer ------------------------------------------------------------------------------------

/** What the writer must know before the first byte: the header is written first. */
export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface WriteOptions {
  /** String->string map stored as __metadata__ (e.g. { format: "pt" }). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Extra paths the output must not replace (open inputs are always protected). */
  readonly protect?: readonly string[];
}

/** specs -> header bytes [8 + N], N padded with spaces to a multiple of 8; plus each tensor's byte length. */
export function buildHeader(specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): { bytes: Uint8Array; sizes: number[] } {
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) obj.__metadata__ = metadata;
  const sizes: number[] = [];
  let off = 0;
  for (const s of specs) {
    if (!s.name || s.name === "__metadata__" || Object.prototype.hasOwnProperty.call(obj, s.name)) {
      throw new UsageError(`safetensors writer: tensor name ${JSON.stringify(s.name)} is empty, reserved or repeated`);
    }
    if (!isDType(s.dtype)) throw new UsageError(`safetensors writer: ${s.name} has unknown dtype ${s.dtype}`);
    if (!s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new UsageError(`safetensors writer: ${s.name} has a bad shape ${JSON.stringify(s.shape)}`);
    }
    const n = numelOf(s.shape) * DTYPE_BYTES[s.dtype];
    // defineProperty: a tensor named "__proto__" must become a key, not the prototype
    Object.defineProperty(obj, s.name, { value: { dtype: s.dtype, shape: s.shape, data_offsets: [off, off + n] }, enumerable: true });
    sizes.push(n);
    off += n;
  }
  const raw = new TextEncoder().encode(JSON.stringify(obj));
  const padded = Math.ceil(raw.byteLength / 8) * 8;
  const bytes = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(raw, 8);
  return { bytes, sizes };
}

/**
 * Streaming writer: create(dest, specs) writes the header; write() each tensor's data in spec order;
 * close() renames the temp file onto dest. Memory: one tensor at a time, held by the caller.
 */
export class SafetensorsWriter {
  #next = 0;
  private constructor(
    private readonly out: AtomicFile,
    private readonly specs: readonly TensorSpec[],
    private readonly sizes: readonly number[],
    private readonly protect: readonly string[],
  ) {}

  static async create(dest: string, specs: readonly TensorSpec[], opts: WriteOptions = {}): Promise<SafetensorsWriter> {
    const { bytes, sizes } = buildHeader(specs, opts.metadata);
    const out = await AtomicFile.create(dest, opts.protect);
    try {
      await out.write(bytes);
    } catch (e) {
      await out.abort();
      throw e;
    }
    return new SafetensorsWriter(out, specs, sizes, opts.protect ?? []);
  }

  /** The next tensor's bytes, in spec order: (name, data [numel] of the spec's dtype). */
  async write(name: string, data: ArrayBufferView): Promise<void> {
    const i = this.#next;
    const spec = this.specs[i];
    if (!spec || spec.name !== name) {
      await this.abort();
      throw new UsageError(`safetensors writer: expected tensor ${spec ? `'${spec.name}'` : "none (all written)"}, got '${name}'`,
        "write tensors in the order given to SafetensorsWriter.create()");
    }
    if (data.byteLength !== this.sizes[i]) {
      await this.abort();
      throw new UsageError(`safetensors writer: ${name} has ${data.byteLength} bytes, spec needs ${this.sizes[i]}`);
    }
    await this.out.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.#next++;
  }

  /** Every tensor written -> rename into place. */
  async close(): Promise<void> {
    if (this.#next !== this.specs.length) {
      await this.abort();
      throw new UsageError(`safetensors writer: closed after ${this.#next} of ${this.specs.length} tensors; nothing was written`);
    }
    await this.out.commit(this.protect);
  }

  async abort(): Promise<void> {
    await this.out.abort();
  }
}

/** Write host tensors [k] to one file, atomically. */
export async function writeSafetensors(dest: string, tensors: readonly HostTensor[], opts: WriteOptions = {}): Promise<void> {
  const w = await SafetensorsWriter.create(dest, tensors, opts);
  for (const t of tensors) await w.write(t.name, t.data);
  await w.close();
}

/**
 * Sharded write, streaming: specs are cut greedily into shards of at most `maxShardBytes` (a bigger
 * tensor gets a shard of its own); `produce(spec)` is called once per tensor, in order, when its bytes
 * are due, so only one tensor need exist at a time. Writes model-0000i-of-0000n.safetensors and
 * model.safetensors.index.json (or a single model.safetensors when everything fits in one shard).
 */
export async function writeShardedSafetensors(
  dir: string,
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec, index: number) => ArrayBufferView | Promise<ArrayBufferView>,
  opts: WriteOptions & { maxShardBytes: number },
): Promise<{ files: string[]; index: string | null }> {
  const shards: TensorSpec[][] = [];
  let cur: TensorSpec[] = [];
  let bytes = 0;
  for (const s of specs) {
    const n = numelOf(s.shape) * DTYPE_BYTES[s.dtype];
    if (cur.length > 0 && bytes + n > opts.maxShardBytes) {
      shards.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(s);
    bytes += n;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  const pad = (i: number) => String(i).padStart(5, "0");
  const names = shards.length === 1 ? ["model.safetensors"]
    : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let total = 0;
  let k = 0;
  for (let i = 0; i < shards.length; i++) {
    const w = await SafetensorsWriter.create(path.join(dir, names[i]), shards[i], opts);
    for (const s of shards[i]) {
      let data: ArrayBufferView;
      try {
        data = await produce(s, k++);
      } catch (e) {
        await w.abort();
        throw e;
      }
      await w.write(s.name, data);
      weightMap[s.name] = names[i];
      total += data.byteLength;
    }
    await w.close();
  }
  const files = names.map((n) => path.join(dir, n));
  if (shards.length === 1) return { files, index: null };
  const index = path.join(dir, INDEX_FILE);
  const out = await AtomicFile.create(index, opts.protect);
  await out.write(new TextEncoder().encode(JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n"));
  await out.commit(opts.protect);
  return { files, index };
}
