// GPU round-to-nearest quantizers (shaders/quant/rtn.wgsl via src/quant/rtn.ts) against the CPU
// reference (src/ref/quant.ts): packed words, scales and zero points bit for bit, ragged K and N,
// exact ties, NaN/Inf rejection naming the tensor, row windows, and no leaked GPU memory.
import { describe, expect, it } from "vitest";
import { TensorError } from "../../src/errors.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { groupsPerRow, type HostPackedWeight, quantSpec, type QuantSpec, specName } from "../../src/quant/formats.ts";
import { destroyPacked, downloadPacked } from "../../src/quant/packed.ts";
import { quantizeRtn } from "../../src/quant/rtn.ts";
import { f16BitsToF32 } from "../../src/ref/f16.ts";
import { dequantizeRef, packRef, quantizePackRef, quantizeRef, unpackRef } from "../../src/ref/quant.ts";
import { gpuContext, randomF32, rng } from "../helpers/gpu.ts";

/** Random weights with per-row magnitudes from 1e-6 to 1e2 (tiny rows give subnormal f16 scales). */
function weights(N: number, K: number, seed: number): Float32Array {
  const w = randomF32(N * K, seed);
  const r = rng(seed + 1);
  for (let n = 0; n < N; n++) {
    const mag = 10 ** (-6 + 8 * r());
    for (let k = 0; k < K; k++) w[n * K + k] = Math.fround(w[n * K + k] * mag + (n % 3 === 0 ? 0.3 * mag : 0));
  }
  return w;
}

/** Index of the first differing word, or -1. */
function firstDiff(a: Uint32Array | null, b: Uint32Array | null): number {
  if (!a || !b) return a === b ? -1 : 0;
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function expectSamePacked(gpuP: HostPackedWeight, ref: HostPackedWeight, what: string): void {
  for (const key of ["qweight", "scales", "zeros"] as const) {
    const i = firstDiff(gpuP[key], ref[key]);
    expect(i, `${what}: ${key} word ${i}: gpu ${gpuP[key]?.[i]?.toString(16)} vs ref ${ref[key]?.[i]?.toString(16)}`).toBe(-1);
  }
}

describe("rtn quantizers", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  const configs: [4 | 8, number, boolean][] = [
    [4, 32, false], [4, 64, false], [4, 128, false],
    [4, 32, true], [4, 64, true], [4, 128, true],
    [8, 0, true],
  ];
  const shapes: [number, number][] = [[100, 172], [37, 300], [172, 64]];
  for (const [bits, G, sym] of configs) {
    for (const [N, K] of shapes) {
      const spec = quantSpec(bits, N, K, G || undefined, sym);
      it(`${specName(spec)} [${N}, ${K}]: GPU packing is bit-exact with the CPU reference`, async () => {
        const base = gpu.stats.liveBytes;
        const w = weights(N, K, N * 1000 + K + G + (sym ? 7 : 0) + bits);
        const ref = quantizePackRef(w, spec);
        const wt = GpuTensor.fromHost(gpu, w, [N, K], "f32", "w");
        const q = await quantizeRtn(ctx, wt, { bits, groupSize: G || undefined, sym });
        const got = await downloadPacked(q);
        expectSamePacked(got, ref, specName(spec));
        wt.destroy();
        destroyPacked(q);
        expect(gpu.stats.liveBytes).toBe(base);
      });
    }
  }

  it("pack -> unpack round-trips codes, scales and zeros (ragged last group, odd N·ng)", () => {
    for (const spec of [quantSpec(4, 7, 172, 32, false), quantSpec(4, 5, 300, 128, true), quantSpec(8, 3, 171, undefined, true)]) {
      const c = quantizeRef(weights(spec.N, spec.K, 3), spec);
      const u = unpackRef(packRef(c));
      expect(u.codes).toEqual(c.codes);
      expect(u.scales).toEqual(c.scales);
      expect(u.zeros).toEqual(c.zeros);
    }
  });

  it("dequantized weights stay within half a step (plus the f16 rounding of the scale) of the originals", () => {
    // The step is computed here from the original weights by the documented rule (asym:
    // max((max − min) / 15, 1e-5); sym int4: max|w| / 7; int8: max|w| / 127), not taken from the
    // quantizer: the stored f16 scale must be that step rounded to f16 (half an f16 ulp: 2^-11
    // relative, 2^-25 absolute for subnormal scales; 2^-24 more for the f32 subtraction max − min),
    // and every dequantized weight must be within half a step of the original, plus the clipping
    // of the extreme level by `levels` times the scale's rounding.
    for (const spec of [quantSpec(4, 9, 172, 32, false), quantSpec(4, 9, 172, 64, true), quantSpec(8, 9, 172, undefined, true)]) {
      const w = weights(spec.N, spec.K, 11);
      const p = quantizePackRef(w, spec);
      const dq = dequantizeRef(p);
      const c = unpackRef(p);
      const ng = groupsPerRow(spec);
      const G = spec.bits === 8 ? spec.K : spec.G;
      const levels = spec.bits === 8 ? 127 : spec.sym ? 7 : 15;
      let worst = 0, worstScale = 0, checked = 0, zeroScale = 0;
      for (let n = 0; n < spec.N; n++) {
        for (let g = 0; g < ng; g++) {
          const k0 = g * G, k1 = Math.min(k0 + G, spec.K);
          let mn = Infinity, mx = -Infinity;
          for (let k = k0; k < k1; k++) {
            mn = Math.min(mn, w[n * spec.K + k]);
            mx = Math.max(mx, w[n * spec.K + k]);
          }
          const step = spec.sym ? Math.max(Math.abs(mn), Math.abs(mx)) / levels : Math.max((mx - mn) / levels, 1e-5);
          const ds = step * (2 ** -11 + 2 ** -23) + 2 ** -25; // |stored scale − step| allowed
          const s = f16BitsToF32(c.scales[n * ng + g]);
          worstScale = Math.max(worstScale, Math.abs(s - step) / ds);
          const bound = 0.5 * (step + ds) + levels * ds;
          for (let k = k0; k < k1; k++) {
            const i = n * spec.K + k;
            if (s === 0) {
              // max|w| / levels is below half the smallest f16 (2^-25): the row/group quantizes to 0.
              expect(dq[i]).toBe(0);
              expect(Math.abs(w[i])).toBeLessThanOrEqual(2 ** -25 * levels);
              zeroScale++;
            }
            worst = Math.max(worst, Math.abs(w[i] - dq[i]) / bound);
            checked++;
          }
        }
      }
      console.log(`${specName(spec)}: ${checked} weights checked (${zeroScale} in all-zero groups), worst error ${worst.toFixed(3)} of the bound, worst scale deviation ${worstScale.toFixed(3)} of an f16 rounding`);
      expect(checked).toBe(spec.N * spec.K);
      expect(zeroScale, "most groups have a non-zero scale").toBeLessThan(checked / 2);
      expect(worstScale, `${specName(spec)}: stored scale vs the step computed from the weights`).toBeLessThanOrEqual(1);
      expect(worst, specName(spec)).toBeLessThanOrEqual(1);
    }
  });

  it("rounds exact ties to even, on the GPU as on the CPU", async () => {
    // sym int4 with max|w| = 7 gives s = 1: w = k + 0.5 is an exact tie.
    const K = 32;
    const row = [7, 0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 4.5, 5.5, 6.5, -6.5];
    const w = new Float32Array(2 * K);
    w.set(row);
    // int8 with max|w| = 127 gives s = 1 too.
    w.set([127, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5], K);
    const spec4 = quantSpec(4, 2, K, 32, true);
    const c = quantizeRef(w, spec4);
    expect([...c.codes.slice(0, row.length)].map((q) => q - 8)).toEqual([7, 0, 2, 2, 4, 0, -2, -2, -4, 4, 6, 6, -6]);
    const spec8 = quantSpec(8, 2, K, undefined, true);
    const c8 = quantizeRef(w, spec8);
    expect([...c8.codes.slice(K, K + 7)]).toEqual([127, 0, 2, 2, 0, -2, 126]);
    const wt = GpuTensor.fromHost(gpu, w, [2, K], "f32", "ties");
    for (const spec of [spec4, spec8]) {
      const q = await quantizeRtn(ctx, wt, { bits: spec.bits, groupSize: spec.G, sym: true });
      expectSamePacked(await downloadPacked(q), packRef(quantizeRef(w, spec)), `ties ${specName(spec)}`);
      destroyPacked(q);
    }
    wt.destroy();
  });

  for (const [bits, sym, bad] of [[4, false, NaN], [4, true, Infinity], [8, true, -Infinity]] as const) {
    it(`rejects ${bad} in a weight (int${bits}${sym ? " sym" : ""}) with a TensorError naming the tensor and element`, async () => {
      const base = gpu.stats.liveBytes;
      const N = 9;
      const K = 172;
      const w = weights(N, K, 5);
      w[5 * K + 17] = bad;
      w[7 * K + 3] = bad;
      const label = "model.layers.0.mlp.down_proj.weight";
      const wt = GpuTensor.fromHost(gpu, w, [N, K], "f32", label);
      const err = await quantizeRtn(ctx, wt, { bits, groupSize: 32, sym }).catch((e) => e);
      expect(err).toBeInstanceOf(TensorError);
      expect(err.message).toContain(label);
      expect(err.message).toContain("[5, 17]");
      expect(() => quantizeRef(w, quantSpec(bits, N, K, 32, sym), label)).toThrow(/\[5, 17\]/);
      wt.destroy();
      expect(gpu.stats.liveBytes).toBe(base);
    });
  }

  it("quantizes a weight larger than one storage binding in row windows", async () => {
    const base = gpu.stats.liveBytes;
    const K = 4096;
    const N = Math.ceil(gpu.limits.maxStorageBufferBindingSize / (K * 4)) + 9;
    const w = randomF32(N * K, 77);
    const wt = GpuTensor.fromHost(gpu, w, [N, K], "f32", "w.big");
    expect(wt.rowWindows({ rowBytes: K * 4 }).length).toBeGreaterThan(1);
    const q = await quantizeRtn(ctx, wt, { bits: 4, groupSize: 128, sym: false });
    const got = unpackRef(await downloadPacked(q));
    // Rows are independent: check the reference on rows at both ends and around the window edge.
    const spec = quantSpec(4, N, K, 128, false);
    const ng = groupsPerRow(spec);
    const per = wt.rowWindows({ rowBytes: K * 4 })[1].firstRow;
    for (const r0 of [0, per - 2, N - 3]) {
      const rows = 3;
      const sub: QuantSpec = { ...spec, N: rows };
      const c = quantizeRef(w.subarray(r0 * K, (r0 + rows) * K), sub);
      expect(got.codes.subarray(r0 * K, (r0 + rows) * K)).toEqual(c.codes);
      expect(got.scales.subarray(r0 * ng, (r0 + rows) * ng)).toEqual(c.scales);
      expect(got.zeros!.subarray(r0 * ng, (r0 + rows) * ng)).toEqual(c.zeros);
    }
    wt.destroy();
    destroyPacked(q);
    expect(gpu.stats.liveBytes).toBe(base);
  });
});
