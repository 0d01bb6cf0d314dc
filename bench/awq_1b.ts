// bench/awq_1b.ts — AWQ on the 1B-shaped synthetic Llama in streaming mode: seconds per block and
// peak GPU bytes (live-byte accounting). Weights are generated per tensor on demand, so host
// memory stays small; only one block's weights and its calibration activations are on the GPU.
//   npx tsx bench/awq_1b.ts [blocks=2] [sequences=4] [seqLen=128]
import { createContext } from "../src/gpu/context.ts";
import { parseConfig } from "../src/model/config.ts";
import { syntheticConfigJson, syntheticTensor } from "../src/model/synthetic.ts";
import { awqTransform } from "../src/ptq/awq.ts";
import { rng } from "../src/ref/random.ts";

const [blocks = 2, seqs = 4, L = 128] = process.argv.slice(2).map(Number);
const json = { ...syntheticConfigJson("1b"), num_hidden_layers: blocks };
const c = parseConfig(json, "synthetic:1b");
const ctx = await createContext();
const r = rng(3);
const tokens = Uint32Array.from({ length: seqs * L }, () => Math.floor(r() * c.vocabSize));
const t0 = performance.now();
const res = await awqTransform(ctx, c, async (n) => syntheticTensor(c, n, { seed: 1, outliers: 4 }), {
  bits: 4, groupSize: 128, sym: false, tokens, seqLen: L, clipTokens: 128,
  onProgress: (d, n, detail) => { if (d % 10 === 0 || d === n) process.stderr.write(`${d}/${n} ${detail} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`); },
});
const out = {
  shape: "hidden 2048, intermediate 5632, 32/8 heads, vocab 32000", blocks, calibration_tokens: seqs * L,
  seconds_per_block: res.blocks.map((b) => +b.seconds.toFixed(1)),
  gpu_peak_bytes: ctx.gpu.stats.peakBytes, gpu_live_bytes_after: ctx.gpu.stats.liveBytes,
  alphas: res.blocks.map((b) => b.groups.map((g) => `${g.group}=${g.alpha}`).join(" ")),
  device: ctx.gpu.adapterInfo.description,
};
console.log(JSON.stringify(out, null, 2));
