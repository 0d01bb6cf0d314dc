// cli/commands/quantize.ts — `wgq quantize`: RTN or AWQ post-training quantization of a Hugging
// Face Llama-family model into webgpu-quant's packed format (src/quant/model_format.ts).

import { Command, Option } from "commander";
import { UsageError } from "../../errors.ts";
import { createContext } from "../../gpu/context.ts";
import { quantizeModel } from "../../quant/quantize.ts";
import { intOption, progressLine } from "../util.ts";

interface QuantizeCliOptions {
  model: string; out: string; method: "rtn" | "awq"; bits: string; groupSize: number; sym?: boolean;
  force?: boolean; quiet?: boolean; json?: boolean;
}

export function quantizeCommand(): Command {
  return new Command("quantize")
    .description("quantize a model's linear layers (RTN) and save it in webgpu-quant's packed format")
    .requiredOption("--model <dir>", "Hugging Face model folder (fp32/fp16/bf16 safetensors)")
    .requiredOption("--out <dir>", "output folder (written atomically; must not exist unless --force)")
    .addOption(new Option("--method <m>", "quantization method").choices(["rtn"]).default("rtn"))
    .addOption(new Option("--bits <b>", "4 (group-wise), 8 (per channel) or 16 (fp16 cast of every tensor)").choices(["4", "8", "16"]).default("4"))
    .option("--group-size <g>", "int4 group size along the input dimension", intOption("--group-size", 8), 128)
    .option("--sym", "int4 symmetric (levels -8..7, no zero points)")
    .option("--force", "replace an existing output folder")
    .option("--json", "print the report as one JSON object")
    .option("--quiet", "no progress output")
    .addHelpText("after", "\nExamples:\n  wgq quantize --model ../shared/models/stories260K --bits 4 --group-size 32 --out out/s260k-int4-g32\n  wgq quantize --model models/llama --bits 8 --out out/llama-int8")
    .action(async (o: QuantizeCliOptions) => {
      const bits = Number(o.bits) as 4 | 8 | 16;
      if (bits === 4 && o.groupSize % 8) throw new UsageError(`--group-size must be a multiple of 8 (got ${o.groupSize})`);
      const ctx = await createContext();
      const progress = progressLine(o.quiet || o.json ? null : "quantize");
      const r = await quantizeModel(ctx, o.model, o.out, {
        method: o.method, bits, groupSize: o.groupSize, sym: o.sym, force: o.force,
        onTensor: (d, n) => progress?.(d, n),
      });
      ctx.gpu.destroy();
      if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
      else {
        const spec = bits === 16 ? "fp16" : bits === 8 ? "int8 per-channel sym" : `int4 ${o.sym ? "sym" : "asym"} g${o.groupSize}`;
        process.stdout.write(`${o.model} -> ${o.out}: ${spec} (${o.method}), ${(r.bytes_in / 1e6).toFixed(2)} MB -> ${(r.bytes_out / 1e6).toFixed(2)} MB in ${r.seconds.total.toFixed(1)} s\n`);
      }
    });
}
