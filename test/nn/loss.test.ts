import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { lossBuffers, nextTokenLoss, readLossTotals } from "../../src/nn/loss.ts";
import { lossRef } from "../../src/ref/llama.ts";
import { gpuContext, randomF32, rng } from "../helpers/gpu.ts";

describe("next-token loss on the GPU", async () => {
  const ctx = await gpuContext();
  for (const [T, V] of [[2, 7], [37, 1000], [5, 32003]] as const) {
    for (const withRef of [false, true]) {
      it(`T=${T}, V=${V}${withRef ? ", against reference logits" : ""}: totals match the CPU reference`, async () => {
        const base = ctx.gpu.stats.liveBytes;
        const logits = randomF32(T * V, T + V, -4, 4);
        const ref = withRef ? randomF32(T * V, T * V + 1, -4, 4) : undefined;
        const r = rng(V);
        const ids = Uint32Array.from({ length: T }, () => Math.floor(r() * V));
        const lt = GpuTensor.fromHost(ctx.gpu, logits, [T, V], "f32", "logits");
        const rt = ref ? GpuTensor.fromHost(ctx.gpu, ref, [T, V], "f32", "ref") : undefined;
        const it_ = GpuTensor.fromHost(ctx.gpu, ids, [T], "u32", "ids");
        const { rows, sums } = lossBuffers(ctx, T);
        const b = new CommandBatch(ctx.gpu);
        await nextTokenLoss(ctx, b, lt, it_, rows, sums, rt);
        b.submit();
        const got = await readLossTotals(sums);
        const want = lossRef(logits, ids, T, V, ref);
        const sum = (k: "nll" | "kl" | "top1") => want.reduce((a, x) => a + x[k], 0);
        expect(got.tokens).toBe(T - 1);
        expect(Math.abs(got.nll - sum("nll")) / sum("nll")).toBeLessThan(1e-5);
        expect(got.top1).toBe(sum("top1"));
        if (withRef) expect(Math.abs(got.kl - sum("kl")) / sum("kl")).toBeLessThan(1e-4);
        else expect(got.kl).toBe(0);
        for (const t of [lt, rt, it_, rows, sums]) t?.destroy();
        expect(ctx.gpu.stats.liveBytes).toBe(base);
      });
    }
  }
});
