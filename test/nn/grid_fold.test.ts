// Kernels whose grid grows with tokens (rows) fold that count over two grid dimensions
// (Kernel.grid1d / Kernel.grid2d): each is run here with more workgroups along the folded axis
// than maxComputeWorkgroupsPerDimension allows in one dimension (65,535) and checked against a
// float64 CPU reference on seeded random inputs. Widths are tiny so that the many rows stay cheap.
//
// Tolerances (relative error ||y - ref|| / ||ref||; NaN gives Infinity), from float32 arithmetic
// (u = 2^-24 per rounding; WGSL's inverseSqrt is within 2 ulp):
//   copies (embedding)                exact
//   RMSNorm forward                   2e-6 — a sum of 3 squares, inverseSqrt and two products: < 10 u
//   RoPE forward / backward           2e-6 — the angle is rounded to f32 in the reference as in the
//                                     kernel; cos/sin of angles < 32 rad and one fma-level step each
//   GEMMs (K <= 8, f32)               1e-6 — at most 8 rounded products and sums per output (< 16 u)
//   dequantize-matmul tiled           1e-5 — as test/quant/matmul.test.ts (f32 accumulation order)
//   dequantize-matmul tiled_f16       1e-3 — y is stored as f16 (2^-11 per element)
//   next-token loss rows              1e-5 (nll), 1e-4 (kl: a difference of log-sum-exps, ~1e-1)
//   RMSNorm backward dx               1e-5 — two terms of ~8 rounded factors each, then a difference
//   cross-entropy dlogits             1e-5 — exp and log of an f32 log-sum-exp, then a product
//   cross-entropy loss sum            1e-4 — sequential f32 sums of 256 in three levels: < 600 u
import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { embedding } from "../../src/nn/embedding.ts";
import { lossBuffers, nextTokenLoss } from "../../src/nn/loss.ts";
import { matmul } from "../../src/nn/matmul.ts";
import { rmsnorm } from "../../src/nn/rmsnorm.ts";
import { rope } from "../../src/nn/rope.ts";
import { quantSpec } from "../../src/quant/formats.ts";
import { qmatmul } from "../../src/quant/matmul.ts";
import { destroyPacked, uploadPacked } from "../../src/quant/packed.ts";
import {
  crossEntropyBackwardRef, IGNORE_INDEX_REF, linearBackwardRef, rmsnormBackwardRef, rmsnormForwardRef, ropeBackwardRef, ropeForwardRef,
} from "../../src/ref/backward.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/ref/f16.ts";
import { embedRef, lossRef } from "../../src/ref/llama.ts";
import { matmulRef } from "../../src/ref/matmul.ts";
import { dequantizeRef, quantizePackRef } from "../../src/ref/quant.ts";
import { crossEntropyBackward, linearBackward, rmsnormBackward, ropeBackward } from "../../src/train/backward.ts";
import { gpuContext, randomF32, relError, rng } from "../helpers/gpu.ts";
import { VariantRuns } from "../helpers/variants.ts";

describe("grids folded past maxComputeWorkgroupsPerDimension", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;
  const maxDim = gpu.limits.maxComputeWorkgroupsPerDimension;
  const live: GpuTensor[] = [];
  const up = (data: Float32Array | Uint32Array | Uint16Array, shape: number[], dtype: "f32" | "u32" | "f16", label: string) => {
    const t = GpuTensor.fromHost(gpu, data, shape, dtype, label);
    live.push(t);
    return t;
  };
  const empty = (shape: number[], dtype: "f32" | "f16", label: string) => {
    const t = GpuTensor.empty(gpu, shape, dtype, label);
    live.push(t);
    return t;
  };
  const run = async (f: (b: CommandBatch) => Promise<unknown>) => {
    const b = new CommandBatch(gpu, "grid_fold.test");
    await f(b);
    b.submit();
  };
  const host = async (t: GpuTensor) => (await t.toHost()) as Float32Array;
  /** Checks the whole output and, separately, the rows whose workgroups lie past the one-dimension limit. */
  const check = (name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, rowLen: number, firstFoldedRow: number) => {
    const all = relError(got, want);
    const tail = relError(got, want, range(firstFoldedRow * rowLen, want.length));
    console.log(`${name}: relative error ${all.toExponential(2)} (rows past the limit: ${tail.toExponential(2)})`);
    expect(all, name).toBeLessThan(tol);
    expect(tail, `${name}, rows past the limit`).toBeLessThan(tol);
  };
  /** The workgroup count along the folded axis really exceeds one grid dimension. */
  const pastLimit = (workgroups: number) => expect(workgroups).toBeGreaterThan(maxDim);
  const freeAll = () => {
    for (const t of live.splice(0)) t.destroy();
  };

  it("nn/rmsnorm: one workgroup per row, T > 65,535 rows", async () => {
    const T = maxDim + 65, H = 3, eps = 1e-5;
    pastLimit(T);
    const x = randomF32(T * H, 101), w = randomF32(H, 102, 0.5, 1.5);
    const yt = empty([T, H], "f32", "y");
    await run((b) => rmsnorm(ctx, b, up(x, [T, H], "f32", "x"), up(w, [H], "f32", "w"), yt, eps));
    check("rmsnorm", await host(yt), rmsnormForwardRef(x, w, T, H, eps), 2e-6, H, maxDim);
    freeAll();
  });

  it("nn/loss: one workgroup per row, 129 packed sequences of 512 tokens against reference logits", async () => {
    const seq = 512, T = 129 * seq, V = 5;
    pastLimit(T);
    const logits = randomF32(T * V, 111, -4, 4), refLogits = randomF32(T * V, 112, -4, 4);
    const r = rng(113);
    const ids = Uint32Array.from({ length: T }, () => Math.floor(r() * V));
    const { rows, sums } = lossBuffers(ctx, T);
    live.push(rows, sums);
    await run((b) => nextTokenLoss(ctx, b, up(logits, [T, V], "f32", "logits"), up(ids, [T], "u32", "ids"), rows, sums, up(refLogits, [T, V], "f32", "ref"), seq));
    const got = await host(rows);
    const want = lossRef(logits, ids, T, V, refLogits);
    const nll = new Float64Array(T), kl = new Float64Array(T);
    const gotNll = new Float64Array(T), gotKl = new Float64Array(T);
    let scored = 0;
    let flagsOk = true;
    for (let t = 0; t < T; t++) {
      const isScored = t + 1 < T && t % seq !== seq - 1;
      gotNll[t] = got[4 * t];
      gotKl[t] = got[4 * t + 1];
      if (isScored) {
        nll[t] = want[t].nll;
        kl[t] = want[t].kl;
        scored++;
      }
      const top1 = isScored ? want[t].top1 : 0;
      if (got[4 * t + 2] !== top1 || got[4 * t + 3] !== (isScored ? 1 : 0)) flagsOk = false;
      if (!isScored && (got[4 * t] !== 0 || got[4 * t + 1] !== 0)) flagsOk = false;
    }
    expect(flagsOk, "top-1 and scored flags of every row").toBe(true);
    check("loss nll rows", gotNll, nll, 1e-5, 1, maxDim);
    check("loss kl rows", gotKl, kl, 1e-4, 1, maxDim);
    const s = await host(sums);
    expect(s[12]).toBe(scored);
    freeAll();
  });

  it("nn/embedding: T > 65,535 rows folded over (y, z)", async () => {
    const T = maxDim + 65, V = 17, H = 3;
    pastLimit(T);
    const E = randomF32(V * H, 121);
    const r = rng(122);
    const ids = Uint32Array.from({ length: T }, () => Math.floor(r() * V));
    const out = empty([T, H], "f32", "out");
    await run((b) => embedding(ctx, b, up(ids, [T], "u32", "ids"), up(E, [V, H], "f32", "E"), out));
    const got = await host(out);
    const want = embedRef(E, ids, H);
    let mismatches = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) mismatches++;
    expect(mismatches, "elements that differ from E[ids]").toBe(0);
    freeAll();
  });

  // Positions t % 32: angles stay small, the range the RoPE tests in test/nn/rope.test.ts cover.
  const ropeShape = { T: maxDim + 65, nh: 1, D: 4, pos0: 0, seq: 32 };
  const invFreq = (D: number) => Float32Array.from({ length: D / 2 }, (_, i) => 10000 ** (-(2 * i) / D));

  it("nn/rope: T > 65,535 rows folded over (y, z)", async () => {
    const { T, nh, D, pos0, seq } = ropeShape;
    pastLimit(T);
    const x = randomF32(T * nh * D, 131);
    const xt = up(x, [T, nh * D], "f32", "x");
    await run((b) => rope(ctx, b, xt, up(invFreq(D), [D / 2], "f32", "inv_freq"), T, nh, pos0, seq));
    check("rope", await host(xt), ropeForwardRef(x, invFreq(D), T, nh, pos0, seq), 2e-6, nh * D, maxDim);
    freeAll();
  });

  it("train rope_backward: T > 65,535 rows folded over (y, z)", async () => {
    const { T, nh, D, pos0, seq } = ropeShape;
    pastLimit(T);
    const g = randomF32(T * nh * D, 141);
    const gt = up(g, [T, nh * D], "f32", "dq");
    await run((b) => ropeBackward(ctx, b, gt, up(invFreq(D), [D / 2], "f32", "inv_freq"), T, nh, pos0, seq));
    check("rope backward", await host(gt), ropeBackwardRef(g, invFreq(D), T, nh, pos0, seq), 2e-6, nh * D, maxDim);
    freeAll();
  });

  it("nn/matmul (tiled): M > 65,535 workgroup rows of 32 rows of x", async () => {
    const rowsPerWg = 32; // 4 rows per invocation, WG_Y = 8
    const M = maxDim * rowsPerWg + 65, N = 4, K = 2;
    pastLimit(Math.ceil(M / rowsPerWg));
    const x = randomF32(M * K, 151), W = randomF32(N * K, 152);
    const yt = empty([M, N], "f32", "y");
    await run((b) => matmul(ctx, b, up(x, [M, K], "f32", "x"), up(W, [N, K], "f32", "W"), yt, { variant: "tiled" }));
    check("matmul tiled", await host(yt), matmulRef(x, W, M, N, K), 1e-6, N, maxDim * rowsPerWg);
    freeAll();
  });

  it("train backward_linear gemm (dx): T > 65,535 workgroup rows of 32 rows", async () => {
    const rowsPerWg = 32;
    const T = maxDim * rowsPerWg + 65, N = 2, K = 4;
    pastLimit(Math.ceil(T / rowsPerWg));
    const W = randomF32(N * K, 161), dy = randomF32(T * N, 162);
    const dxt = empty([T, K], "f32", "dx");
    const xt = empty([T, K], "f32", "x"); // not read for dx
    // windowRows selects the tiled gemm kernel on every adapter (no transposed-weight path).
    await run((b) => linearBackward(ctx, b, xt, up(W, [N, K], "f32", "W"), up(dy, [T, N], "f32", "dy"), dxt, null, { windowRows: N }));
    check("linear backward dx", await host(dxt), linearBackwardRef(new Float32Array(T * K), W, dy, T, N, K).dx, 1e-6, K, maxDim * rowsPerWg);
    freeAll();
  });

  it("train rms_rows (RMSNorm backward): T > 65,535 workgroups of 64 rows", async () => {
    const T = maxDim * 64 + 65, H = 2, eps = 1e-5;
    pastLimit(Math.ceil(T / 64));
    const x = randomF32(T * H, 171), w = randomF32(H, 172, 0.5, 1.5), dy = randomF32(T * H, 173);
    const dxt = empty([T, H], "f32", "dx");
    await run((b) => rmsnormBackward(ctx, b, up(x, [T, H], "f32", "x"), up(w, [H], "f32", "w"), up(dy, [T, H], "f32", "dy"), dxt, null, eps));
    check("rmsnorm backward dx", await host(dxt), rmsnormBackwardRef(x, w, dy, T, H, eps).dx, 1e-5, H, maxDim * 64);
    freeAll();
  });

  it("train ce_rows (cross-entropy backward): T > 65,535 workgroups of 64 rows, in place", async () => {
    const T = maxDim * 64 + 65, V = 2;
    pastLimit(Math.ceil(T / 64));
    const logits = randomF32(T * V, 181, -4, 4);
    const r = rng(182);
    const targets = Uint32Array.from({ length: T }, () => (r() < 0.1 ? IGNORE_INDEX_REF : Math.floor(r() * V)));
    const lt = up(logits, [T, V], "f32", "logits");
    const loss = empty([2], "f32", "loss");
    await run((b) => crossEntropyBackward(ctx, b, lt, up(targets, [T], "u32", "targets"), lt, loss));
    const ref = crossEntropyBackwardRef(logits, targets, T, V);
    check("cross-entropy dlogits", await host(lt), ref.dlogits, 1e-5, V, maxDim * 64);
    const [lossSum, count] = await host(loss);
    expect(count).toBe(ref.count);
    expect(relError([lossSum], [ref.lossSum]), "cross-entropy loss sum").toBeLessThan(1e-4);
    freeAll();
  });

  it("quant matmul_q with f32 and f16 activations (qmatmul tiled, tiled_f16): M > 65,535 workgroup rows of 4 rows of x", async () => {
    const runs = new VariantRuns("qmatmul past 65,535 workgroup rows");
    for (const variant of ["tiled", "tiled_f16"] as const) {
      if (!runs.take(variant, variant === "tiled_f16" && !gpu.has("shader-f16") ? "no shader-f16 on this device" : null)) continue;
      const rowsPerWg = 4; // TM = 4, WG_Y = 1
      const M = maxDim * rowsPerWg + 65, N = 4, K = 8;
      pastLimit(Math.ceil(M / rowsPerWg));
      const spec = quantSpec(4, N, K, 8, false);
      const packed = quantizePackRef(randomF32(N * K, 191), spec);
      const w = uploadPacked(gpu, packed, "w");
      const x = randomF32(M * K, 192);
      const f16 = variant === "tiled_f16";
      const xv = f16 ? f16ArrayToF32(f32ArrayToF16(x)) : x; // the reference sees exactly the stored x
      const xt = f16 ? up(f32ArrayToF16(x), [M, K], "f16", "x") : up(x, [M, K], "f32", "x");
      const yt = empty([M, N], f16 ? "f16" : "f32", "y");
      await run((b) => qmatmul(ctx, b, xt, w, yt, { variant }));
      const raw = await yt.toHost();
      const y = f16 ? f16ArrayToF32(raw as Uint16Array) : (raw as Float32Array);
      check(`qmatmul ${variant}`, y, matmulRef(xv, dequantizeRef(packed), M, N, K), f16 ? 1e-3 : 1e-5, N, maxDim * rowsPerWg);
      destroyPacked(w);
      freeAll();
    }
    runs.check();
  });
});

function* range(a: number, b: number): Generator<number> {
  for (let i = a; i < b; i++) yield i;
}
