// bench/qat_1b.ts — block-wise QAT (Block-AP style) on one block of the 1B-shaped synthetic Llama:
// seconds per step and peak GPU bytes (live-byte accounting). Weights are generated per tensor on
// demand; only the embedding (briefly), one block's weights, its activations, gradients and AdamW
// moments are on the GPU.
//   npx tsx bench/qat_1b.ts [steps=5] [sequences=4] [seqLen=128] [trainable=scales|all]
import { createContext } from "../src/gpu/context.ts";
import { parseConfig } from "../src/model/config.ts";
import { syntheticConfigJson, syntheticTensor } from "../src/model/synthetic.ts";
import { rng } from "../src/ref/random.ts";
import { qatBlockwise } from "../src/train/qat.ts";

const args = process.argv.slice(2);
const [steps = 5, seqs = 4, L = 128] = args.slice(0, 3).map(Number);
const trainable = args[3] ?? "all";
const c = parseConfig({ ...syntheticConfigJson("1b"), num_hidden_layers: 1 }, "synthetic:1b");
const ctx = await createContext();
const r = rng(3);
const calib = Uint32Array.from({ length: seqs * L }, () => Math.floor(r() * c.vocabSize));
const t0 = performance.now();
const res = await qatBlockwise(ctx, c, async (n) => syntheticTensor(c, n, { seed: 1, outliers: 4 }), calib, {
  bits: 4, groupSize: 128, sym: false, trainWeights: trainable === "all", mode: "block", steps, lr: 1e-4, lrWeights: 1e-5,
  batch: Math.min(2, seqs), seqLen: L, warmup: 0, schedule: "cosine", clipNorm: 1, weightDecay: 0, seed: 1, evalEvery: 1, patience: 0,
  onStep: (p) => process.stderr.write(`block ${p.block} step ${p.step}/${p.steps} mse ${p.loss.toExponential(3)} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`),
}, [0]);
console.log(JSON.stringify({
  shape: "hidden 2048, intermediate 5632, 32/8 heads, vocab 32000; block 0", trainable, calibration_tokens: seqs * L, tokens_per_step: Math.min(2, seqs) * L, steps,
  seconds: +res.seconds.toFixed(1), mse_first: res.curve[0].loss, mse_last: res.curve[res.curve.length - 1].loss,
  gpu_peak_bytes: res.peakBytes, gpu_live_bytes_after: ctx.gpu.stats.liveBytes, device: ctx.gpu.adapterInfo.description,
}, null, 2));
