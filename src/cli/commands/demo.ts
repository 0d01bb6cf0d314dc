// cli/commands/demo.ts — `wgq demo`: the whole pipeline on a machine with nothing downloaded.
// Builds a small synthetic Llama (a few million parameters, with activation-outlier channels
// planted as trained LLMs have them), quantizes it to int4 with RTN and with AWQ, measures the KL
// divergence of each against the fp model, times one int4 vs fp16 GEMV, and prints a table.

import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Command, Option } from "commander";
import { createContext, type GpuContext } from "../../gpu/context.ts";
import { CommandBatch } from "../../gpu/encoder.ts";
import { GpuTensor } from "../../gpu/tensor.ts";
import { evaluate, windows } from "../../model/eval.ts";
import { LlamaModel } from "../../model/llama.ts";
import { writeSyntheticModel } from "../../model/synthetic.ts";
import { matmul } from "../../nn/matmul.ts";
import { AwqMethod } from "../../ptq/awq.ts";
import { AtomicOutput } from "../../io/output.ts";
import { qmatmul } from "../../quant/matmul.ts";
import { quantizeModel } from "../../ptq/quantize.ts";
import { destroyPacked } from "../../quant/packed.ts";
import { quantizeRtn } from "../../quant/rtn.ts";
import { f32ArrayToF16 } from "../../common/half.ts";
import { randomF32, rng } from "../../common/random.ts";
import { intOption, progressLine } from "../util.ts";

export function demoCommand(): Command {
  return new Command("demo")
    .description("quantize a built-in synthetic model with RTN and AWQ, compare their KL divergence, and time int4 vs fp16")
    .option("--out <dir>", "keep the synthetic and quantized models here (default: a temporary folder, removed)")
    .option("--force", "replace an --out folder that an earlier wgq demo wrote (never anything else)")
    .option("--group-size <g>", "int4 group size", intOption("--group-size", 8), 64)
    .addOption(new Option("--preset <name>", "synthetic model shape").choices(["tiny", "demo"]).default("demo"))
    .option("--seed <n>", "seed of the synthetic weights and tokens", intOption("--seed", 0), 1)
    .option("--json", "print one JSON object")
    .option("--quiet", "no progress output")
    .addHelpText("after", "\nExamples:\n  wgq demo\n  wgq demo --out demo-models --group-size 32")
    .action(async (o: { out?: string; force?: boolean; groupSize: number; preset: string; seed: number; json?: boolean; quiet?: boolean }) => {
      const t0 = performance.now();
      // --out: written like every output (guarded, atomic, replaced only with --force over a demo wgq wrote)
      const out = o.out ? await AtomicOutput.create(o.out, "dir", { command: "demo", inputs: [], force: o.force }) : null;
      const dir = out ? out.tmp : await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-demo-"));
      let ok = false;
      const say = (s: string) => { if (!o.quiet && !o.json) process.stderr.write(s + "\n"); };
      const ctx = await createContext();
      try {
        say(`building a synthetic Llama in ${dir}/fp ...`);
        const config = await writeSyntheticModel(path.join(dir, "fp"), o.preset, { seed: o.seed, outliers: 6, outlierGain: 25 });
        const params = 2 * config.vocabSize * config.hiddenSize + config.numLayers * (2 * config.hiddenSize * config.hiddenSize * 2 + 3 * config.hiddenSize * config.intermediateSize);
        // Token streams: Zipf-distributed ids (a few frequent tokens, a long tail), as text has.
        const r = rng(o.seed + 7);
        const zipf = () => Math.min(config.vocabSize - 1, Math.floor(Math.exp(r() * Math.log(config.vocabSize)) - 1));
        const L = 64;
        const calib = Uint32Array.from({ length: 4 * L }, zipf);
        const evalStream = Array.from({ length: 16 * L }, zipf);
        const spec = { bits: 4 as const, groupSize: o.groupSize, sym: false };

        say("quantizing: RTN int4 ...");
        const rtn = await quantizeModel(ctx, path.join(dir, "fp"), path.join(dir, "rtn-int4"), { ...spec, force: true });
        say("quantizing: AWQ int4 (scale search + clip search per block) ...");
        const phase = progressLine(o.quiet || o.json ? null : "awq");
        const awq = await quantizeModel(ctx, path.join(dir, "fp"), path.join(dir, "awq-int4"), { ...spec, force: true },
          new AwqMethod({ ...spec, tokens: calib, seqLen: L, clipTokens: 128, onProgress: (d, n, detail) => phase?.(d, n, detail) }));

        say("evaluating KL divergence against the fp model ...");
        const wins = windows(evalStream, L);
        const fp = await LlamaModel.load(ctx, path.join(dir, "fp"), { maxTokens: wins.length * L });
        const rows = [];
        for (const [name, folder, rep] of [["int4 RTN", "rtn-int4", rtn], ["int4 AWQ", "awq-int4", awq]] as const) {
          const m = await LlamaModel.load(ctx, path.join(dir, folder), { maxTokens: wins.length * L });
          const e = await evaluate(ctx, m, wins, { ref: fp, perForward: wins.length });
          m.destroy();
          rows.push({ name, kl: e.kl!, top1: e.top1, ppl: e.ppl, bytes: rep.bytes_out, seconds: rep.seconds.total });
        }
        const fpEval = await evaluate(ctx, fp, wins, { perForward: wins.length });
        fp.destroy();

        say("timing one GEMV (M = 1): int4 vs fp16 weights ...");
        const gemv = await gemvRatio(ctx, o.preset === "tiny" ? 256 : 2048, o.groupSize);
        const result = {
          model: { preset: o.preset, parameters: params, hidden: config.hiddenSize, layers: config.numLayers, vocab: config.vocabSize, synthetic: true },
          device: ctx.gpu.adapterInfo,
          fp: { ppl: fpEval.ppl, bytes: (await fsp.stat(path.join(dir, "fp", "model.safetensors"))).size },
          quantized: rows,
          gemv,
          seconds: (performance.now() - t0) / 1000,
          kept: out ? out.dest : null,
        };
        ok = true;
        if (o.json) {
          process.stdout.write(JSON.stringify(result) + "\n");
          return;
        }
        const lines = [
          "",
          `webgpu-quant demo on ${ctx.gpu.adapterInfo.description} (${ctx.gpu.adapterInfo.kind === "cpu" ? "a software adapter: speeds are CPU speeds" : "GPU"})`,
          `model: SYNTHETIC Llama, ${(params / 1e6).toFixed(1)}M parameters (hidden ${config.hiddenSize}, ${config.numLayers} layers, 6 planted outlier channels), random weights, random tokens`,
          "",
          "method     size      KL vs fp (nats/token)   top-1 agreement   time",
          `fp32       ${mb(result.fp.bytes)}   -                       -                 -`,
          ...rows.map((x) => `${x.name.padEnd(10)} ${mb(x.bytes)}   ${x.kl.toFixed(5).padEnd(22)}  ${(100 * x.top1).toFixed(1).padStart(5)} %           ${x.seconds.toFixed(1)} s`),
          "",
          `GEMV ${gemv.n}x${gemv.n}, M = 1: fp16 weights ${gemv.f16_ms.toFixed(2)} ms, int4 g${o.groupSize} ${gemv.int4_ms.toFixed(2)} ms (${(gemv.f16_ms / gemv.int4_ms).toFixed(1)}x, kernel '${gemv.variant}')`,
          "",
          "The model is synthetic: its KL numbers show the mechanics (AWQ protects the outlier channels RTN",
          "rounds away), not the quality of a real model. The same on a real checkpoint:",
          "  wgq quantize --model <hf-folder> --method awq --bits 4 --group-size 128 --calib <text> --out <dir>",
          "  wgq eval --model <dir> --ref <hf-folder> --data <text>",
          out ? `models kept in ${out.dest}` : "",
        ];
        process.stdout.write(lines.join("\n") + "\n");
      } finally {
        ctx.gpu.destroy();
        if (!out) await fsp.rm(dir, { recursive: true, force: true });
        else if (ok) await out.commit();
        else await out.abort();
      }
    });
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(2).padStart(6)} MB`;
}

/** Median time of y = x·Wᵀ for fp16 W vs packed int4 W, N = K = n, M = 1. */
async function gemvRatio(ctx: GpuContext, n: number, G: number): Promise<{ n: number; f16_ms: number; int4_ms: number; variant: string }> {
  const { gpu } = ctx;
  const w = randomF32(n * n, 5, -0.05, 0.05);
  const x = GpuTensor.fromHost(gpu, randomF32(n, 6), [1, n], "f32", "demo.x");
  const y = GpuTensor.empty(gpu, [1, n], "f32", "demo.y");
  const w16 = GpuTensor.fromHost(gpu, f32ArrayToF16(w), [n, n], "f16", "demo.w16");
  const w32 = GpuTensor.fromHost(gpu, w, [n, n], "f32", "demo.w32");
  const q = await quantizeRtn(ctx, w32, { bits: 4, groupSize: G });
  w32.destroy();
  let variant = "";
  const time = async (f: (b: CommandBatch) => Promise<void>) => {
    const ts: number[] = [];
    for (let i = 0; i < 8; i++) {
      const b = new CommandBatch(gpu, "demo.gemv");
      await f(b);
      const t = performance.now();
      b.submit();
      await gpu.sync();
      if (i) ts.push(performance.now() - t);
    }
    return ts.sort((a, b) => a - b)[ts.length >> 1];
  };
  try {
    const f16_ms = await time(async (b) => { await matmul(ctx, b, x, w16, y); });
    const int4_ms = await time(async (b) => { variant = await qmatmul(ctx, b, x, q, y); });
    return { n, f16_ms, int4_ms, variant };
  } finally {
    destroyPacked(q);
    for (const t of [x, y, w16]) t.destroy();
  }
}
