import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { applyClip, clipSearch, colScaleWords, fakeQuantize, type FakeQuantSpec } from "../../src/quant/fake_quant.ts";
import { quantSpec } from "../../src/quant/formats.ts";
import { awqScales } from "../../src/ptq/awq.ts";
import { clipSearchRef, fakeQuantRef } from "../../src/ref/awq.ts";
import { dequantizeRef, quantizePackRef } from "../../src/ref/quant.ts";
import { gpuContext, randomF32 } from "../helpers/gpu.ts";

describe("AWQ kernels", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;
  const N = 37, K = 172;
  const w = randomF32(N * K, 77, -0.2, 0.25);

  const fq = async (spec: FakeQuantSpec, colScale?: Float32Array, clipMax?: Float32Array) => {
    const wt = GpuTensor.fromHost(gpu, w, [N, K], "f32", "w");
    const out = GpuTensor.empty(gpu, [N, K], "f32", "fq");
    const st = colScale ? GpuTensor.fromHost(gpu, colScaleWords(colScale), [2 * K], "f32", "s") : undefined;
    const ct = clipMax ? GpuTensor.fromHost(gpu, clipMax, [clipMax.length], "f32", "clip") : undefined;
    const b = new CommandBatch(gpu);
    await fakeQuantize(ctx, b, wt, out, spec, { colScale: st, clipMax: ct });
    b.submit();
    const r = ((await out.toHost()) as Float32Array).slice();
    for (const t of [wt, out, st, ct]) t?.destroy();
    return r;
  };

  for (const [G, sym] of [[32, false], [64, true], [128, false]] as const) {
    it(`α = 0 (no scale, no clip) reproduces RTN int4 ${sym ? "sym" : "asym"} g${G} bit for bit (ragged last group)`, async () => {
      const got = await fq({ bits: 4, G, sym });
      const want = dequantizeRef(quantizePackRef(w, quantSpec(4, N, K, G, sym)));
      let bad = 0;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) bad++;
      expect(bad).toBe(0);
    });
  }

  for (const bits of [3, 4]) {
    it(`int${bits} with AWQ column scales and per-group clips matches the CPU reference bit for bit`, async () => {
      const s = awqScales(randomF32(K, 5, 0.01, 2), 0.35);
      const clip = randomF32(N * Math.ceil(K / 32), 6, 0.05, 0.2);
      const spec = { bits, G: 32, sym: false };
      const got = await fq(spec, s, clip);
      const want = fakeQuantRef(w, N, K, spec, s, clip);
      let bad = 0;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i] || Number.isNaN(got[i])) bad++;
      expect(bad).toBe(0);
    });
  }

  // K = 172 reads x as vec4 words, K = 170 as f32 (ragged last groups of 12 and 10)
  for (const K of [172, 170]) it(`K = ${K}: clip search picks the CPU reference's shrink and reports its errors; clip_apply clamps`, async () => {
    const w = randomF32(N * K, 78, -0.2, 0.25);
    const base = gpu.stats.liveBytes;
    const T = 64;
    const x = randomF32(T * K, 9, -1, 1.5);
    const spec = { bits: 4, G: 32, sym: false };
    const wt = GpuTensor.fromHost(gpu, w, [N, K], "f32", "w");
    const xt = GpuTensor.fromHost(gpu, x, [T, K], "f32", "x");
    const r = await clipSearch(ctx, wt, xt, spec);
    const got = (await r.maxVal.toHost()) as Float32Array;
    const want = clipSearchRef(w, N, K, x, T, spec);
    let same = 0;
    for (let i = 0; i < got.length; i++) if (got[i] === want.maxVal[i]) same++;
    // f32 vs float64 error sums can swap two shrinks of nearly equal error; nearly all must agree
    expect(same / got.length).toBeGreaterThan(0.97);
    const before = want.before.reduce((a, b) => a + b, 0) / N, after = want.after.reduce((a, b) => a + b, 0) / N;
    expect(Math.abs(r.lossBefore - before) / before).toBeLessThan(1e-3);
    expect(Math.abs(r.lossAfter - after) / after).toBeLessThan(1e-2);
    expect(r.lossAfter).toBeLessThan(r.lossBefore);
    console.log(`clip search: ${same}/${got.length} choices equal the reference; error ${r.lossBefore.toExponential(3)} -> ${r.lossAfter.toExponential(3)}`);
    const b = new CommandBatch(gpu);
    await applyClip(ctx, b, wt, r.maxVal, spec);
    b.submit();
    const clipped = (await wt.toHost()) as Float32Array;
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
      const m = got[n * Math.ceil(K / 32) + Math.floor(k / 32)];
      expect(clipped[n * K + k]).toBe(Math.min(Math.max(w[n * K + k], -m), m));
    }
    for (const t of [wt, xt, r.maxVal]) t.destroy();
    expect(gpu.stats.liveBytes).toBe(base);
  });

  it("awqScales: α = 0 gives ones; scales are normalised by sqrt(max·min)", () => {
    expect(Array.from(awqScales(new Float32Array([0.1, 2, 5]), 0))).toEqual([1, 1, 1]);
    const s = awqScales(new Float32Array([0.25, 1, 4]), 0.5);
    expect(Math.max(...s) * Math.min(...s)).toBeCloseTo(1, 6);
    expect(s[2] / s[0]).toBeCloseTo(4, 5);
  });
});

describe("int3 (stored in the int4 layout)", async () => {
  const ctx = await gpuContext();
  it("GPU RTN int3 asym/sym packs bit-exactly like the CPU reference, equals the fake quantizer, and runs in qmatmul", async () => {
    const { quantizeRtn } = await import("../../src/quant/rtn.ts");
    const { downloadPacked, destroyPacked } = await import("../../src/quant/packed.ts");
    const { packRef, quantizeRef } = await import("../../src/ref/quant.ts");
    const { qmatmul } = await import("../../src/quant/matmul.ts");
    const { matmulRef } = await import("../../src/ref/matmul.ts");
    const N = 20, K = 172;
    const w = randomF32(N * K, 31, -0.3, 0.2);
    for (const sym of [false, true]) {
      const wt = GpuTensor.fromHost(ctx.gpu, w, [N, K], "f32", "w3");
      const q = await quantizeRtn(ctx, wt, { bits: 3, groupSize: 32, sym });
      const host = await downloadPacked(q);
      const ref = packRef(quantizeRef(w, quantSpec(3, N, K, 32, sym)));
      expect(Array.from(host.qweight)).toEqual(Array.from(ref.qweight));
      expect(Array.from(host.scales)).toEqual(Array.from(ref.scales));
      const deq = dequantizeRef(ref);
      const codes = quantizeRef(w, quantSpec(3, N, K, 32, sym)).codes;
      expect(Math.max(...codes)).toBeLessThanOrEqual(sym ? 11 : 7);
      expect(Array.from(fakeQuantRef(w, N, K, { bits: 3, G: 32, sym }))).toEqual(Array.from(deq));
      const M = 3;
      const x = randomF32(M * K, 32);
      const xt = GpuTensor.fromHost(ctx.gpu, x, [M, K], "f32", "x");
      const yt = GpuTensor.empty(ctx.gpu, [M, N], "f32", "y");
      const b = new CommandBatch(ctx.gpu);
      await qmatmul(ctx, b, xt, q, yt, { int8Activations: false }); // f32 activations: the exact path on every device
      b.submit();
      const y = (await yt.toHost()) as Float32Array;
      const yr = matmulRef(x, deq, M, N, K);
      for (let i = 0; i < y.length; i++) expect(Math.abs(y[i] - yr[i])).toBeLessThan(1e-4);
      destroyPacked(q);
      for (const t of [wt, xt, yt]) t.destroy();
    }
  });
});

describe("awqTransform on a small synthetic model", async () => {
  const ctx = await gpuContext();
  const { parseConfig } = await import("../../src/model/config.ts");
  const { syntheticWeights } = await import("../../src/model/synthetic.ts");
  const { RefLlama } = await import("../../src/ref/llama.ts");
  const { awqTransform } = await import("../../src/ptq/awq.ts");
  const { rng } = await import("../../src/ref/random.ts");
  // MHA (Hq == Hkv) so every scale group, v -> o included, is exercised; outlier channels planted.
  const c = parseConfig({ model_type: "llama", hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 101, max_position_embeddings: 64 }, "synthetic");
  const w = syntheticWeights(c, { seed: 3, outliers: 3, outlierGain: 12 });
  const r = rng(17);
  const L = 32;
  const tokens = Uint32Array.from({ length: 8 * L }, () => Math.floor(r() * c.vocabSize));
  const read = async (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`no ${n}`);
    return t;
  };

  it("folding the chosen scales leaves the fp model's function unchanged (no clip)", async () => {
    const base = ctx.gpu.stats.liveBytes;
    const out = await awqTransform(ctx, c, read, { bits: 4, groupSize: 32, sym: false, clip: false, tokens, seqLen: L });
    expect(ctx.gpu.stats.liveBytes).toBe(base);
    const folded = new Map(w);
    for (const [k, v] of out.weights) folded.set(k, v);
    const ids = Array.from(tokens.subarray(0, L));
    const a = new RefLlama(c, w, L).forward(ids);
    const b = new RefLlama(c, folded, L).forward(ids);
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += a[i] ** 2; }
    const groups = out.blocks.flatMap((bl) => bl.groups);
    console.log(`folding: relative logit change ${Math.sqrt(num / den).toExponential(2)}; alphas ${groups.map((g) => `${g.group}=${g.alpha}`).join(" ")}`);
    expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
    expect(groups.map((g) => g.group)).toEqual(["qkv", "v_o", "gate_up", "down", "qkv", "v_o", "gate_up", "down"]);
    expect(groups.some((g) => g.alpha > 0)).toBe(true); // the outliers make scaling pay
    for (const g of groups) expect(g.loss_best).toBeLessThanOrEqual(g.loss_rtn); // α = 0 is in the grid
  });

  it("activations split into ragged chunks (as when a block's exceed one binding) give the same search", async () => {
    const opts = { bits: 4, groupSize: 32, sym: false, clip: false, tokens, seqLen: L, grid: 7 } as const; // 7: a ragged last submit of candidates
    const one = await awqTransform(ctx, c, read, opts);
    const three = await awqTransform(ctx, c, read, { ...opts, chunkSeqs: 3 }); // 8 sequences -> 3 + 3 + 2
    const g1 = one.blocks.flatMap((b) => b.groups), g3 = three.blocks.flatMap((b) => b.groups);
    expect(g3.map((g) => g.alpha)).toEqual(g1.map((g) => g.alpha));
    for (let i = 0; i < g1.length; i++) {
      expect(Math.abs(g3[i].loss_rtn - g1[i].loss_rtn) / g1[i].loss_rtn).toBeLessThan(1e-5);
      expect(Math.abs(g3[i].loss_best - g1[i].loss_best) / g1[i].loss_best).toBeLessThan(1e-5);
    }
  });

  it("single-linear groups (v → o, down) scored from XᵀX or by re-running the layer pick the same scales", async () => {
    const opts = { bits: 4, groupSize: 32, sym: false, clip: false, tokens, seqLen: L } as const;
    const gram = await awqTransform(ctx, c, read, { ...opts, singleLinearLoss: "gram" });
    const rerun = await awqTransform(ctx, c, read, { ...opts, singleLinearLoss: "rerun" });
    const g1 = gram.blocks.flatMap((b) => b.groups), g2 = rerun.blocks.flatMap((b) => b.groups);
    expect(g2.map((g) => g.alpha)).toEqual(g1.map((g) => g.alpha));
    for (let i = 0; i < g1.length; i++) expect(Math.abs(g2[i].loss_best - g1[i].loss_best) / g1[i].loss_best).toBeLessThan(1e-4);
    // auto: 256 calibration tokens here, K = 64 (v → o) and 96 (down) are narrower, so XᵀX is used
    const auto = await awqTransform(ctx, c, read, opts);
    expect(auto.blocks.flatMap((b) => b.groups).map((g) => g.loss_best)).toEqual(g1.map((g) => g.loss_best));
  });

  it("with clipping, the clip search never increases its loss", async () => {
    const out = await awqTransform(ctx, c, read, { bits: 4, groupSize: 32, sym: false, tokens, seqLen: L, clipTokens: 64 });
    for (const b of out.blocks) {
      expect(b.clip.map((x) => x.linear)).toEqual(["self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]);
      for (const x of b.clip) expect(x.loss_after).toBeLessThanOrEqual(x.loss_before);
    }
  });
});

describe("duo scaling statistic", async () => {
  const { duoWeightMean, awqScales } = await import("../../src/ptq/awq.ts");
  it("averages |w| / group max over stacked rows; α = 1 ignores it", () => {
    // two rows, K = 4, G = 2: row 0 groups (1, -2) (4, 4); row 1 (0.5, 0.5) (-1, 3)
    const m = duoWeightMean([new Float32Array([1, -2, 4, 4]), new Float32Array([0.5, 0.5, -1, 3])], 4, 2);
    const d = 1e-6;
    expect(m[0]).toBeCloseTo((1 / (2 + d) + 0.5 / (0.5 + d)) / 2, 6);
    expect(m[3]).toBeCloseTo((4 / (4 + d) + 3 / (3 + d)) / 2, 6);
    const x = new Float32Array([0.2, 1, 3, 0.5]);
    expect(Array.from(awqScales(x, 1, m))).toEqual(Array.from(awqScales(x, 1)).map((v) => expect.closeTo(v, 4)) as unknown as number[]);
  });
});
