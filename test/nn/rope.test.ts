import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { rope } from "../../src/nn/rope.ts";
import { ropeForwardRef } from "../../src/ref/backward.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";

describe("RoPE kernel", async () => {
  const ctx = await gpuContext();
  const invFreqOf = (D: number) => Float32Array.from({ length: D / 2 }, (_, i) => 10000 ** (-(2 * i) / D));

  for (const [T, nh, D, pos0, seq] of [[37, 3, 8, 0, 0], [37, 3, 16, 5, 0], [45, 2, 8, 0, 9], [29, 4, 12, 3, 0], [64, 5, 8, 7, 16]]) {
    it(`T ${T}, ${nh} heads, D ${D}, pos0 ${pos0}, seq ${seq}: matches float64`, async () => {
      const x = randomF32(T * nh * D, T + D + pos0);
      const inv = GpuTensor.fromHost(ctx.gpu, invFreqOf(D), [D / 2], "f32", "inv_freq");
      const a = GpuTensor.fromHost(ctx.gpu, x, [T, nh * D], "f32", "a");
      const batch = new CommandBatch(ctx.gpu);
      await rope(ctx, batch, a, inv, T, nh, pos0, seq);
      batch.submit();
      const ga = (await a.toHost()) as Float32Array;
      expect(relError(ga, ropeForwardRef(x, invFreqOf(D), T, nh, pos0, seq))).toBeLessThan(2e-6);
      expect(ga.some((v, i) => v !== x[i])).toBe(true);
      for (const t of [inv, a]) t.destroy();
    });
  }
});
