// AWQ's search losses on the GPU against float64: the squared output error (vec4 and odd sizes),
// and the Gram-matrix form of a linear layer's output error, in both weight layouts.

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { sumPartials } from "../../src/nn/reduce.ts";
import { gramDot, sqErr, sqErrParts } from "../../src/quant/awq_loss.ts";
import { gpuContext, randomF32 } from "../helpers/gpu.ts";

describe("AWQ losses", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

  for (const n of [4 * 1000 + 4 * 64 * 3, 1001]) {
    it(`sqErr over ${n} values (${n % 4 ? "odd size: scalar entry" : "vec4 entry"})`, async () => {
      const a = randomF32(n, n), b = randomF32(n, n + 1);
      let want = 0;
      for (let i = 0; i < n; i++) want += (a[i] - b[i]) ** 2;
      const ta = GpuTensor.fromHost(gpu, a, [n], "f32", "a"), tb = GpuTensor.fromHost(gpu, b, [n], "f32", "b");
      const p = GpuTensor.empty(gpu, [sqErrParts(n)], "f32", "partial");
      const batch = new CommandBatch(gpu);
      await sqErr(ctx, batch, ta, tb, p);
      batch.submit();
      const got = sumPartials((await p.toHost()) as Float32Array);
      console.log(`sqErr n=${n}: relative error ${rel(got, want).toExponential(2)}`);
      expect(rel(got, want)).toBeLessThan(1e-5);
      for (const t of [ta, tb, p]) t.destroy();
    });
  }

  for (const transposed of [false, true]) {
    it(`gramDot equals sum_t |x_t (fq - w)ᵀ|² (${transposed ? "[K, N]" : "[N, K]"} weights, ragged K)`, async () => {
      const T = 97, N = 13, K = 37;
      const x = randomF32(T * K, 1), w = randomF32(N * K, 2), fq = Float32Array.from(w, (v, i) => v + 0.05 * Math.sin(i * 1.7));
      let want = 0;
      for (let t = 0; t < T; t++) {
        for (let n = 0; n < N; n++) {
          let d = 0;
          for (let k = 0; k < K; k++) d += x[t * K + k] * (fq[n * K + k] - w[n * K + k]);
          want += d * d;
        }
      }
      const G = new Float32Array(K * K);
      for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
        let s = 0;
        for (let t = 0; t < T; t++) s += x[t * K + i] * x[t * K + j];
        G[i * K + j] = s;
      }
      const lay = (m: Float32Array) => (transposed ? Float32Array.from({ length: N * K }, (_, i) => m[(i % N) * K + Math.floor(i / N)]) : m);
      const tf = GpuTensor.fromHost(gpu, lay(fq), transposed ? [K, N] : [N, K], "f32", "fq");
      const tw = GpuTensor.fromHost(gpu, lay(w), transposed ? [K, N] : [N, K], "f32", "w");
      const tg = GpuTensor.fromHost(gpu, G, [K, K], "f32", "G");
      const p = GpuTensor.empty(gpu, [N * K], "f32", "partial");
      const batch = new CommandBatch(gpu);
      await gramDot(ctx, batch, tf, tw, tg, p, { N, K, transposed });
      batch.submit();
      const got = sumPartials((await p.toHost()) as Float32Array);
      console.log(`gramDot: ${got} vs direct ${want}, relative error ${rel(got, want).toExponential(2)}`);
      expect(rel(got, want)).toBeLessThan(1e-4);
      for (const t of [tf, tw, tg, p]) t.destroy();
    });
  }
});
