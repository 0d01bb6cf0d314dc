// bench/onnx.ts — single-node ONNX models built in memory, for the ONNX Runtime peer rows of the
// benchmark (src/bench/ort.ts): a minimal protobuf encoder for the messages of onnx.proto that such
// a model needs (ModelProto, OperatorSetIdProto, GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto, TypeProto, TensorShapeProto), and the two models benchmarked:
//
//   MatMul        Y (M, N) = A (M, K) · B (K, N)           B an f32 or f16 initializer
//   MatMulNBits   Y (M, N) = A (M, K) · dequant(B)ᵀ        com.microsoft, 4-bit, block size G:
//                   B            u8  [N, K/G, G/2]   element 2i of a block in the low nibble of byte i
//                   scales       A's dtype [N·K/G]
//                   zero_points  u8  [N, ceil((K/G)/2)]  (optional; nibble order as B; default 8)
//
// packedToMatMulNBits maps the project's canonical int4 layout (src/quant/formats.ts) onto those
// initializers: qweight and scales are the same bytes, zeros are re-padded from u32 words per row
// to bytes per row. Pure data: no GPU, no ONNX Runtime.

import { UsageError } from "../errors.ts";
import { groupsPerRow, type HostPackedWeight, wordsPerRow, zeroWordsPerRow } from "../quant/formats.ts";
import { f16ArrayToF32 } from "../common/half.ts";

/** onnx.TensorProto.DataType values used here. */
export const ONNX_DTYPE = { float: 1, uint8: 2, float16: 10 } as const;
export type OnnxDType = keyof typeof ONNX_DTYPE;

/** An initializer: raw little-endian bytes of a tensor of `dims`. */
export interface OnnxInitializer {
  name: string;
  dtype: OnnxDType;
  dims: number[];
  data: ArrayBufferView;
}

export interface OnnxNode {
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  /** Integer attributes. */
  attrs?: Record<string, number>;
}

/** A graph of one or more nodes with typed inputs and outputs (dims: numbers, or strings for symbolic dims). */
export interface OnnxGraph {
  nodes: OnnxNode[];
  inputs: { name: string; dtype: OnnxDType; dims: (number | string)[] }[];
  outputs: { name: string; dtype: OnnxDType; dims: (number | string)[] }[];
  initializers: OnnxInitializer[];
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Serialises a graph as an ONNX ModelProto (IR version 8, opset ai.onnx 17 + com.microsoft 1). */
export function encodeModel(g: OnnxGraph): Uint8Array {
  const graph = new Writer();
  for (const n of g.nodes) graph.message(1, encodeNode(n));
  graph.string(2, "wgq_bench");
  for (const t of g.initializers) graph.message(5, encodeTensor(t));
  for (const v of g.inputs) graph.message(11, encodeValueInfo(v.name, v.dtype, v.dims));
  for (const v of g.outputs) graph.message(12, encodeValueInfo(v.name, v.dtype, v.dims));
  const model = new Writer();
  model.varint(1, 8); // ir_version
  model.string(2, "webgpu-quant");
  model.string(3, "bench");
  model.message(7, graph.finish());
  model.message(8, new Writer().string(1, "").varint(2, 17).finish());
  model.message(8, new Writer().string(1, "com.microsoft").varint(2, 1).finish());
  return model.finish();
}

/** Y (M, N) = A (M, K) · B with B = Wᵀ (K, N) given as W (N, K) row-major (f32 or f16 bits); M symbolic. */
export function matmulModel(w: Float32Array | Uint16Array, N: number, K: number): Uint8Array {
  const dtype: OnnxDType = w instanceof Uint16Array ? "float16" : "float";
  if (w.length !== N * K) throw new UsageError(`matmulModel: W has ${w.length} elements, expected ${N}x${K}`);
  const bt = w instanceof Uint16Array ? new Uint16Array(N * K) : new Float32Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) bt[k * N + n] = w[n * K + k];
  return encodeModel({
    nodes: [{ opType: "MatMul", inputs: ["A", "B"], outputs: ["Y"] }],
    inputs: [{ name: "A", dtype, dims: ["M", K] }],
    outputs: [{ name: "Y", dtype, dims: ["M", N] }],
    initializers: [{ name: "B", dtype, dims: [K, N], data: bt }],
  });
}

/** The initializers of MatMulNBits for a packed int4 weight (K % G == 0), scales as f32 or f16. */
export function packedToMatMulNBits(p: HostPackedWeight, scaleDtype: "float" | "float16"): { B: OnnxInitializer; scales: OnnxInitializer; zeroPoints: OnnxInitializer | null } {
  if (p.bits !== 4 && p.bits !== 3) throw new UsageError(`MatMulNBits takes int4 weights, not ${p.bits}-bit`);
  if (p.K % p.G) throw new UsageError(`MatMulNBits needs K (${p.K}) to be a multiple of the group size (${p.G})`);
  const { N, K, G } = p;
  const ng = groupsPerRow(p);
  if (wordsPerRow(p) * 8 !== K) throw new UsageError(`K (${K}) must be a multiple of 8`);
  const B: OnnxInitializer = { name: "B", dtype: "uint8", dims: [N, ng, G / 2], data: new Uint8Array(p.qweight.buffer, p.qweight.byteOffset, (N * K) / 2) };
  const halves = new Uint16Array(p.scales.buffer, p.scales.byteOffset, N * ng);
  const scales: OnnxInitializer = scaleDtype === "float16"
    ? { name: "scales", dtype: "float16", dims: [N * ng], data: halves.slice() }
    : { name: "scales", dtype: "float", dims: [N * ng], data: f16ArrayToF32(halves) };
  let zeroPoints: OnnxInitializer | null = null;
  if (p.zeros) {
    const rowIn = zeroWordsPerRow(p) * 4;
    const rowOut = Math.ceil(ng / 2);
    const src = new Uint8Array(p.zeros.buffer, p.zeros.byteOffset, N * rowIn);
    const zp = new Uint8Array(N * rowOut);
    for (let n = 0; n < N; n++) zp.set(src.subarray(n * rowIn, n * rowIn + rowOut), n * rowOut);
    zeroPoints = { name: "zero_points", dtype: "uint8", dims: [N * rowOut], data: zp };
  }
  return { B, scales, zeroPoints };
}

/** Y (M, N) = A (M, K) · dequant(W)ᵀ for a packed int4 weight; A in f32 or f16; M symbolic. */
export function matmulNBitsModel(p: HostPackedWeight, opts: { dtype?: "float" | "float16"; accuracyLevel?: number } = {}): Uint8Array {
  const dtype = opts.dtype ?? "float";
  const { B, scales, zeroPoints } = packedToMatMulNBits(p, dtype);
  const attrs: Record<string, number> = { K: p.K, N: p.N, bits: 4, block_size: p.G };
  if (opts.accuracyLevel !== undefined) attrs.accuracy_level = opts.accuracyLevel;
  return encodeModel({
    nodes: [{ opType: "MatMulNBits", domain: "com.microsoft", inputs: ["A", "B", "scales", ...(zeroPoints ? ["zero_points"] : [])], outputs: ["Y"], attrs }],
    inputs: [{ name: "A", dtype, dims: ["M", p.K] }],
    outputs: [{ name: "Y", dtype, dims: ["M", p.N] }],
    initializers: [B, scales, ...(zeroPoints ? [zeroPoints] : [])],
  });
}

/** Y (M, K) = A + A: one elementwise kernel, for the fixed cost of a session run (upload, launch, readback). */
export function addModel(K: number, dtype: OnnxDType = "float"): Uint8Array {
  return encodeModel({
    nodes: [{ opType: "Add", inputs: ["A", "A"], outputs: ["Y"] }],
    inputs: [{ name: "A", dtype, dims: ["M", K] }],
    outputs: [{ name: "Y", dtype, dims: ["M", K] }],
    initializers: [],
  });
}

// ---------------------------------------------------------------------------------------------
// Implementation: protobuf wire format (varint = 0, length-delimited = 2)
// ---------------------------------------------------------------------------------------------

function encodeNode(n: OnnxNode): Uint8Array {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, `${n.opType}_0`);
  w.string(4, n.opType);
  for (const [name, v] of Object.entries(n.attrs ?? {})) {
    w.message(5, new Writer().string(1, name).varint(3, v).varint(20, 2).finish()); // AttributeProto INT
  }
  if (n.domain) w.string(7, n.domain);
  return w.finish();
}

function encodeTensor(t: OnnxInitializer): Uint8Array {
  const w = new Writer();
  for (const d of t.dims) w.varint(1, d);
  w.varint(2, ONNX_DTYPE[t.dtype]);
  w.string(8, t.name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return w.finish();
}

function encodeValueInfo(name: string, dtype: OnnxDType, dims: (number | string)[]): Uint8Array {
  const shape = new Writer();
  for (const d of dims) shape.message(1, typeof d === "number" ? new Writer().varint(1, d).finish() : new Writer().string(2, d).finish());
  const tensorType = new Writer().varint(1, ONNX_DTYPE[dtype]).message(2, shape.finish()).finish();
  const type = new Writer().message(1, tensorType).finish();
  return new Writer().string(1, name).message(2, type).finish();
}

/** Appends protobuf fields; finish() concatenates them. Large byte fields are kept by reference. */
class Writer {
  #parts: Uint8Array[] = [];
  #head: number[] = [];

  varint(field: number, v: number): this {
    this.#key(field, 0);
    this.#uvarint(v);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Uint8Array): this {
    return this.bytes(field, m);
  }

  bytes(field: number, b: Uint8Array): this {
    this.#key(field, 2);
    this.#uvarint(b.byteLength);
    this.#flush();
    this.#parts.push(b);
    return this;
  }

  finish(): Uint8Array {
    this.#flush();
    const total = this.#parts.reduce((a, p) => a + p.byteLength, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of this.#parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  }

  #key(field: number, wire: number): void {
    this.#uvarint(field * 8 + wire);
  }

  /** Unsigned varint of a non-negative safe integer (int64 fields here are never negative). */
  #uvarint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new UsageError(`protobuf varint out of range: ${v}`);
    while (v >= 0x80) {
      this.#head.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.#head.push(v);
  }

  #flush(): void {
    if (this.#head.length) this.#parts.push(Uint8Array.from(this.#head));
    this.#head = [];
  }
}
