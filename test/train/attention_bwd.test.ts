// Attention backward: the float64 reference against finite differences, then the GPU kernels
// (forward with lse, backward with lse saved or recomputed) against the reference on ragged GQA
// shapes and packed sequences, and bit-for-bit repeatability.

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { attentionRef } from "../../src/ref/llama.ts";
import { attentionBackwardRef, attentionForwardRef64, type AttentionRefDims } from "../../src/ref/train.ts";
import { attentionBackward, attentionBackwardUnavailable, attentionForwardWithStats, type AttentionBackwardVariant } from "../../src/train/attention_bwd.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";

function f64(a: Float32Array): Float64Array {
  return Float64Array.from(a);
}

describe("attention backward reference", () => {
  for (const dims of [
    { T: 5, Hq: 4, Hkv: 2, D: 3, seq: 0 },
    { T: 6, Hq: 2, Hkv: 1, D: 4, seq: 3 },
    { T: 4, Hq: 3, Hkv: 3, D: 2, seq: 0 },
  ] as AttentionRefDims[]) {
    it(`matches central differences of Σ R·out (T ${dims.T}, Hq ${dims.Hq}, Hkv ${dims.Hkv}, D ${dims.D}, seq ${dims.seq})`, () => {
      const { T, Hq, Hkv, D } = dims;
      const q = f64(randomF32(T * Hq * D, 1, -1.5, 1.5));
      const k = f64(randomF32(T * Hkv * D, 2, -1.5, 1.5));
      const v = f64(randomF32(T * Hkv * D, 3));
      const R = f64(randomF32(T * Hq * D, 4));
      const loss = () => attentionForwardRef64(q, k, v, dims).out.reduce((a, o, i) => a + o * R[i], 0);
      const g = attentionBackwardRef(q, k, v, R, dims);
      const h = 1e-6;
      for (const [name, x, dx] of [["q", q, g.dq], ["k", k, g.dk], ["v", v, g.dv]] as const) {
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
        const err = relError(dx, fd);
        console.log(`FD ${name}: rel err ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-7);
      }
      // The float64 forward agrees with the f32 inference reference.
      const ref32 = attentionRef(Float32Array.from(q), Float32Array.from(k), Float32Array.from(v), T, Hq, Hkv, D, 0, dims.seq);
      expect(relError(ref32, attentionForwardRef64(q, k, v, dims).out)).toBeLessThan(1e-6);
    });
  }
});

describe("attention backward on the GPU vs the reference", async () => {
  const ctx = await gpuContext();
  const cases = [
    { name: "GQA, ragged T", T: 37, Hq: 6, Hkv: 2, D: 8, seq: 0 },
    { name: "packed sequences of 13", T: 65, Hq: 8, Hkv: 4, D: 8, seq: 13 },
    { name: "MHA, head_dim 12", T: 19, Hq: 3, Hkv: 3, D: 12, seq: 0 },
    { name: "head_dim 64, group 4", T: 23, Hq: 4, Hkv: 1, D: 64, seq: 0 },
  ];
  let seed = 100;
  for (const c of cases) for (const variant of ["plain", "subgroup"] as AttentionBackwardVariant[]) {
    it(`${c.name} (${variant})`, async () => {
      if (attentionBackwardUnavailable(ctx.gpu, variant, c.D, c.Hq / c.Hkv)) {
        // only shapes or devices the subgroup kernel does not take
        expect(variant).toBe("subgroup");
        return;
      }
      const { T, Hq, Hkv, D } = c;
      const q = randomF32(T * Hq * D, seed++, -2, 2);
      const k = randomF32(T * Hkv * D, seed++, -2, 2);
      const v = randomF32(T * Hkv * D, seed++);
      const dout = randomF32(T * Hq * D, seed++);
      const fwd = attentionForwardRef64(q, k, v, c);
      const want = attentionBackwardRef(q, k, v, dout, c);
      const up = (a: Float32Array, label: string) => GpuTensor.fromHost(ctx.gpu, a, [a.length], "f32", label);
      const tq = up(q, "q"), tk = up(k, "k"), tv = up(v, "v"), tdo = up(dout, "dout");
      const out = GpuTensor.empty(ctx.gpu, [T * Hq * D], "f32", "out");
      const lse = GpuTensor.empty(ctx.gpu, [T, Hq], "f32", "lse");
      const grads = () => ({
        dq: GpuTensor.empty(ctx.gpu, [T * Hq * D], "f32", "dq"),
        dk: GpuTensor.empty(ctx.gpu, [T * Hkv * D], "f32", "dk"),
        dv: GpuTensor.empty(ctx.gpu, [T * Hkv * D], "f32", "dv"),
      });
      const saved = grads();
      const recomputed = grads();
      const again = grads();
      const b = new CommandBatch(ctx.gpu, "attn_bwd");
      await attentionForwardWithStats(ctx, b, tq, tk, tv, out, lse, c);
      await attentionBackward(ctx, b, { q: tq, k: tk, v: tv, out, dout: tdo, ...saved, lse }, c, variant);
      await attentionBackward(ctx, b, { q: tq, k: tk, v: tv, out, dout: tdo, ...recomputed }, c, variant);
      await attentionBackward(ctx, b, { q: tq, k: tk, v: tv, out, dout: tdo, ...again }, c, variant);
      b.submit();
      const host = async (t: GpuTensor) => (await t.toHost()) as Float32Array;
      const eOut = relError(await host(out), fwd.out);
      const eLse = relError(await host(lse), fwd.lse);
      console.log(`${c.name}: out ${eOut.toExponential(2)}, lse ${eLse.toExponential(2)}`);
      expect(eOut).toBeLessThan(1e-5);
      expect(eLse).toBeLessThan(1e-5);
      for (const [how, g] of [["lse saved", saved], ["lse recomputed", recomputed]] as const) {
        const e = {
          dq: relError(await host(g.dq), want.dq),
          dk: relError(await host(g.dk), want.dk),
          dv: relError(await host(g.dv), want.dv),
        };
        console.log(`${c.name} (${variant}), ${how}: dq ${e.dq.toExponential(2)}, dk ${e.dk.toExponential(2)}, dv ${e.dv.toExponential(2)}`);
        for (const x of Object.values(e)) expect(x).toBeLessThan(1e-4);
      }
      for (const key of ["dq", "dk", "dv"] as const) {
        expect(await host(again[key])).toEqual(await host(recomputed[key]));
      }
      for (const t of [tq, tk, tv, tdo, out, lse, ...Object.values(saved), ...Object.values(recomputed), ...Object.values(again)]) t.destroy();
    });
  }
});
