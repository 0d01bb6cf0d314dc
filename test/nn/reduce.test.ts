import { describe, expect, it } from "vitest";
import { reduceStats } from "../../src/nn/reduce.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { reduceRef, type ReduceAxis } from "../../src/ref/reduce.ts";
import { gpuContext, randomF32 } from "../helpers/gpu.ts";

describe("reduceStats", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  const cases: [number, number, ReduceAxis][] = [
    [1, 172, "rows"],
    [37, 300, "rows"],
    [3, 1_000_003, "rows"], // long ragged rows: many chunks, then combine
    [1, 172, "cols"],
    [1000, 37, "cols"],
    [70_001, 5, "cols"], // many row chunks
  ];
  for (const [R, C, axis] of cases) {
    it(`${axis} of [${R}, ${C}] matches float64 within f32 rounding`, async () => {
      const base = gpu.stats.liveBytes;
      const x = randomF32(R * C, R * 31 + C, -3, 2); // biased: sums do not cancel to zero
      const t = GpuTensor.fromHost(gpu, x, [R, C], "f32", "x");
      const S = axis === "rows" ? R : C;
      const out = GpuTensor.empty(gpu, [S, 4], "f32", "out");
      const b = new CommandBatch(gpu);
      await reduceStats(ctx, b, t, axis, out);
      b.submit();
      const got = (await out.toHost()) as Float32Array;
      const ref = reduceRef(x, R, C, axis);
      let worst = 0;
      for (let s = 0; s < S; s++) {
        const scale = ref[s * 4 + 1];
        worst = Math.max(worst, Math.abs(got[s * 4] - ref[s * 4]) / scale, Math.abs(got[s * 4 + 1] - ref[s * 4 + 1]) / scale, Math.abs(got[s * 4 + 3] - ref[s * 4 + 3]) / ref[s * 4 + 3]);
        expect(got[s * 4 + 2]).toBe(Math.fround(ref[s * 4 + 2]));
      }
      console.log(`reduce ${axis} [${R}, ${C}]: worst relative error ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-6);
      t.destroy();
      out.destroy();
      expect(gpu.stats.liveBytes).toBe(base);
    });
  }
});

describe("reduceStats accumulate", async () => {
  const ctx = await gpuContext();
  it("folds statistics of several calls into one running result (calibration)", async () => {
    const C = 172;
    const parts = [37, 256, 5].map((R, i) => ({ R, x: randomF32(R * C, 900 + i, -2, 3) }));
    const out = GpuTensor.empty(ctx.gpu, [C, 4], "f32", "running");
    for (const { R, x } of parts) {
      const t = GpuTensor.fromHost(ctx.gpu, x, [R, C], "f32", "x");
      const b = new CommandBatch(ctx.gpu);
      await reduceStats(ctx, b, t, "cols", out, true);
      b.submit();
      t.destroy();
    }
    const all = new Float32Array(parts.reduce((a, p) => a + p.x.length, 0));
    let o = 0;
    for (const p of parts) { all.set(p.x, o); o += p.x.length; }
    const ref = reduceRef(all, all.length / C, C, "cols");
    const got = (await out.toHost()) as Float32Array;
    for (let c = 0; c < C; c++) {
      expect(Math.abs(got[c * 4 + 1] - ref[c * 4 + 1]) / ref[c * 4 + 1]).toBeLessThan(1e-6);
      expect(got[c * 4 + 2]).toBe(Math.fround(ref[c * 4 + 2]));
      expect(Math.abs(got[c * 4 + 3] - ref[c * 4 + 3]) / ref[c * 4 + 3]).toBeLessThan(1e-6);
    }
    out.destroy();
  });
});
