import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { rope, ropeTable } from "../../src/nn/rope.ts";
import { ropeForwardRef } from "../../src/ref/backward.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";

describe("RoPE kernels", async () => {
  const ctx = await gpuContext();
  const invFreqOf = (D: number) => Float32Array.from({ length: D / 2 }, (_, i) => 10000 ** (-(2 * i) / D));

  // D = 8 and 16 take the table's vec4 path; D = 12 (half not a multiple of 4) falls back to main.
  for (const [T, nh, D, pos0, seq] of [[37, 3, 8, 0, 0], [37, 3, 16, 5, 0], [45, 2, 8, 0, 9], [29, 4, 12, 3, 0], [64, 5, 8, 7, 16]]) {
    it(`T ${T}, ${nh} heads, D ${D}, pos0 ${pos0}, seq ${seq}: matches float64; the table path is bit-identical to main`, async () => {
      const x = randomF32(T * nh * D, T + D + pos0);
      const inv = GpuTensor.fromHost(ctx.gpu, invFreqOf(D), [D / 2], "f32", "inv_freq");
      const a = GpuTensor.fromHost(ctx.gpu, x, [T, nh * D], "f32", "a");
      const b = GpuTensor.fromHost(ctx.gpu, x, [T, nh * D], "f32", "b");
      const batch = new CommandBatch(ctx.gpu);
      const table = await ropeTable(ctx, batch, inv, pos0 + (seq || T));
      await rope(ctx, batch, a, inv, T, nh, pos0, seq);
      await rope(ctx, batch, b, inv, T, nh, pos0, seq, table);
      batch.submit();
      const ga = (await a.toHost()) as Float32Array;
      const gb = (await b.toHost()) as Float32Array;
      const ref = ropeForwardRef(x, invFreqOf(D), T, nh, pos0, seq);
      const err = relError(ga, ref);
      expect(err).toBeLessThan(2e-6);
      expect(Array.from(gb)).toEqual(Array.from(ga));
      expect(ga.some((v, i) => v !== x[i])).toBe(true);
      for (const t of [inv, a, b, table.tensor]) t.destroy();
    });
  }

  it("a table too short for the positions falls back to computing cos / sin", async () => {
    const T = 20, nh = 2, D = 8;
    const x = randomF32(T * nh * D, 3);
    const inv = GpuTensor.fromHost(ctx.gpu, invFreqOf(D), [D / 2], "f32", "inv_freq");
    const a = GpuTensor.fromHost(ctx.gpu, x, [T, nh * D], "f32", "a");
    const batch = new CommandBatch(ctx.gpu);
    const table = await ropeTable(ctx, batch, inv, 10);
    await rope(ctx, batch, a, inv, T, nh, 0, 0, table);
    batch.submit();
    expect(relError((await a.toHost()) as Float32Array, ropeForwardRef(x, invFreqOf(D), T, nh, 0, 0))).toBeLessThan(2e-6);
    for (const t of [inv, a, table.tensor]) t.destroy();
  });
});
