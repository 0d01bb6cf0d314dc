// cli/commands/calibrate.ts — `wgq calibrate`: per-channel activation statistics of every linear
// input over calibration text, computed on the GPU, saved as safetensors.

import { Command } from "commander";
import { createContext } from "../../gpu/context.ts";
import { AtomicOutput } from "../../io/output.ts";
import { SafetensorsCheckpoint, writeSafetensors, type HostTensor } from "../../io/safetensors.ts";
import { TextTokenizer } from "../../io/tokenizer.ts";
import { LlamaModel } from "../../model/llama.ts";
import { CalibrationCollector, type ChannelStats } from "../../quant/calib.ts";
import { calibrationBlocks } from "../../quant/calib_data.ts";
import { loadConfig } from "../../model/config.ts";
import { checkContextLength, intOption, progressLine } from "../util.ts";

/** The safetensors metadata `format` of a statistics file. */
export const CALIBRATION_FORMAT = "webgpu-quant.calibration";

/** Is `file` a statistics file wgq wrote (safe to replace with --force)? */
async function isCalibrationFile(file: string): Promise<boolean> {
  const ck = await SafetensorsCheckpoint.open(file);
  try {
    return ck.metadata.format === CALIBRATION_FORMAT;
  } finally {
    await ck.close();
  }
}

export function calibrateCommand(): Command {
  return new Command("calibrate")
    .description("collect per-channel activation statistics (mean |x|, max |x|, mean x^2) of every linear input")
    .requiredOption("--model <dir>", "Hugging Face model folder")
    .requiredOption("--calib <file>", "calibration text (blank-line separated documents, JSONL or a folder)")
    .option("--samples <n>", "calibration blocks", intOption("--samples", 1), 128)
    .option("--seq-len <n>", "tokens per block", intOption("--seq-len", 2), 512)
    .option("--seed <n>", "seed of the block draw", intOption("--seed", 0), 42)
    .option("--batch <n>", "blocks per forward pass", intOption("--batch", 1), 8)
    .option("--out <file>", "write the statistics here (safetensors; written atomically, never over an input)")
    .option("--force", "replace an existing statistics file that wgq wrote (never anything else)")
    .option("--allow-long-context", "allow --seq-len beyond the model's max_position_embeddings")
    .option("--show", "print per-layer summaries (outlier channels: max/mean ratio)")
    .option("--gram", "also save the Gram matrix XᵀX / tokens of every linear input (K x K; GPTQ-style Hessian)")
    .option("--quiet", "no progress output")
    .addHelpText("after", "\nExamples:\n  wgq calibrate --model ../shared/models/stories260K --calib ../shared/data/tinystories-valid-sample.txt --samples 64 --seq-len 256 --show")
    .action(async (o: { model: string; calib: string; samples: number; seqLen: number; seed: number; batch: number; out?: string; show?: boolean; quiet?: boolean; gram?: boolean; force?: boolean; allowLongContext?: boolean }) => {
      const config = await loadConfig(o.model);
      checkContextLength(config, o.model, [["--seq-len", o.seqLen]], o.allowLongContext);
      const out = o.out === undefined ? null
        : await AtomicOutput.create(o.out, "file", { command: "calibrate", inputs: [o.model, o.calib], force: o.force, ownFile: isCalibrationFile });
      try {
        await collect(o, out);
      } catch (e) {
        await out?.abort();
        throw e;
      }
    });
}

async function collect(
  o: { model: string; calib: string; samples: number; seqLen: number; seed: number; batch: number; out?: string; show?: boolean; quiet?: boolean; gram?: boolean },
  out: AtomicOutput | null,
): Promise<void> {
  const tok = await TextTokenizer.fromHF(o.model);
  const blocks = await calibrationBlocks(tok, o.calib, o.samples, o.seqLen, o.seed);
  const ctx = await createContext();
  const col = new CalibrationCollector(ctx, { gram: o.gram });
  const per = Math.min(o.batch, blocks.n);
  const model = await LlamaModel.load(ctx, o.model, { maxTokens: per * o.seqLen, onLinearInput: col.hook });
  const progress = progressLine(o.quiet ? null : "calibrate");
  for (let i = 0; i < blocks.n; i += per) {
    const n = Math.min(per, blocks.n - i);
    model.reset();
    await model.forward(blocks.tokens.subarray(i * o.seqLen, (i + n) * o.seqLen), { seq: o.seqLen });
    progress?.(i + n, blocks.n);
  }
  const stats = await col.read();
  col.destroy();
  model.destroy();
  ctx.gpu.destroy();
  if (out) {
    const tensors: HostTensor[] = stats.flatMap((s) =>
      (["meanAbs", "maxAbs", "meanSq"] as const).map((k) => ({
        name: `model.layers.${s.layer}.${s.group}.${k === "meanAbs" ? "mean_abs" : k === "maxAbs" ? "max_abs" : "mean_sq"}`,
        dtype: "F32" as const, shape: [s[k].length], data: s[k],
      })).concat(s.gram ? [{ name: `model.layers.${s.layer}.${s.group}.gram`, dtype: "F32" as const, shape: [s.meanAbs.length, s.meanAbs.length], data: s.gram }] : []));
    await writeSafetensors(out.file(), tensors, {
      metadata: { format: CALIBRATION_FORMAT, model: o.model, data: o.calib, tokens: String(blocks.n * o.seqLen), samples: String(blocks.n), seq_len: String(o.seqLen), seed: String(o.seed) },
    });
    await out.commit();
    process.stderr.write(`wrote ${o.out}: ${tensors.length} tensors over ${blocks.n * o.seqLen} tokens\n`);
  }
  if (o.show || !out) process.stdout.write(formatStats(stats) + "\n");
}

function formatStats(stats: ChannelStats[]): string {
  const lines = ["layer  input     channels  mean|x|   max|x|    outlier ratio (max mean|x| / mean)  top channels"];
  for (const s of stats) {
    const K = s.meanAbs.length;
    const avg = s.meanAbs.reduce((a, b) => a + b, 0) / K;
    const order = Array.from(s.meanAbs.keys()).sort((a, b) => s.meanAbs[b] - s.meanAbs[a]);
    const mx = Math.max(...s.maxAbs);
    lines.push(`${String(s.layer).padStart(5)}  ${s.group.padEnd(8)}  ${String(K).padStart(8)}  ${avg.toFixed(4).padStart(8)}  ${mx.toFixed(3).padStart(8)}  ${(s.meanAbs[order[0]] / avg).toFixed(1).padStart(8)}                            ${order.slice(0, 4).join(", ")}`);
  }
  return lines.join("\n");
}
