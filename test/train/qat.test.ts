// QAT end to end on tiny models: the whole-model backward against finite differences (quantizer
// bypassed, so the loss is smooth), training reduces the loss, block mode reduces the block error,
// and an untrained model exports exactly the RTN packing.

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { parseConfig } from "../../src/model/config.ts";
import { syntheticWeights } from "../../src/model/synthetic.ts";
import { quantSpec } from "../../src/quant/formats.ts";
import { quantizePackRef } from "../../src/ref/quant.ts";
import { packTrained } from "../../src/train/export.ts";
import { qatBlockwise, qatEndToEnd, type QatOptions } from "../../src/train/qat.ts";
import { QatModel } from "../../src/train/qat_model.ts";
import { gpuContext, rng } from "../helpers/gpu.ts";
import { linearShapes, rel, rtnModel, scoreWindows } from "../helpers/reference.ts";

const config = parseConfig({
  model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 48,
  max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
}, "synthetic");

const base: QatOptions = {
  bits: 4, groupSize: 16, sym: false, trainWeights: false, mode: "e2e", steps: 10, lr: 1e-3, lrWeights: 1e-3, batch: 4, seqLen: 16,
  warmup: 5, schedule: "cosine", clipNorm: 1, weightDecay: 0, seed: 1, evalEvery: 50, patience: 0,
};

/** A learnable stream: a few fixed phrases in random order. */
function stream(n: number, seed: number): number[] {
  const r = rng(seed);
  const phrases = [[1, 5, 9, 13, 17, 21], [2, 6, 10, 14], [3, 7, 11, 15, 19, 23, 27], [4, 8, 12]];
  const out: number[] = [];
  while (out.length < n) out.push(...phrases[Math.floor(r() * phrases.length)]);
  return out.slice(0, n);
}

describe("QAT", async () => {
  const ctx = await gpuContext();
  const weights = syntheticWeights(config, { seed: 3 });
  const read = async (n: string) => {
    const w = weights.get(n);
    if (!w) throw new Error(`no ${n}`);
    return w;
  };

  it("the whole-model backward matches finite differences of the loss (quantizer bypassed)", async () => {
    const m = await QatModel.create(ctx, config, read, { ...base, trainWeights: true });
    m.identityQuant = true;
    const L = 8;
    const s = stream(2 * L + 1, 5);
    const ids = Uint32Array.from(s.slice(0, 2 * L)), targets = Uint32Array.from(s.slice(1, 2 * L + 1));
    const lossT = GpuTensor.empty(ctx.gpu, [2], "f32", "loss");
    const loss = async (backward: boolean) => {
      const b = new CommandBatch(ctx.gpu, "fd");
      await m.forwardBackward(b, ids, targets, L, lossT, backward);
      b.submit();
      const r = (await lossT.toHost()) as Float32Array;
      m.release();
      return r[0] / r[1];
    };
    await loss(true);
    let checked = 0, worst = 0;
    for (const li of [m.blocks[0]!.lin.q_proj, m.blocks[0]!.lin.v_proj, m.blocks[1]!.lin.gate_proj, m.blocks[1]!.lin.down_proj, m.blocks[0]!.lin.o_proj]) {
      const g = (await li.dw!.toHost()) as Float32Array;
      const w = ((await li.w.toHost()) as Float32Array).slice();
      // the three largest gradient entries of this weight
      const idx = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 3);
      for (const i of idx) {
        const h = 2e-2;
        const w2 = w.slice();
        w2[i] = w[i] + h;
        li.w.write(w2);
        const lp = await loss(false);
        w2[i] = w[i] - h;
        li.w.write(w2);
        const lm = await loss(false);
        li.w.write(w);
        const fd = (lp - lm) / (2 * h);
        const rel = Math.abs(fd - g[i]) / Math.max(Math.abs(g[i]), 1e-6);
        worst = Math.max(worst, Number.isNaN(rel) ? Infinity : rel);
        checked++;
      }
    }
    console.log(`whole-model gradient vs central differences: ${checked} entries, worst relative error ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(3e-2);
    lossT.destroy();
    m.destroy();
  });

  it("e2e training (200 steps; step sizes, zero points and weights) lowers the held-out loss of an int4 model", async () => {
    const r = await qatEndToEnd(ctx, config, read, stream(3000, 1), stream(400, 2), { ...base, trainWeights: true, learnZero: true, steps: 200, lr: 3e-3, lrWeights: 3e-3, evalEvery: 100 });
    // The held-out loss before training, computed here: the cross-entropy of the RTN int4 g16
    // starting point (float64 CPU forward) over the held-out windows of 16 inputs + 16 targets
    // (17 tokens, stride 16), every position scored.
    const hold = stream(400, 2);
    const wins: number[][] = [];
    for (let i = 0; i + 17 <= hold.length; i += 16) wins.push(hold.slice(i, i + 17));
    const before = Math.log(scoreWindows(config, rtnModel(weights, config, { bits: 4, G: 16, sym: false }, linearShapes(config)), wins).ppl);
    console.log(`held-out loss ${r.heldOut!.before.toFixed(4)} (reference ${before.toFixed(4)}) -> ${r.heldOut!.best.toFixed(4)} (step ${r.heldOut!.bestStep}) in ${r.seconds.toFixed(1)} s`);
    expect(rel(r.heldOut!.before, before)).toBeLessThan(1e-5);
    expect(r.heldOut!.best).toBeLessThan(0.8 * r.heldOut!.before);
    expect(r.heldOut!.best).toBeLessThan(0.8 * before);
    const first = r.curve.filter((p) => p.step >= 1 && p.step <= 20).map((p) => p.loss);
    const last = r.curve.slice(-20).map((p) => p.loss);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(last)).toBeLessThan(mean(first));
    expect(r.curve.every((p) => p.step === 0 || Number.isFinite(p.loss))).toBe(true);
  });

  it("block mode lowers each block's reconstruction error, with one block resident", async () => {
    const L = 16;
    const calib = Uint32Array.from(stream(8 * L, 3));
    const before = await qatBlockwise(ctx, config, read, calib, { ...base, mode: "block", steps: 1, lr: 1e-12, seqLen: L, batch: 8 });
    const after = await qatBlockwise(ctx, config, read, calib, { ...base, mode: "block", steps: 60, lr: 3e-3, seqLen: L, batch: 8 });
    for (const l of [0, 1]) {
      const b0 = before.curve.find((p) => p.block === l)!.loss;
      const b1 = after.curve.filter((p) => p.block === l).slice(-5).reduce((x, p) => Math.min(x, p.loss), Infinity);
      console.log(`block ${l}: MSE ${b0.toExponential(3)} (RTN init) -> ${b1.toExponential(3)}`);
      expect(b1).toBeLessThan(b0);
    }
  });

  it("an untrained model exports exactly the RTN packing", async () => {
    for (const sym of [false, true]) {
      const m = await QatModel.create(ctx, config, read, { ...base, sym });
      for (const li of m.linears().slice(0, 3)) {
        const t = { name: li.name, N: li.spec.N, K: li.spec.K, w: (await li.w.toHost()) as Float32Array, s: (await li.s.toHost()) as Float32Array, z: (await li.z.toHost()) as Float32Array };
        const got = packTrained(t, 4, 16, sym);
        const want = quantizePackRef(t.w, quantSpec(4, t.N, t.K, 16, sym), li.name);
        expect(Array.from(got.qweight)).toEqual(Array.from(want.qweight));
        expect(Array.from(got.scales)).toEqual(Array.from(want.scales));
        expect(got.zeros ? Array.from(got.zeros) : null).toEqual(want.zeros ? Array.from(want.zeros) : null);
      }
      m.destroy();
    }
  });
});
