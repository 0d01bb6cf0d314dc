// LSQ fake quantization: the float64 reference gradients against finite differences (of the
// straight-through surrogate, and of the true forward where it is differentiable), then the GPU
// forward, backward and min/max initialisation against the reference on ragged groups.

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { lsqBackwardRef, lsqForwardRef, lsqInitRef, lsqSurrogateRef, type LsqRefShape } from "../../src/ref/train.ts";
import { lsqBackward, lsqForward, lsqInit } from "../../src/train/lsq.ts";
import { gpuContext, randomF32, relError, rng } from "../helpers/gpu.ts";

/** The largest level, defined here: asym 0 .. 2^bits − 1, sym −2^(bits−1) .. 2^(bits−1) − 1. */
function lsqMaxq(sh: { bits: number; sym: boolean }): number {
  return sh.sym ? 2 ** (sh.bits - 1) - 1 : 2 ** sh.bits - 1;
}

/** Groups per row: ceil(K / G), one group when G >= K. */
function lsqGroups(K: number, G: number): number {
  return Math.ceil(K / Math.min(G, K));
}

function levels(sh: LsqRefShape): { lo: number; hi: number } {
  const maxq = lsqMaxq(sh);
  return { lo: sh.sym ? -maxq - 1 : 0, hi: maxq };
}

/**
 * Tiny inputs away from every decision boundary: z = integer + 0.3 (asym), u = w/s = integer + δ with
 * |δ| <= 0.25, spanning the clipped levels on both sides.
 */
function tinyCase(sh: LsqRefShape, seed: number) {
  const r = rng(seed);
  const { N, K } = sh;
  const ng = lsqGroups(K, sh.G);
  const G = Math.min(sh.G, K);
  const { lo, hi } = levels(sh);
  const s = new Float64Array(N * ng).map(() => 0.05 + 0.15 * r());
  const z = sh.sym ? null : new Float64Array(N * ng).map(() => 1 + Math.floor(r() * (hi - 2)) + 0.3);
  const w = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const gi = n * ng + Math.floor(k / G);
      const zi = z ? Math.floor(z[gi]) : 0;
      const u = lo - zi - 2 + Math.floor(r() * (hi - lo + 5)) + (r() - 0.5) * 0.5;
      w[n * K + k] = u * s[gi];
    }
  }
  return { w, s, z, R: Float64Array.from(randomF32(N * K, seed + 1)) };
}

function centralDiff(x: Float64Array, loss: () => number, h: number): Float64Array {
  const fd = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    x[i] = x0 + h;
    const lp = loss();
    x[i] = x0 - h;
    const lm = loss();
    x[i] = x0;
    fd[i] = (lp - lm) / (2 * h);
  }
  return fd;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

describe("LSQ reference gradients", () => {
  for (const sh of [
    { N: 3, K: 11, G: 4, bits: 3, sym: false },
    { N: 2, K: 9, G: 9, bits: 4, sym: false },
    { N: 3, K: 10, G: 4, bits: 3, sym: true },
  ] as LsqRefShape[]) {
    it(`finite differences (${sh.sym ? "sym" : "asym"} ${sh.bits}-bit, N ${sh.N}, K ${sh.K}, G ${sh.G})`, () => {
      const { w, s, z, R } = tinyCase(sh, 7 + sh.K);
      const w0 = w.slice();
      const s0 = s.slice();
      const g = lsqBackwardRef(w, s, z, R, sh);
      // Surrogate (rint frozen to u + const): its exact gradient is the STE / LSQ gradient.
      const sur = () => dot(R, lsqSurrogateRef(w, s, z, w0, s0, sh));
      expect(sur()).toBeCloseTo(dot(R, lsqForwardRef(w, s, z, sh)), 12);
      const h = 1e-7;
      const eW = relError(g.dw, centralDiff(w, sur, h));
      const eS = relError(g.ds, centralDiff(s, sur, h));
      console.log(`surrogate FD: dw ${eW.toExponential(2)}, ds ${eS.toExponential(2)}`);
      expect(eW).toBeLessThan(1e-7);
      expect(eS).toBeLessThan(1e-7);
      // True forward: piecewise constant in w (derivative 0); in s it is Σ R·rint(u) inside and
      // Σ R·(level − z) outside, which is the LSQ ds plus Σ_inside R·u.
      const tru = () => dot(R, lsqForwardRef(w, s, z, sh));
      expect(Math.max(...centralDiff(w, tru, h).map(Math.abs))).toBe(0);
      const ng = s.length;
      const G = Math.min(sh.G, sh.K);
      const corr = Float64Array.from(g.ds);
      for (let i = 0; i < w.length; i++) {
        const n = Math.floor(i / sh.K);
        const gi = n * (ng / sh.N) + Math.floor((i % sh.K) / G);
        if (g.dw[i] !== 0) corr[gi] += R[i] * (w[i] / s[gi]);
      }
      const eT = relError(corr, centralDiff(s, tru, h));
      console.log(`true-forward FD: ds + Σ R·u ${eT.toExponential(2)}`);
      expect(eT).toBeLessThan(1e-7);
      let inside = 0;
      for (const x of g.dw) if (x !== 0) inside++;
      expect(inside).toBeGreaterThan(0);
      expect(inside).toBeLessThan(w.length); // both clipped and unclipped elements
      if (z) {
        const eZs = relError(g.dz, centralDiff(z, sur, h));
        const eZt = relError(g.dz, centralDiff(z, tru, h));
        console.log(`FD dz: surrogate ${eZs.toExponential(2)}, true forward ${eZt.toExponential(2)}`);
        expect(eZs).toBeLessThan(1e-7);
        expect(eZt).toBeLessThan(1e-7);
      }
      // LSQ gradient scale: ds, dz of each group times 1/sqrt(n·maxq).
      const gs = lsqBackwardRef(w, s, z, R, sh, { gradScale: true });
      const last = sh.K - (ng / sh.N - 1) * G;
      expect(gs.ds[ng / sh.N - 1]).toBeCloseTo(g.ds[ng / sh.N - 1] / Math.sqrt(last * lsqMaxq(sh)), 12);
      expect(gs.dw).toEqual(g.dw);
    });
  }
});

/** Moves elements off rounding ties (u = k + 1/2) and clipping edges (u + z at lo or hi) by more than f32 noise. */
function awayFromEdges(w: Float32Array, s: ArrayLike<number>, z: ArrayLike<number> | null, sh: LsqRefShape): number {
  const { lo, hi } = levels(sh);
  const ng = lsqGroups(sh.K, sh.G);
  const G = Math.min(sh.G, sh.K);
  let moved = 0;
  for (let i = 0; i < w.length; i++) {
    const gi = Math.floor(i / sh.K) * ng + Math.floor((i % sh.K) / G);
    const zz = z ? z[gi] : 0;
    for (;;) {
      const u = w[i] / s[gi];
      const near = (x: number) => Math.abs(x) < 2e-3;
      if (!near(u - Math.floor(u) - 0.5) && !near(u + zz - lo) && !near(u + zz - hi)) break;
      w[i] = Math.fround(w[i] + 5e-3 * s[gi]);
      moved++;
    }
  }
  return moved;
}

describe("LSQ on the GPU vs the reference", async () => {
  const ctx = await gpuContext();
  const host = async (t: GpuTensor) => (await t.toHost()) as Float32Array;
  const cases: (LsqRefShape & { name: string })[] = [
    { name: "asym 4-bit, G 16, ragged last group", N: 7, K: 45, G: 16, bits: 4, sym: false },
    { name: "sym 3-bit, G 8, ragged", N: 5, K: 37, G: 8, bits: 3, sym: true },
    { name: "asym 8-bit, one group per row", N: 9, K: 50, G: 64, bits: 8, sym: false },
    { name: "asym 2-bit, G 32, 67 rows", N: 67, K: 70, G: 32, bits: 2, sym: false },
  ];
  let seed = 300;
  for (const c of cases) {
    it(c.name, async () => {
      const { N, K } = c;
      const ng = lsqGroups(K, c.G);
      const w = randomF32(N * K, seed++);
      // Start from the RTN initialisation, then move s and z as training would (z off the integers).
      const init = lsqInitRef(w, c);
      const r = rng(seed++);
      const s = init.s.map((x) => x * (0.8 + 0.4 * r()));
      const z = c.sym ? null : init.z.map((x) => x + r() - 0.5);
      const moved = awayFromEdges(w, s, z, c);
      const dwq = randomF32(N * K, seed++);
      const up = (a: Float32Array, shape: number[], label: string) => GpuTensor.fromHost(ctx.gpu, a, shape, "f32", label);
      const tw = up(w, [N, K], "w"), ts = up(s, [N, ng], "s"), tdwq = up(dwq, [N, K], "dwq");
      const tz = z ? up(z, [N, ng], "z") : null;
      const wq = GpuTensor.empty(ctx.gpu, [N, K], "f32", "wq");
      const mk = () => ({
        dw: GpuTensor.empty(ctx.gpu, [N, K], "f32", "dw"),
        dscale: GpuTensor.empty(ctx.gpu, [N, ng], "f32", "ds"),
        dzero: z ? GpuTensor.empty(ctx.gpu, [N, ng], "f32", "dz") : null,
      });
      const plain = mk(), scaled = mk(), twice = mk();
      const b = new CommandBatch(ctx.gpu, "lsq");
      await lsqForward(ctx, b, tw, ts, tz, wq, c);
      await lsqBackward(ctx, b, { w: tw, scale: ts, zero: tz, dwq: tdwq, ...plain }, c);
      await lsqBackward(ctx, b, { w: tw, scale: ts, zero: tz, dwq: tdwq, ...scaled }, c, { gradScale: true });
      await lsqBackward(ctx, b, { w: tw, scale: ts, zero: tz, dwq: tdwq, ...twice }, c);
      await lsqBackward(ctx, b, { w: tw, scale: ts, zero: tz, dwq: tdwq, ...twice }, c, { accumulate: true });
      b.submit();
      const eF = relError(await host(wq), lsqForwardRef(w, s, z, c));
      console.log(`${c.name}: ${moved} elements moved off edges; forward rel err ${eF.toExponential(2)}`);
      expect(eF).toBeLessThan(1e-6);
      for (const [how, t, gradScale] of [["plain", plain, false], ["grad scale", scaled, true]] as const) {
        const want = lsqBackwardRef(w, s, z, dwq, c, { gradScale });
        expect(want.dw.some((x) => x === 0) && want.dw.some((x) => x !== 0)).toBe(true); // clipped and unclipped
        const e = { dw: relError(await host(t.dw), want.dw), ds: relError(await host(t.dscale), want.ds), dz: t.dzero ? relError(await host(t.dzero), want.dz) : 0 };
        console.log(`${c.name}, ${how}: dw ${e.dw.toExponential(2)}, ds ${e.ds.toExponential(2)}, dz ${e.dz.toExponential(2)}`);
        for (const x of Object.values(e)) expect(x).toBeLessThan(1e-5);
      }
      // accumulate adds exactly: x + x = 2x in floating point.
      expect(await host(twice.dw)).toEqual((await host(plain.dw)).map((x) => 2 * x));
      expect(await host(twice.dscale)).toEqual((await host(plain.dscale)).map((x) => 2 * x));
      if (twice.dzero) expect(await host(twice.dzero)).toEqual((await host(plain.dzero!)).map((x) => 2 * x));
      for (const t of [tw, ts, tdwq, tz, wq, ...Object.values(plain), ...Object.values(scaled), ...Object.values(twice)]) t?.destroy();
    });
  }

  it("rounds ties to even, like RTN", async () => {
    const sh = { N: 1, K: 8, G: 8, bits: 4, sym: false };
    const s = new Float32Array([0.25]);
    const z = new Float32Array([8]);
    const u = [0.5, 1.5, 2.5, -0.5, -1.5, 3.5, -2.5, 4.5];
    const w = new Float32Array(u.map((x) => x * 0.25)); // exact: u = w / s
    const want = lsqForwardRef(w, s, z, sh);
    expect(Array.from(want)).toEqual([0, 2, 2, 0, -2, 4, -2, 4].map((q) => q * 0.25));
    const wq = GpuTensor.empty(ctx.gpu, [1, 8], "f32", "wq");
    const tw = GpuTensor.fromHost(ctx.gpu, w, [1, 8], "f32", "w");
    const ts = GpuTensor.fromHost(ctx.gpu, s, [1, 1], "f32", "s");
    const tz = GpuTensor.fromHost(ctx.gpu, z, [1, 1], "f32", "z");
    const b = new CommandBatch(ctx.gpu, "ties");
    await lsqForward(ctx, b, tw, ts, tz, wq, sh);
    b.submit();
    expect(Array.from(await host(wq), (x) => x + 0)).toEqual(Array.from(want, (x) => x + 0));
    for (const t of [wq, tw, ts, tz]) t.destroy();
  });

  for (const sh of [
    { N: 13, K: 45, G: 16, bits: 4, sym: false },
    { N: 6, K: 30, G: 7, bits: 3, sym: true },
    { N: 4, K: 33, G: 128, bits: 8, sym: false },
  ] as LsqRefShape[]) {
    it(`min/max initialisation (${sh.sym ? "sym" : "asym"} ${sh.bits}-bit, K ${sh.K}, G ${sh.G})`, async () => {
      const ng = lsqGroups(sh.K, sh.G);
      const w = randomF32(sh.N * sh.K, seed++, -0.7, 1.3);
      const want = lsqInitRef(w, sh);
      const tw = GpuTensor.fromHost(ctx.gpu, w, [sh.N, sh.K], "f32", "w");
      const ts = GpuTensor.empty(ctx.gpu, [sh.N, ng], "f32", "s");
      const tz = sh.sym ? null : GpuTensor.empty(ctx.gpu, [sh.N, ng], "f32", "z");
      const b = new CommandBatch(ctx.gpu, "init");
      await lsqInit(ctx, b, tw, ts, tz, sh);
      b.submit();
      const eS = relError(await host(ts), want.s);
      console.log(`init: s rel err ${eS.toExponential(2)}`);
      expect(eS).toBeLessThan(1e-6);
      if (tz) {
        const zg = await host(tz);
        expect(Array.from(zg)).toEqual(Array.from(want.z));
        expect(zg.some((x) => x > 0)).toBe(true);
      }
      for (const t of [tw, ts, tz]) t?.destroy();
    });
  }
});
