// Every attention kernel shape against the float64 reference: prefill, decode over a cache, packed
// sequences, ragged lengths (not multiples of the 8-token tile or the 64-invocation workgroup).

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { attention, attentionUnavailable, chooseAttention, type AttentionVariant } from "../../src/nn/attention.ts";
import { attentionRef } from "../../src/ref/llama.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";
import { VariantRuns } from "../helpers/variants.ts";

describe("attention kernels vs the reference", async () => {
  const ctx = await gpuContext();
  const cases = [
    { name: "GQA prefill, ragged T", T: 37, Hq: 6, Hkv: 2, D: 8, pos0: 0, seq: 0 },
    { name: "packed sequences of 13 (tiles straddle sequences)", T: 65, Hq: 8, Hkv: 4, D: 8, pos0: 0, seq: 13 },
    { name: "decode over a 70-position cache", T: 1, Hq: 4, Hkv: 1, D: 16, pos0: 69, seq: 0 },
    { name: "3 new tokens after 21 cached, MHA", T: 3, Hq: 3, Hkv: 3, D: 12, pos0: 21, seq: 0 },
    { name: "head_dim 64, group 2", T: 19, Hq: 4, Hkv: 2, D: 64, pos0: 5, seq: 0 },
  ];
  let seed = 11;
  for (const c of cases) {
    it(c.name, async () => {
      const S = c.pos0 + c.T;
      const q = randomF32(c.T * c.Hq * c.D, seed++, -2, 2);
      const kc = randomF32(S * c.Hkv * c.D, seed++, -2, 2);
      const vc = randomF32(S * c.Hkv * c.D, seed++);
      const want = attentionRef(q, kc, vc, c.T, c.Hq, c.Hkv, c.D, c.pos0, c.seq);
      const tq = GpuTensor.fromHost(ctx.gpu, q, [c.T, c.Hq * c.D], "f32", "q");
      const tk = GpuTensor.fromHost(ctx.gpu, kc, [S, c.Hkv * c.D], "f32", "kc");
      const tv = GpuTensor.fromHost(ctx.gpu, vc, [S, c.Hkv * c.D], "f32", "vc");
      const group = c.Hq / c.Hkv;
      const runs = new VariantRuns(`attention ${c.name}`);
      for (const v of ["main", "grouped", "subgroup"] as AttentionVariant[]) {
        if (!runs.take(v, attentionUnavailable(ctx.gpu, v, c.D, group))) continue;
        const out = GpuTensor.empty(ctx.gpu, [c.T, c.Hq * c.D], "f32", "out");
        const b = new CommandBatch(ctx.gpu, "attn");
        await attention(ctx, b, tq, tk, tv, out, c, v);
        b.submit();
        const err = relError((await out.toHost()) as Float32Array, want);
        console.log(`${c.name}: ${v} rel err ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-5);
        out.destroy();
      }
      runs.check();
      expect(runs.ran.size).toBeGreaterThanOrEqual(1);
      for (const t of [tq, tk, tv]) t.destroy();
    });
  }

  it("CPU adapters with subgroups get the subgroup kernel; it is refused without subgroups", () => {
    if (ctx.gpu.adapterInfo.kind === "cpu" && ctx.gpu.has("subgroups") && ctx.gpu.adapterInfo.subgroupMinSize >= 8) {
      expect(chooseAttention(ctx.gpu, 8, 2)).toBe("subgroup");
    }
    expect(attentionUnavailable(ctx.gpu, "subgroup", 6, 1)).toMatch(/multiple of 4|subgroups/);
    expect(attentionUnavailable(ctx.gpu, "grouped", 128, 2)).toMatch(/<= 128/);
  });
});
