// ONNX models built in memory (src/bench/onnx.ts): the project's packed int4 weight maps onto
// MatMulNBits' initializers byte for byte (zero points re-padded per row), and ONNX Runtime's CPU EP
// reads the encoded models as meant: its outputs match the float64 reference on the dequantized
// weight (odd group counts, asymmetric and symmetric), and MatMul on f32 / f16 weights. When
// onnxruntime-node is not installed the test asserts the reason the bench reports instead.
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { encodeModel, matmulModel, matmulNBitsModel, packedToMatMulNBits } from "../../src/bench/onnx.ts";
import { openOrt } from "../../src/bench/ort.ts";
import { quantSpec, zeroWordsPerRow } from "../../src/quant/formats.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/ref/f16.ts";
import { dequantizeRef, quantizePackRef } from "../../src/ref/quant.ts";
import { randomF32, relError } from "../helpers/gpu.ts";

function matmulRef(x: Float32Array, w: Float32Array, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let a = 0;
    for (let k = 0; k < K; k++) a += x[m * K + k] * w[n * K + k];
    y[m * N + n] = a;
  }
  return y;
}

interface Ort {
  InferenceSession: { create(m: Uint8Array, o: object): Promise<{ run(f: object): Promise<Record<string, { data: ArrayLike<number> }>>; release(): Promise<void> }> };
  Tensor: new (t: string, d: ArrayLike<number>, dims: number[]) => object;
}

describe("bench/onnx", () => {
  it("maps a packed int4 weight onto MatMulNBits' B, scales and zero_points", () => {
    const [N, K, G] = [5, 24, 8]; // 3 groups per row: zero points take 2 bytes of a 4-byte word per row
    const p = quantizePackRef(randomF32(N * K, 3), quantSpec(4, N, K, G, false));
    const { B, scales, zeroPoints } = packedToMatMulNBits(p, "float");
    expect(B.dims).toEqual([N, 3, 4]);
    expect(Array.from(new Uint8Array(B.data.buffer, B.data.byteOffset, B.data.byteLength))).toEqual(Array.from(new Uint8Array(p.qweight.buffer, 0, (N * K) / 2)));
    expect(Array.from(scales.data as Float32Array)).toEqual(Array.from(f16ArrayToF32(new Uint16Array(p.scales.buffer, 0, N * 3))));
    const zw = new Uint8Array(p.zeros!.buffer);
    const zp = zeroPoints!.data as Uint8Array;
    expect(zeroPoints!.dims).toEqual([N * 2]);
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < 3; g++) {
        const ours = (zw[n * zeroWordsPerRow(p) * 4 + (g >> 1)] >> (4 * (g & 1))) & 15;
        expect((zp[n * 2 + (g >> 1)] >> (4 * (g & 1))) & 15).toBe(ours);
      }
    }
    const sym = packedToMatMulNBits(quantizePackRef(randomF32(N * K, 4), quantSpec(4, N, K, G, true)), "float16");
    expect(sym.zeroPoints).toBeNull();
    expect(sym.scales.dtype).toBe("float16");
    expect(() => packedToMatMulNBits(quantizePackRef(randomF32(N * 20, 5), quantSpec(4, N, 20, G, false)), "float")).toThrow(/multiple of the group size/);
  });

  it("encodes varints past one byte and symbolic dims without error", () => {
    const m = encodeModel({ nodes: [{ opType: "Add", inputs: ["A", "A"], outputs: ["Y"], attrs: { big: 2 ** 40 } }], inputs: [{ name: "A", dtype: "float", dims: ["M", 300] }], outputs: [{ name: "Y", dtype: "float", dims: ["M", 300] }], initializers: [] });
    expect(m.byteLength).toBeGreaterThan(50);
    expect(m[0]).toBe(0x08); // field 1 (ir_version), varint
    expect(() => encodeModel({ nodes: [{ opType: "X", inputs: [], outputs: [], attrs: { neg: -1 } }], inputs: [], outputs: [], initializers: [] })).toThrow(/varint/);
  });

  it("ONNX Runtime's CPU EP computes the project's int4 product and MatMul on the encoded models (or the bench reports why not)", async () => {
    const rt = await openOrt();
    let ort: Ort;
    try {
      ort = createRequire(import.meta.url)("onnxruntime-node") as Ort;
    } catch {
      expect("unavailable" in rt && rt.unavailable).toMatch(/onnxruntime-node is not installed \(.+\)/);
      return;
    }
    const run = async (model: Uint8Array, x: Float32Array | Uint16Array, dims: number[]) => {
      const s = await ort.InferenceSession.create(model, { executionProviders: ["cpu"], logSeverityLevel: 3 });
      const y = (await s.run({ A: new ort.Tensor(x instanceof Uint16Array ? "float16" : "float32", x, dims) })).Y.data;
      await s.release();
      return y instanceof Uint16Array ? f16ArrayToF32(y) : Float32Array.from(y);
    };
    const [M, N, K] = [3, 40, 96];
    const x = randomF32(M * K, 9);
    for (const [G, sym] of [[32, false], [32, true], [16, false]] as const) {
      const p = quantizePackRef(randomF32(N * K, G + (sym ? 1 : 0)), quantSpec(4, N, K, G, sym));
      const ref = matmulRef(x, dequantizeRef(p), M, N, K);
      expect(relError(await run(matmulNBitsModel(p), x, [M, K]), ref), `g${G} sym=${sym}`).toBeLessThan(1e-5);
    }
    const w = randomF32(N * K, 11);
    expect(relError(await run(matmulModel(w, N, K), x, [M, K]), matmulRef(x, w, M, N, K))).toBeLessThan(1e-5);
    const w16 = f32ArrayToF16(w);
    const x16 = f32ArrayToF16(x);
    expect(relError(await run(matmulModel(w16, N, K), x16, [M, K]), matmulRef(f16ArrayToF32(x16), f16ArrayToF32(w16), M, N, K))).toBeLessThan(1e-2);
  });
});
