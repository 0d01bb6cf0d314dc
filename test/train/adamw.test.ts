// AdamW: the GPU update against the float64 reference over several steps, bit-for-bit repeatability,
// the sum of squares for gradient clipping, the learning-rate schedules, and a small quadratic that
// the whole loop (norm, clip, schedule, update) must minimise.

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { adamwRef, sumSquaresRef } from "../../src/ref/train.ts";
import { sumPartials } from "../../src/nn/reduce.ts";
import { adamwStep, clipFactor, gradNorm, gradSumSquares, learningRate, type LrSchedule } from "../../src/train/adamw.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";

describe("learning-rate schedules", () => {
  const base = { lr: 1e-3, warmup: 10, total: 110, minLr: 1e-4 };
  it("warm up linearly, then decay to minLr", () => {
    for (const kind of ["cosine", "linear", "constant"] as const) {
      const s: LrSchedule = { kind, ...base };
      expect(learningRate(1, s)).toBeCloseTo(1e-4, 15);
      expect(learningRate(5, s)).toBeCloseTo(5e-4, 15);
      expect(learningRate(10, s)).toBeCloseTo(1e-3, 15);
    }
    expect(learningRate(60, { kind: "cosine", ...base })).toBeCloseTo(5.5e-4, 15); // halfway: mean of lr and minLr
    expect(learningRate(110, { kind: "cosine", ...base })).toBeCloseTo(1e-4, 15);
    expect(learningRate(500, { kind: "cosine", ...base })).toBeCloseTo(1e-4, 15);
    expect(learningRate(35, { kind: "linear", ...base })).toBeCloseTo(1e-3 - 0.25 * 9e-4, 15);
    expect(learningRate(110, { kind: "linear", ...base })).toBeCloseTo(1e-4, 15);
    expect(learningRate(80, { kind: "constant", ...base })).toBe(1e-3);
    expect(learningRate(1, { kind: "cosine", lr: 2, total: 1 })).toBe(0); // no warm-up, one step: already at the end
    expect(() => learningRate(0, { kind: "linear", ...base })).toThrow(/step/);
  });

  it("clip factor", () => {
    expect(clipFactor(0.5, 1)).toBe(1);
    expect(clipFactor(4, 1)).toBeCloseTo(0.25, 6);
    expect(() => clipFactor(NaN, 1)).toThrow(/not finite/);
  });
});

describe("AdamW on the GPU", async () => {
  const ctx = await gpuContext();
  const host = async (t: GpuTensor) => (await t.toHost()) as Float32Array;

  /** Runs `steps` GPU updates and returns the final param, m, v. */
  async function runGpu(p0: Float32Array, m0: Float32Array, v0: Float32Array, grads: Float32Array[], shape: number[], opts: (t: number) => Parameters<typeof adamwStep>[4]) {
    const param = GpuTensor.fromHost(ctx.gpu, p0, shape, "f32", "p");
    const m = GpuTensor.fromHost(ctx.gpu, m0, shape, "f32", "m");
    const v = GpuTensor.fromHost(ctx.gpu, v0, shape, "f32", "v");
    const grad = GpuTensor.empty(ctx.gpu, shape, "f32", "g");
    for (let t = 1; t <= grads.length; t++) {
      grad.write(grads[t - 1]);
      const b = new CommandBatch(ctx.gpu, "adamw");
      await adamwStep(ctx, b, { param, grad, m, v }, t, opts(t));
      b.submit();
    }
    const out = { p: await host(param), m: await host(m), v: await host(v) };
    for (const x of [param, m, v, grad]) x.destroy();
    return out;
  }

  it("matches the float64 reference over 5 steps (ragged size, weight decay, grad scale, warm moments)", async () => {
    const shape = [37, 111];
    const n = 37 * 111;
    const p0 = randomF32(n, 1, -2, 2);
    const m0 = randomF32(n, 2, -0.1, 0.1);
    const v0 = randomF32(n, 3, 1e-4, 1e-2);
    const grads = [4, 5, 6, 7, 8].map((s) => randomF32(n, s, -0.5, 0.5));
    const sched: LrSchedule = { kind: "cosine", lr: 3e-2, warmup: 2, total: 5, minLr: 1e-3 };
    const opts = (t: number) => ({ lr: learningRate(t, sched), beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.7 });
    const got = await runGpu(p0, m0, v0, grads, shape, opts);
    const p = Float64Array.from(p0), m = Float64Array.from(m0), v = Float64Array.from(v0);
    for (let t = 1; t <= 5; t++) adamwRef(p, grads[t - 1], m, v, t, opts(t));
    const e = { p: relError(got.p, p), m: relError(got.m, m), v: relError(got.v, v) };
    // The update itself (p − p0) is the sensitive part: compare it too.
    const dp = got.p.map((x, i) => x - p0[i]);
    const dpRef = p.map((x, i) => x - p0[i]);
    const eUpd = relError(dp, dpRef);
    console.log(`AdamW 5 steps: p ${e.p.toExponential(2)}, update ${eUpd.toExponential(2)}, m ${e.m.toExponential(2)}, v ${e.v.toExponential(2)}`);
    for (const x of [...Object.values(e), eUpd]) expect(x).toBeLessThan(1e-5);
    // Deterministic: the same inputs give the same bits.
    const again = await runGpu(p0, m0, v0, grads, shape, opts);
    expect(again.p).toEqual(got.p);
    expect(again.v).toEqual(got.v);
  });

  it("sum of squares: partial sums match float64 and repeat bit for bit", async () => {
    for (const n of [5, 1023, 70001]) {
      const g = randomF32(n, n, -3, 3);
      const t = GpuTensor.fromHost(ctx.gpu, g, [n], "f32", "g");
      const b = new CommandBatch(ctx.gpu, "sumsq");
      const p1 = await gradSumSquares(ctx, b, t);
      const p2 = await gradSumSquares(ctx, b, t);
      b.submit();
      const h1 = await host(p1);
      expect(await host(p2)).toEqual(h1);
      const want = sumSquaresRef(g);
      const err = Math.abs(sumPartials(h1) - want) / want;
      console.log(`sumsq n ${n}: ${h1.length} partials, rel err ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-6);
      for (const x of [t, p1, p2]) x.destroy();
    }
    // One large term then many tiny ones: a plain f32 running sum drops every tiny square (1 + 2^-24 = 1).
    const hard = new Float32Array(1024).fill(2 ** -12);
    hard[0] = 1;
    const th = GpuTensor.fromHost(ctx.gpu, hard, [1024], "f32", "hard");
    const hardErr = Math.abs((await gradNorm(ctx, [th])) ** 2 - sumSquaresRef(hard)) / sumSquaresRef(hard);
    console.log(`sumsq 1 + 1023 * 2^-24: rel err ${hardErr.toExponential(2)} (plain f32 running sum: 6.1e-5)`);
    expect(hardErr).toBeLessThan(1e-5);
    th.destroy();
    const a = randomF32(300, 9), c = randomF32(4099, 10);
    const ta = GpuTensor.fromHost(ctx.gpu, a, [300], "f32", "a"), tc = GpuTensor.fromHost(ctx.gpu, c, [4099], "f32", "c");
    const norm = await gradNorm(ctx, [ta, tc]);
    const want = Math.sqrt(sumSquaresRef(a) + sumSquaresRef(c));
    expect(Math.abs(norm - want) / want).toBeLessThan(1e-6);
    ta.destroy();
    tc.destroy();
  });

  it("minimises a quadratic with clipping and a cosine schedule", async () => {
    const n = 257;
    const a = randomF32(n, 21, 0.5, 2);
    const c = randomF32(n, 22, -1, 1);
    const p0 = randomF32(n, 23, -3, 3);
    const f = (p: ArrayLike<number>) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += 0.5 * a[i] * (p[i] - c[i]) ** 2;
      return s;
    };
    const param = GpuTensor.fromHost(ctx.gpu, p0, [n], "f32", "p");
    const grad = GpuTensor.empty(ctx.gpu, [n], "f32", "g");
    const m = GpuTensor.empty(ctx.gpu, [n], "f32", "m");
    const v = GpuTensor.empty(ctx.gpu, [n], "f32", "v");
    const steps = 150;
    const sched: LrSchedule = { kind: "cosine", lr: 0.1, warmup: 10, total: steps, minLr: 1e-3 };
    let p = p0;
    let clipped = 0;
    for (let t = 1; t <= steps; t++) {
      grad.write(p.map((x, i) => a[i] * (x - c[i])));
      const scale = clipFactor(await gradNorm(ctx, [grad]), 5);
      if (scale < 1) clipped++;
      const b = new CommandBatch(ctx.gpu, "adamw");
      await adamwStep(ctx, b, { param, grad, m, v }, t, { lr: learningRate(t, sched), gradScale: scale });
      b.submit();
      p = await host(param);
    }
    console.log(`quadratic: f ${f(p0).toExponential(2)} -> ${f(p).toExponential(2)}, ${clipped} clipped steps`);
    expect(clipped).toBeGreaterThan(0);
    expect(f(p)).toBeLessThan(1e-4 * f(p0));
    for (const x of [param, grad, m, v]) x.destroy();
  });
});
