// ONNX models built in memory (src/bench/onnx.ts): the project's packed int4 weight maps onto
// MatMulNBits' initializers byte for byte (zero points re-padded per row), and ONNX Runtime's CPU EP
// reads the encoded models as meant: its outputs match the float64 reference on the dequantized
// weight (odd group counts, asymmetric and symmetric), the float64 product with the original
// weights within the quantization error, and MatMul on f32 / f16 weights. onnxruntime-node is an
// optional dependency that `npm ci` installs (here and on CI): when it is missing, or its one-node
// self-check computes a wrong result, the test fails (the bench's own report of a missing package
// is checked in test/bench/bench.test.ts).
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

  it("ONNX Runtime's CPU EP computes the project's int4 product and MatMul on the encoded models", async () => {
    let ort: Ort;
    try {
      ort = createRequire(import.meta.url)("onnxruntime-node") as Ort;
    } catch (e) {
      throw new Error(`onnxruntime-node is not installed (${String((e as Error).message).split("\n")[0]}): it is an optional dependency that 'npm ci' installs, and this test needs it`);
    }
    // The bench's loader sees the same package; its WebGPU self-check must not report a wrong result.
    const rt = await openOrt();
    console.log(`openOrt: ${"ort" in rt ? rt.label : `unavailable: ${rt.unavailable}`}`);
    if ("unavailable" in rt) expect(rt.unavailable).not.toMatch(/not installed|wrong result/);
    const run = async (model: Uint8Array, x: Float32Array | Uint16Array, dims: number[]) => {
      const s = await ort.InferenceSession.create(model, { executionProviders: ["cpu"], logSeverityLevel: 3 });
      const y = (await s.run({ A: new ort.Tensor(x instanceof Uint16Array ? "float16" : "float32", x, dims) })).Y.data;
      await s.release();
      return y instanceof Uint16Array ? f16ArrayToF32(y) : Float32Array.from(y);
    };
    const [M, N, K] = [3, 40, 96];
    const x = randomF32(M * K, 9);
    for (const [G, sym] of [[32, false], [32, true], [16, false]] as const) {
      const w = randomF32(N * K, G + (sym ? 1 : 0));
      const p = quantizePackRef(w, quantSpec(4, N, K, G, sym));
      const y = await run(matmulNBitsModel(p), x, [M, K]);
      const err = relError(y, matmulRef(x, dequantizeRef(p), M, N, K));
      expect(err, `g${G} sym=${sym}`).toBeLessThan(1e-5);
      // Independently of the project's dequantization, against the float64 product with the
      // original weights. Each weight moves by at most half a step plus the clipping of the extreme
      // level by the f16 rounding of the scale, with the step from the weights themselves (asym:
      // (max − min) / 15, sym: max|w| / 7). (a) Worst case: the error of y[m, n] is at most
      // Σ_k |x[m, k]| · that bound. (b) Typical size: rounding errors uniform in ±step/2 and
      // independent give an error energy of Σ_k x[m, k]² · step² / 12 per output; the measured
      // relative error must stay within twice the predicted one (120 outputs of 96 terms each:
      // the measured energy is within ±50 % of the prediction with overwhelming probability).
      const exact = matmulRef(x, w, M, N, K);
      const levels = sym ? 7 : 15;
      const wBound = new Float64Array(N * K), wStep = new Float64Array(N * K);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < K / G; g++) {
          const grp = Array.from(w.subarray(n * K + g * G, n * K + (g + 1) * G));
          const step = sym ? Math.max(...grp.map(Math.abs)) / levels : (Math.max(...grp) - Math.min(...grp)) / levels;
          const ds = step * 2 ** -10; // f16 rounding of the scale, with margin
          wBound.fill(0.5 * (step + ds) + levels * ds, n * K + g * G, n * K + (g + 1) * G);
          wStep.fill(step, n * K + g * G, n * K + (g + 1) * G);
        }
      }
      let worst = 0, noise = 0, energy = 0;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let bound = 1e-6;
          for (let k = 0; k < K; k++) {
            bound += Math.abs(x[m * K + k]) * wBound[n * K + k];
            noise += (x[m * K + k] * wStep[n * K + k]) ** 2 / 12;
          }
          worst = Math.max(worst, Math.abs(y[m * N + n] - exact[m * N + n]) / bound);
          energy += exact[m * N + n] ** 2;
        }
      }
      const predicted = Math.sqrt(noise / energy);
      const vsExact = relError(y, exact);
      console.log(`MatMulNBits g${G} sym=${sym}: relative error ${err.toExponential(2)} vs the dequantized weight; vs the original weights ${vsExact.toFixed(4)} (predicted ${predicted.toFixed(4)}), worst output ${worst.toFixed(3)} of its bound`);
      expect(worst, `g${G} sym=${sym}: error vs the original weights, as a fraction of the worst-case quantization bound`).toBeLessThanOrEqual(1);
      expect(vsExact, `g${G} sym=${sym}: relative error vs the original weights`).toBeLessThanOrEqual(2 * predicted);
    }
    const w = randomF32(N * K, 11);
    const e32 = relError(await run(matmulModel(w, N, K), x, [M, K]), matmulRef(x, w, M, N, K));
    expect(e32).toBeLessThan(1e-5);
    const w16 = f32ArrayToF16(w);
    const x16 = f32ArrayToF16(x);
    // f16 in, f16 out: the output's own rounding is 2^-11 relative per element (≈ 3e-4 rms); 2e-3
    // leaves room for f16 accumulation over K = 96.
    const e16 = relError(await run(matmulModel(w16, N, K), x16, [M, K]), matmulRef(f16ArrayToF32(x16), f16ArrayToF32(w16), M, N, K));
    console.log(`MatMul: f32 relative error ${e32.toExponential(2)}, f16 ${e16.toExponential(2)}`);
    expect(e16).toBeLessThan(1e-2);
    expect(e16).toBeLessThan(2e-3);
  });
});
