// cli/commands/eval.ts — `wgq eval`: perplexity (and KL / top-1 against a reference model) of a
// model on a text file, computed on the GPU. Protocol: src/model/eval.ts.

import { Command, Option } from "commander";
import { createContext } from "../../gpu/context.ts";
import { readDocuments } from "../../io/data.ts";
import { TextTokenizer } from "../../io/tokenizer.ts";
import { evaluate, tokenStream, windows } from "../../model/eval.ts";
import { LlamaModel } from "../../model/llama.ts";
import { checkContextLength, intOption, progressLine } from "../util.ts";
import { UsageError } from "../../errors.ts";
import { loadConfig, parseConfig, type LlamaConfig } from "../../model/config.ts";
import { syntheticConfigJson, syntheticSource } from "../../model/synthetic.ts";
import { rng } from "../../common/random.ts";

export function evalCommand(): Command {
  return new Command("eval")
    .description("perplexity of a model on a text file; KL divergence and top-1 agreement against --ref")
    .requiredOption("--model <dir>", "Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or synthetic:demo / synthetic:1b")
    .option("--data <file>", "text (documents separated by blank lines), JSONL with a text field, or a folder (synthetic models: random tokens when absent)")
    .option("--ctx <n>", "tokens per window", intOption("--ctx", 2), 256)
    .option("--max-windows <n>", "evaluate only the first N windows", intOption("--max-windows", 1))
    .option("--ref <dir>", "reference model (same tokenizer) for KL divergence and top-1 agreement")
    .addOption(new Option("--weights <dtype>", "weight storage on the GPU").choices(["f32", "f16"]).default("f32"))
    .option("--batch <n>", "windows per forward pass (packed sequences)", intOption("--batch", 1), 8)
    .option("--streaming", "upload one block at a time (bounded GPU memory)")
    .option("--allow-long-context", "allow --ctx beyond the model's max_position_embeddings")
    .option("--json", "print exactly one JSON object on stdout")
    .option("--quiet", "no progress output")
    .addHelpText("after", "\nExamples:\n  wgq eval --model ../shared/models/stories260K --data ../shared/data/tinystories-valid-sample.txt\n  wgq eval --model out/int4 --ref models/fp --data valid.txt --ctx 512 --json")
    .action(async (o: { model: string; data?: string; ctx: number; maxWindows?: number; ref?: string; weights: "f32" | "f16"; batch: number; streaming?: boolean; json?: boolean; quiet?: boolean; allowLongContext?: boolean }) => {
      const synthetic = o.model.startsWith("synthetic:") ? o.model.slice("synthetic:".length) : null;
      let stream: number[];
      let docs: string[] = [];
      let config: LlamaConfig | null = null;
      if (synthetic) {
        config = parseConfig(syntheticConfigJson(synthetic), o.model);
        if (o.data) throw new UsageError("a synthetic model has no tokenizer: leave out --data (it is evaluated on seeded random tokens)");
        const r = rng(1234);
        stream = Array.from({ length: o.ctx * (o.maxWindows ?? 4) }, () => Math.floor(r() * config!.vocabSize));
      } else {
        if (!o.data) throw new UsageError("--data is required for a real model");
        checkContextLength(await loadConfig(o.model), o.model, [["--ctx", o.ctx]], o.allowLongContext);
        const tok = await TextTokenizer.fromHF(o.model);
        docs = (await readDocuments(o.data)).map((d) => d.text);
        stream = tokenStream(tok, docs);
      }
      const wins = windows(stream, o.ctx, o.maxWindows ?? Infinity);
      const ctx = await createContext();
      const per = Math.min(o.batch, wins.length);
      const mopts = { maxTokens: o.ctx * per, weightDtype: o.weights, streaming: o.streaming };
      const model = config
        ? await LlamaModel.fromSource(ctx, config, syntheticSource(config, { seed: 1, outliers: 4 }), mopts)
        : await LlamaModel.load(ctx, o.model, mopts);
      const ref = o.ref ? await LlamaModel.load(ctx, o.ref, { maxTokens: o.ctx * per, streaming: o.streaming }) : undefined;
      const progress = progressLine(o.quiet || o.json ? null : "eval");
      const r = await evaluate(ctx, model, wins, { ref, perForward: per, onWindow: (d, n) => progress?.(d, n) });
      const peak = ctx.gpu.stats.peakBytes;
      model.destroy();
      ref?.destroy();
      ctx.gpu.destroy();
      const c = model.config;
      if (o.json) {
        process.stdout.write(JSON.stringify({
          model: o.model, ref: o.ref ?? null, data: o.data, ctx: o.ctx, weights: o.weights,
          ppl: r.ppl, tokens: r.tokens, windows: r.windows, mean_nll: r.meanNll, kl: r.kl, top1: r.top1,
          tokens_per_s: r.tokensPerSecond, seconds: r.seconds, gpu_peak_bytes: peak, device: ctx.gpu.adapterInfo.description,
        }) + "\n");
        return;
      }
      const lines = [
        `model       ${o.model} (${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, ${o.weights} weights${o.streaming ? ", streaming" : ""})`,
        synthetic ? `data        seeded random tokens: ${stream.length} tokens, ${r.windows} windows of <= ${o.ctx}` : `data        ${o.data}: ${docs.length} documents, ${stream.length} tokens, ${r.windows} windows of <= ${o.ctx}`,
        `perplexity  ${r.ppl.toFixed(4)}   (${r.tokens} tokens scored, mean NLL ${r.meanNll.toFixed(5)} nats)`,
      ];
      if (r.kl !== null) lines.push(`KL vs ref   ${r.kl.toFixed(6)} nats/token   top-1 agreement ${(100 * r.top1).toFixed(2)} %`);
      else lines.push(`top-1       ${(100 * r.top1).toFixed(2)} % of next tokens predicted`);
      lines.push(`speed       ${r.tokensPerSecond.toFixed(0)} tokens/s over ${r.seconds.toFixed(1)} s on ${ctx.gpu.adapterInfo.description}; GPU peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
      process.stdout.write(lines.join("\n") + "\n");
    });
}
