// cli/commands/quantize.ts — `wgq quantize`: RTN or AWQ post-training quantization of a Hugging
// Face Llama-family model into webgpu-quant's packed format (src/quant/model_format.ts).

import { Command, Option } from "commander";
import { UsageError } from "../../errors.ts";
import { createContext } from "../../gpu/context.ts";
import { quantizeModel, updateReport } from "../../ptq/quantize.ts";
import { readDocuments } from "../../io/data.ts";
import { evaluate, tokenStream, windows } from "../../model/eval.ts";
import { LlamaModel } from "../../model/llama.ts";
import { AwqMethod, type AwqBlockReport } from "../../ptq/awq.ts";
import { RTN } from "../../ptq/method.ts";
import { calibrationBlocks } from "../../ptq/calib_data.ts";
import { TextTokenizer } from "../../io/tokenizer.ts";
import { checkContextLength, intOption, progressLine } from "../util.ts";
import { guardOutput, realPathOf } from "../../io/output.ts";
import { loadConfig } from "../../model/config.ts";

/** The option names of the calibration draw, for messages. */
const CALIB_OPTIONS = { samples: "--samples", seqLen: "--seq-len" };

interface QuantizeCliOptions {
  model: string; out: string; method: "rtn" | "awq"; bits: string; groupSize: number; sym?: boolean;
  force?: boolean; quiet?: boolean; json?: boolean; half: "f16" | "bf16"; quantizeHead?: boolean;
  calib?: string; samples: number; seqLen: number; seed: number; duo?: boolean; clip: boolean; clipTokens: number;
  eval?: string; evalWindows: number; evalCtx: number; resume?: boolean; allowLongContext?: boolean;
}

export function quantizeCommand(): Command {
  return new Command("quantize")
    .description("quantize a model's linear layers (RTN) and save it in webgpu-quant's packed format")
    .requiredOption("--model <dir>", "Hugging Face model folder (fp32/fp16/bf16 safetensors)")
    .requiredOption("--out <dir>", "output folder (written atomically; must not exist unless --force)")
    .addOption(new Option("--method <m>", "rtn: round to nearest; awq: activation-aware scales and clipping, then RTN").choices(["rtn", "awq"]).default("rtn"))
    .addOption(new Option("--bits <b>", "3 or 4 (group-wise), 8 (per channel) or 16 (fp16 cast of every tensor)").choices(["3", "4", "8", "16"]).default("4"))
    .option("--group-size <g>", "int4 group size along the input dimension", intOption("--group-size", 8), 128)
    .option("--quantize-head", "quantize the LM head too (kept in fp32 by default; a tied head is stored separately)")
    .addOption(new Option("--half <t>", "the 16-bit float of --bits 16").choices(["f16", "bf16"]).default("f16"))
    .option("--sym", "int4 symmetric (levels -8..7, no zero points)")
    .option("--calib <file>", "AWQ calibration text (blank-line separated documents, JSONL or a folder)")
    .option("--samples <n>", "AWQ calibration blocks", intOption("--samples", 1), 128)
    .option("--seq-len <n>", "tokens per calibration block", intOption("--seq-len", 2), 512)
    .option("--seed <n>", "seed of the calibration block draw", intOption("--seed", 0), 42)
    .option("--duo", "AWQ duo scaling (AutoAWQ's default): divide scales by the weight statistic^(1-α)")
    .option("--no-clip", "AWQ without the clip search")
    .option("--clip-tokens <n>", "tokens sampled for the clip search", intOption("--clip-tokens", 1), 512)
    .option("--eval <file>", "evaluate perplexity and KL vs the fp model after quantizing (into the report)")
    .option("--eval-windows <n>", "windows evaluated by --eval", intOption("--eval-windows", 1), 32)
    .option("--eval-ctx <n>", "tokens per --eval window", intOption("--eval-ctx", 2), 256)
    .option("--force", "replace an existing output folder that wgq wrote (never anything else)")
    .option("--resume", "continue an interrupted run into the same --out from its last completed block")
    .option("--allow-long-context", "allow --seq-len / --eval-ctx beyond the model's max_position_embeddings")
    .option("--json", "print the report as one JSON object")
    .option("--quiet", "no progress output")
    .addHelpText("after", "\nExamples:\n  wgq quantize --model ../shared/models/stories260K --bits 4 --group-size 32 --out out/s260k-int4-g32\n  wgq quantize --model models/llama --bits 8 --out out/llama-int8")
    .action(async (o: QuantizeCliOptions) => {
      const bits = Number(o.bits) as 3 | 4 | 8 | 16;
      if (bits <= 4 && o.groupSize % 8) throw new UsageError(`--group-size must be a multiple of 8 (got ${o.groupSize})`);
      if (o.method === "awq" && !o.calib) throw new UsageError("--method awq needs --calib <file> (calibration text)");
      if (o.method === "awq" && bits === 16) throw new UsageError("AWQ quantizes to 3, 4 or 8 bits");
      const config = await loadConfig(o.model);
      checkContextLength(config, o.model, [...(o.method === "awq" ? [["--seq-len", o.seqLen] as [string, number]] : []), ...(o.eval ? [["--eval-ctx", o.evalCtx] as [string, number]] : [])], o.allowLongContext);
      const inputs = [o.model, o.calib ?? "", o.eval ?? ""];
      await guardOutput(o.out, { kind: "dir", inputs, force: o.force });
      const ctx = await createContext();
      const quiet = o.quiet || o.json;
      const progress = progressLine(quiet ? null : "pack");
      // AWQ: the calibration draw, tokenized here; each completed block is saved in the partial
      // output's state/ (created on the first save), for --resume
      let awq: AwqMethod | null = null;
      if (o.method === "awq") {
        const tok = await TextTokenizer.fromHF(o.model);
        const blocks = await calibrationBlocks(tok, o.calib!, o.samples, o.seqLen, o.seed, CALIB_OPTIONS);
        const phase = progressLine(quiet ? null : "awq");
        awq = new AwqMethod({
          bits, groupSize: bits === 8 ? 1 << 30 : o.groupSize, sym: bits === 8 ? true : !!o.sym, clip: o.clip, clipTokens: o.clipTokens, duo: o.duo,
          tokens: blocks.tokens, seqLen: o.seqLen, resumable: { identity: { model: realPathOf(o.model) } },
          onProgress: (d, n, detail) => phase?.(d, n, detail),
        });
      }
      const r = await quantizeModel(ctx, o.model, o.out, {
        bits, groupSize: o.groupSize, sym: o.sym, force: o.force, resume: o.resume, inputs, half: o.half, quantizeHead: o.quantizeHead,
        onTensor: (d, n) => progress?.(d, n),
        report: awq ? { calibration: { file: o.calib, samples: o.samples, seq_len: o.seqLen, seed: o.seed }, clip: o.clip } : undefined,
      }, awq ?? RTN);
      if (o.eval) {
        const tok = await TextTokenizer.fromHF(o.model);
        const wins = windows(tokenStream(tok, (await readDocuments(o.eval)).map((d) => d.text)), o.evalCtx, o.evalWindows);
        const per = Math.min(8, wins.length);
        const fp = await LlamaModel.load(ctx, o.model, { maxTokens: per * o.evalCtx });
        const qm = await LlamaModel.load(ctx, o.out, { maxTokens: per * o.evalCtx });
        const before = await evaluate(ctx, fp, wins, { perForward: per });
        const after = await evaluate(ctx, qm, wins, { ref: fp, perForward: per });
        fp.destroy();
        qm.destroy();
        r.eval = { file: o.eval, windows: wins.length, ctx: o.evalCtx, before, after };
        await updateReport(o.out, r);
        if (!o.json) process.stdout.write(`eval on ${wins.length} windows of ${o.evalCtx}: perplexity ${before.ppl.toFixed(4)} (fp) -> ${after.ppl.toFixed(4)}, KL ${after.kl!.toFixed(5)}, top-1 ${(100 * after.top1).toFixed(2)} %\n`);
      }
      ctx.gpu.destroy();
      if (awq && !o.json) process.stdout.write(formatAwq(awq.blocks) + "\n");
      if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
      else {
        const spec = bits === 16 ? o.half : bits === 8 ? "int8 per-channel sym" : `int${bits} ${o.sym ? "sym" : "asym"} g${o.groupSize}`;
        process.stdout.write(`${o.model} -> ${o.out}: ${spec} (${o.method}), ${(r.bytes_in / 1e6).toFixed(2)} MB -> ${(r.bytes_out / 1e6).toFixed(2)} MB in ${r.seconds.total.toFixed(1)} s\n`);
      }
    });
}

function formatAwq(blocks: AwqBlockReport[]): string {
  const lines = ["block  group     alpha  loss RTN      loss AWQ      | clip: linear  loss before -> after", ""];
  lines.pop();
  for (const b of blocks) {
    const n = Math.max(b.groups.length, b.clip.length);
    for (let i = 0; i < n; i++) {
      const g = b.groups[i];
      const c = b.clip[i];
      const left = g ? `${String(b.layer).padStart(5)}  ${g.group.padEnd(8)}  ${g.alpha.toFixed(2)}  ${g.loss_rtn.toExponential(3).padEnd(12)}  ${g.loss_best.toExponential(3).padEnd(12)}` : " ".repeat(53);
      const right = c ? `| ${c.linear.padEnd(18)} ${c.loss_before.toExponential(3)} -> ${c.loss_after.toExponential(3)}` : "";
      lines.push(`${left}  ${right}`);
    }
    lines.push(`       (${b.seconds.toFixed(1)} s)`);
  }
  return lines.join("\n");
}
