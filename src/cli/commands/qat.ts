// cli/commands/qat.ts — `wgq qat`: quantization-aware training (src/train/qat.ts) from an RTN or AWQ
// starting point, saved in webgpu-quant's packed format with the loss curve in report.json/.html.

import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { Command, Option } from "commander";
import { UsageError } from "../../errors.ts";
import { createContext } from "../../gpu/context.ts";
import { packCalibrationFallback, readDocuments, tokenizeDocuments } from "../../io/data.ts";
import { guardOutput, realPathOf } from "../../io/output.ts";
import { TextTokenizer } from "../../io/tokenizer.ts";
import { loadConfig } from "../../model/config.ts";
import type { QuantBits } from "../../quant/formats.ts";
import { quantizeModel } from "../../ptq/quantize.ts";
import type { Setting } from "../../train/qat_checkpoint.ts";
import { QatMethod } from "../../train/qat_method.ts";
import { checkContextLength, floatOption, intOption, progressLine } from "../util.ts";

interface QatCliOptions {
  model: string; out: string; init: "rtn" | "awq"; bits: string; groupSize: number; sym?: boolean;
  mode: "e2e" | "block"; train: string; holdout: number; steps: number; lr: number; lrWeights: number;
  trainable: "scales" | "all"; batch: number; seqLen: number; warmup: number; schedule: "cosine" | "linear" | "constant";
  clipNorm: number; weightDecay: number; seed: number; evalEvery: number; patience: number;
  samples: number; calibSeqLen: number; loss: "ce" | "kd"; learnZero?: boolean; layers?: string; force?: boolean; resume?: boolean; checkpointEvery?: number;
  allowLongContext?: boolean; quiet?: boolean; json?: boolean;
}

/** The model folder's identity for a resume: its real path and its files' sizes and times (config.json by content). */
async function modelFingerprint(dir: string): Promise<string> {
  const real = realPathOf(dir);
  const h = createHash("sha256");
  for (const f of (await fsp.readdir(real)).sort()) {
    if (f !== "config.json" && !f.endsWith(".safetensors") && !f.endsWith(".safetensors.index.json")) continue;
    const st = await fsp.stat(path.join(real, f));
    h.update(`${f}:${st.size}:${f === "config.json" ? await fsp.readFile(path.join(real, f), "utf8") : st.mtimeMs}\n`);
  }
  return `${real} (${h.digest("hex").slice(0, 12)})`;
}

export function qatCommand(): Command {
  return new Command("qat")
    .description("quantization-aware training: learn step sizes (and weights) of the fake-quantized model, then pack it")
    .requiredOption("--model <dir>", "Hugging Face model folder (the fp model)")
    .requiredOption("--train <file>", "training text (blank-line separated documents, JSONL or a folder)")
    .requiredOption("--out <dir>", "output folder (written atomically; must not exist unless --force)")
    .addOption(new Option("--init <m>", "starting point: rtn, or awq (scales and clips searched on the training text first)").choices(["rtn", "awq"]).default("rtn"))
    .addOption(new Option("--bits <b>", "3 or 4 (group-wise) or 8 (per channel)").choices(["3", "4", "8"]).default("4"))
    .option("--group-size <g>", "group size along the input dimension", intOption("--group-size", 8), 128)
    .option("--sym", "symmetric levels (no zero points)")
    .option("--learn-zero", "learn the zero points too (asymmetric; rounded when packed); default: fixed at their initial values")
    .addOption(new Option("--mode <m>", "e2e: next-token loss through the whole model; block: each block reproduces the fp block (MSE)").choices(["e2e", "block"]).default("e2e"))
    .addOption(new Option("--loss <l>", "e2e: kd = KL divergence from the fp model's next-token distribution (distillation); ce = cross-entropy on the text").choices(["kd", "ce"]).default("kd"))
    .addOption(new Option("--trainable <t>", "scales: step sizes only; all: step sizes and weights").choices(["scales", "all"]).default("scales"))
    .option("--steps <n>", "optimizer steps (block mode: per block)", intOption("--steps", 1), 200)
    .option("--lr <x>", "peak learning rate of the step sizes (an absolute step: keep it well below the typical step size, e.g. 1e-3 for stories260K, 1e-4 for billion-parameter models)", floatOption("--lr", 0), 1e-3)
    .option("--lr-weights <x>", "peak learning rate of the weights (--trainable all)", floatOption("--lr-weights", 0), 1e-4)
    .option("--batch <n>", "sequences per step", intOption("--batch", 1), 8)
    .option("--seq-len <n>", "tokens per training sequence", intOption("--seq-len", 2), 256)
    .option("--warmup <n>", "linear warm-up steps", intOption("--warmup", 0), 10)
    .addOption(new Option("--schedule <s>", "learning-rate decay after warm-up").choices(["cosine", "linear", "constant"]).default("cosine"))
    .option("--clip-norm <x>", "gradient-norm clip (0: off)", floatOption("--clip-norm", 0), 1)
    .option("--weight-decay <x>", "AdamW decoupled weight decay of the weights", floatOption("--weight-decay", 0), 0)
    .option("--holdout <f>", "e2e: fraction of the training documents held out for early stopping", floatOption("--holdout", 0), 0.1)
    .option("--eval-every <n>", "e2e: score the held-out split every n steps", intOption("--eval-every", 1), 25)
    .option("--patience <n>", "e2e: stop after n scores without improvement (0: never)", intOption("--patience", 0), 4)
    .option("--samples <n>", "calibration sequences (AWQ init, block mode)", intOption("--samples", 1), 64)
    .option("--calib-seq-len <n>", "tokens per calibration sequence", intOption("--calib-seq-len", 2), 256)
    .option("--layers <list>", "block mode: train only these blocks (e.g. 0 or 0,3); the others keep their initial step sizes")
    .option("--seed <n>", "seed of batch and calibration draws", intOption("--seed", 0), 42)
    .option("--force", "replace an existing output folder that wgq wrote (never anything else)")
    .option("--resume", "continue an interrupted run into the same --out from its last saved checkpoint (same settings; the result is the same as an uninterrupted run's)")
    .option("--checkpoint-every <n>", "e2e: save resumable progress every n steps (default: --eval-every; 0: only when training ends); block mode saves after every block", intOption("--checkpoint-every", 0))
    .option("--allow-long-context", "allow --seq-len / --calib-seq-len beyond the model's max_position_embeddings")
    .option("--json", "print the report as one JSON object")
    .option("--quiet", "no progress output")
    .addHelpText("after", [
      "", "Examples:",
      "  wgq qat --model ../shared/models/stories260K --train train.txt --init awq --bits 4 --group-size 32 --out out/s260k-qat",
      "  wgq qat --model ../shared/models/stories260K --train train.txt --mode block --steps 100 --trainable all --out out/s260k-qat-block",
    ].join("\n"))
    .action(async (o: QatCliOptions) => {
      const bits = Number(o.bits) as QuantBits;
      if (bits <= 4 && o.groupSize % 8) throw new UsageError(`--group-size must be a multiple of 8 (got ${o.groupSize})`);
      if (!(o.holdout > 0 && o.holdout < 1) && o.mode === "e2e") throw new UsageError(`--holdout must be between 0 and 1 (got ${o.holdout})`);
      const groupSize = bits === 8 ? 1 << 30 : o.groupSize;
      const sym = bits === 8 ? true : !!o.sym;
      const quiet = o.quiet || o.json;
      const config = await loadConfig(o.model);
      const layers = o.layers ? o.layers.split(",").map((s) => Number(s)) : undefined;
      if (layers?.some((l) => !Number.isInteger(l) || l < 0 || l >= config.numLayers)) throw new UsageError(`--layers must list blocks 0..${config.numLayers - 1} (got ${o.layers})`);
      checkContextLength(config, o.model, [["--seq-len", o.seqLen], ["--calib-seq-len", o.calibSeqLen]], o.allowLongContext);
      await guardOutput(o.out, { kind: "dir", inputs: [o.model, o.train], force: o.force });
      const ctx = await createContext();
      const tok = await TextTokenizer.fromHF(o.model);
      const docs = await readDocuments(o.train);
      const nHold = o.mode === "e2e" ? Math.max(1, Math.round(docs.length * o.holdout)) : 0;
      if (docs.length - nHold < 1) throw new UsageError(`${o.train} has ${docs.length} documents: too few to hold out ${nHold}`);
      const trainDocs = tokenizeDocuments(tok, docs.slice(0, docs.length - nHold));
      const holdDocs = tokenizeDocuments(tok, docs.slice(docs.length - nHold));
      const flat = (ds: number[][]) => ds.flat();
      const calib = () => packCalibrationFallback(trainDocs, { n: o.samples, L: o.calibSeqLen, seed: o.seed, source: o.train, options: { samples: "--samples", seqLen: "--calib-seq-len" } }).tokens;
      // resumable progress: what else must match (the QAT options are added by qat.ts)
      const settings: Record<string, Setting> = {
        "--model": await modelFingerprint(o.model),
        "--train": `sha256 ${createHash("sha256").update(docs.map((d) => d.text).join("\0")).digest("hex").slice(0, 16)}`,
        "--init": o.init,
      };
      if (o.mode === "e2e") settings["--holdout"] = o.holdout;
      if (o.mode === "block" || o.init === "awq") Object.assign(settings, { "--samples": o.samples, "--calib-seq-len": o.calibSeqLen });
      const method = new QatMethod({
        qat: {
          bits, groupSize, sym, trainWeights: o.trainable === "all", learnZero: !!o.learnZero, mode: o.mode, steps: o.steps, lr: o.lr, lrWeights: o.lrWeights,
          batch: o.batch, seqLen: o.mode === "e2e" ? o.seqLen : o.calibSeqLen, warmup: o.warmup, schedule: o.schedule, clipNorm: o.clipNorm,
          weightDecay: o.weightDecay, seed: o.seed, evalEvery: o.evalEvery, patience: o.patience,
        },
        init: o.init, loss: o.loss, model: o.model, layers, train: flat(trainDocs), heldOut: flat(holdDocs), calibration: calib, calibSeqLen: o.calibSeqLen,
        settings, checkpointEvery: o.checkpointEvery, progress: (phase) => progressLine(quiet ? null : phase),
        report: {
          init: o.init, mode: o.mode, loss: o.mode === "e2e" ? o.loss : "mse", learn_zero: !!o.learnZero, trainable: o.trainable, steps: o.steps, lr: o.lr, lr_weights: o.lrWeights, batch: o.batch,
          seq_len: o.seqLen, schedule: o.schedule, warmup: o.warmup, clip_norm: o.clipNorm, holdout: o.holdout, train: o.train, seed: o.seed,
        },
      });
      const r = await quantizeModel(ctx, o.model, o.out, { bits, groupSize: o.groupSize, sym, force: o.force, resume: o.resume, inputs: [o.train] }, method);
      ctx.gpu.destroy();
      if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
      else {
        const h = method.result?.heldOut;
        const peakBytes = method.peakBytes;
        const spec = bits === 8 ? "int8 per-channel sym" : `int${bits} ${sym ? "sym" : "asym"} g${o.groupSize}`;
        process.stdout.write(
          `${o.model} -> ${o.out}: ${spec} (qat ${o.mode}${o.mode === "e2e" ? ` ${o.loss}` : ""}, ${o.trainable}, init ${o.init}) in ${r.seconds.total.toFixed(1)} s` +
          (h ? `; held-out loss ${h.before.toFixed(4)} -> ${h.best.toFixed(4)} (step ${h.bestStep})` : "") +
          (peakBytes ? `; GPU peak ${peakBytes} bytes` : "") + "\n",
        );
      }
    });
}
