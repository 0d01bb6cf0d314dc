import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { chooseDense, DENSE_VARIANTS, denseVariantUnavailable, matmul, matmulWt, matmulWtPreferred, matmulWtUnavailable, swigluWt } from "../../src/nn/matmul.ts";
import { siluRef } from "../../src/ref/llama.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/ref/f16.ts";
import { matmulRef } from "../../src/ref/matmul.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";
import { VariantRuns } from "../helpers/variants.ts";

describe("matmul y = x · Wᵀ", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  const cases: [number, number, number, "f32" | "f16"][] = [
    [1, 172, 64, "f32"],
    [1, 172, 64, "f16"],
    [37, 100, 300, "f32"],
    [37, 100, 300, "f16"],
    [5, 33, 171, "f16"], // odd K: f16 rows straddle words
    [256, 4096, 4096, "f16"],
  ];
  for (const [M, N, K, wd] of cases) {
    it(`${M}x${N}x${K} with ${wd} weights matches the float64 reference`, async () => {
      const base = gpu.stats.liveBytes;
      const x = randomF32(M * K, M + N + K);
      let w = randomF32(N * K, M * N + K + 1);
      const wBits = wd === "f16" ? f32ArrayToF16(w) : null;
      if (wBits) w = f16ArrayToF32(wBits); // the reference sees exactly the stored weights
      const xt = GpuTensor.fromHost(gpu, x, [M, K], "f32", "x");
      const wt = GpuTensor.fromHost(gpu, wBits ?? w, [N, K], wd, "w");
      const yt = GpuTensor.empty(gpu, [M, N], "f32", "y");
      const b = new CommandBatch(gpu);
      await matmul(ctx, b, xt, wt, yt);
      b.submit();
      const y = (await yt.toHost()) as Float32Array;
      // Large shapes: check a sample of full rows (first, last and strided) against float64.
      const rows = M <= 64 ? Array.from({ length: M }, (_, i) => i) : [0, 1, 17, 100, 200, M - 2, M - 1];
      const ref = matmulRef(x, w, M, N, K, rows);
      const idx = rows.flatMap((m) => Array.from({ length: N }, (_, n) => m * N + n));
      const err = relError(y, ref, idx);
      console.log(`matmul ${M}x${N}x${K} ${wd}: relative error ${err.toExponential(2)} over ${rows.length} rows`);
      expect(err).toBeLessThan(1e-5);
      for (const t of [xt, wt, yt]) t.destroy();
      expect(gpu.stats.liveBytes).toBe(base);
    });
  }

  // The subgroup GEMV (matmul_sg.wgsl): M = 1..8, ragged N (not a multiple of its 8 rows per
  // workgroup), odd K for f16 (rows straddle words), both weight formats.
  for (const [M, N, K, wd] of [[1, 173, 64, "f32"], [3, 45, 171, "f16"], [8, 37, 300, "f16"], [5, 29, 33, "f32"]] as const) {
    it(`every dense variant: ${M}x${N}x${K} with ${wd} weights matches the float64 reference`, async () => {
      const x = randomF32(M * K, 7 * M + N);
      let w = randomF32(N * K, 11 * K + N);
      const wBits = wd === "f16" ? f32ArrayToF16(w) : null;
      if (wBits) w = f16ArrayToF32(wBits);
      const xt = GpuTensor.fromHost(gpu, x, [M, K], "f32", "x");
      const wt = GpuTensor.fromHost(gpu, wBits ?? w, [N, K], wd, "w");
      const ref = matmulRef(x, w, M, N, K);
      const runs = new VariantRuns(`dense matmul ${M}x${N}x${K} ${wd}`);
      for (const v of DENSE_VARIANTS) {
        if (!runs.take(v, denseVariantUnavailable(gpu, v, M))) continue;
        const yt = GpuTensor.empty(gpu, [M, N], "f32", "y");
        const b = new CommandBatch(gpu);
        expect(await matmul(ctx, b, xt, wt, yt, { variant: v })).toBe(v);
        b.submit();
        const err = relError((await yt.toHost()) as Float32Array, ref);
        console.log(`matmul ${v} ${M}x${N}x${K} ${wd}: relative error ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-5);
        yt.destroy();
      }
      runs.check();
      if (gpu.has("subgroups") && gpu.adapterInfo.subgroupMinSize >= 8) expect(runs.ran.size).toBe(2);
      for (const t of [xt, wt]) t.destroy();
    });
  }

  it("the subgroup GEMV is refused past M = 8; GPUs get it for GEMVs, CPU adapters for M = 1", async () => {
    expect(denseVariantUnavailable(gpu, "subgroup", 9)).toMatch(/M <= 8/);
    const xt = GpuTensor.fromHost(gpu, randomF32(9 * 16, 1), [9, 16], "f32", "x");
    const wt = GpuTensor.fromHost(gpu, randomF32(4 * 16, 2), [4, 16], "f32", "w");
    const yt = GpuTensor.empty(gpu, [9, 4], "f32", "y");
    await expect(matmul(ctx, new CommandBatch(gpu), xt, wt, yt, { variant: "subgroup" })).rejects.toThrow(/M <= 8/);
    expect(chooseDense(gpu, 9)).toBe("tiled");
    if (gpu.adapterInfo.kind === "cpu") expect(chooseDense(gpu, 4)).toBe("tiled");
    if (!denseVariantUnavailable(gpu, "subgroup", 1)) expect(chooseDense(gpu, 1)).toBe("subgroup");
    for (const t of [xt, wt, yt]) t.destroy();
  });

  it("binds weights larger than one storage binding in windows", async () => {
    // Just over one binding of f32 weights (128 MiB on lavapipe), sized from the device's limit.
    const lim = gpu.limits.maxStorageBufferBindingSize;
    const K = 2048 + 3;
    const N = Math.ceil(lim / (K * 4)) + 37;
    const M = 2;
    const x = randomF32(M * K, 5);
    const w = randomF32(N * K, 6);
    const xt = GpuTensor.fromHost(gpu, x, [M, K], "f32", "x");
    const wt = GpuTensor.fromHost(gpu, w, [N, K], "f32", "w.big");
    expect(wt.rowWindows({ rowBytes: K * 4 }).length).toBeGreaterThan(1);
    const yt = GpuTensor.empty(gpu, [M, N], "f32", "y");
    const ref = matmulRef(x, w, M, N, K);
    const runs = new VariantRuns(`dense matmul ${M}x${N}x${K} f32 in windows`);
    for (const v of DENSE_VARIANTS) {
      if (!runs.take(v, denseVariantUnavailable(gpu, v, M))) continue;
      const b = new CommandBatch(gpu);
      await matmul(ctx, b, xt, wt, yt, { variant: v });
      b.submit();
      const err = relError((await yt.toHost()) as Float32Array, ref);
      console.log(`matmul ${v} ${M}x${N}x${K} f32 (${(N * K * 4) / 2 ** 20} MiB of weights): relative error ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
    }
    runs.check();
    for (const t of [xt, wt, yt]) t.destroy();
  });

  // Transposed-weight GEMM (matmul_wt.wgsl): ragged M (not a multiple of its 16-row tile), N / 4 and K / 4
  // not multiples of its 8-invocation subgroup, and the stories260K shapes.
  const knCases: [number, number, number][] = [[37, 44, 60], [1, 4, 4], [16, 32, 64], [300, 172, 64], [129, 64, 172]];
  for (const [M, N, K] of knCases) {
    it(`matmulWt ${M}x${N}x${K} (W stored [K, N]) matches the float64 reference`, async () => {
      const why = matmulWtUnavailable(gpu, M, N, K);
      if (why) {
        // Only a device without subgroups may lack it; lavapipe has them.
        console.log(`matmulWt ${M}x${N}x${K}: skipped (${why})`);
        expect(why).toMatch(/subgroups/);
        expect(gpu.has("subgroups") && gpu.adapterInfo.subgroupMinSize >= 8).toBe(false);
        return;
      }
      const base = gpu.stats.liveBytes;
      const x = randomF32(M * K, 3 * M + N);
      const w = randomF32(N * K, 5 * K + N);
      const wtHost = new Float32Array(K * N);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wtHost[k * N + n] = w[n * K + k];
      const xt = GpuTensor.fromHost(gpu, x, [M, K], "f32", "x");
      const wt = GpuTensor.fromHost(gpu, wtHost, [K, N], "f32", "wt");
      const yt = GpuTensor.empty(gpu, [M, N], "f32", "y");
      const b = new CommandBatch(gpu);
      await matmulWt(ctx, b, xt, wt, yt);
      b.submit();
      const err = relError((await yt.toHost()) as Float32Array, matmulRef(x, w, M, N, K));
      console.log(`matmulWt ${M}x${N}x${K}: relative error ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
      for (const t of [xt, wt, yt]) t.destroy();
      expect(gpu.stats.liveBytes).toBe(base);
    });
  }

  it("matmulWt refuses shapes it cannot run, with the reason", async () => {
    expect(matmulWtUnavailable(gpu, 8, 6, 8)).toMatch(/multiples of 4|subgroups/);
    expect(matmulWtPreferred(gpu, 8, 6, 8)).toBe(false);
    const x = GpuTensor.empty(gpu, [2, 6], "f32", "x");
    const wt = GpuTensor.empty(gpu, [6, 8], "f32", "wt");
    const y = GpuTensor.empty(gpu, [2, 8], "f32", "y");
    await expect(matmulWt(ctx, new CommandBatch(gpu), x, wt, y)).rejects.toThrow(/matmulWt cannot run/);
    for (const t of [x, wt, y]) t.destroy();
  });

  it("swigluWt: silu(x·Wgᵀ) * (x·Wuᵀ) in one pass matches the float64 reference (ragged 53x44x60)", async () => {
    const [M, N, K] = [53, 44, 60];
    const why = matmulWtUnavailable(gpu, M, N, K);
    if (why) {
      console.log(`swigluWt ${M}x${N}x${K}: skipped (${why})`);
      expect(gpu.has("subgroups") && gpu.adapterInfo.subgroupMinSize >= 8).toBe(false);
      return;
    }
    const x = randomF32(M * K, 71), wg = randomF32(N * K, 72), wu = randomF32(N * K, 73);
    const T = (w: Float32Array) => Float32Array.from({ length: K * N }, (_, i) => w[(i % N) * K + Math.floor(i / N)]);
    const g = matmulRef(x, wg, M, N, K), u = matmulRef(x, wu, M, N, K);
    const want = Array.from(g, (v, i) => siluRef(v) * u[i]);
    const xt = GpuTensor.fromHost(gpu, x, [M, K], "f32", "x");
    const tg = GpuTensor.fromHost(gpu, T(wg), [K, N], "f32", "wg_t"), tu = GpuTensor.fromHost(gpu, T(wu), [K, N], "f32", "wu_t");
    const h = GpuTensor.empty(gpu, [M, N], "f32", "h");
    const b = new CommandBatch(gpu);
    await swigluWt(ctx, b, xt, tg, tu, h);
    b.submit();
    const err = relError((await h.toHost()) as Float32Array, want);
    console.log(`swigluWt ${M}x${N}x${K}: relative error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(1e-5);
    for (const t of [xt, tg, tu, h]) t.destroy();
  });
});
