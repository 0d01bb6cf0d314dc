// cli/commands/generate.ts — `wgq generate`: continue a prompt with a model on the GPU.

import { Command, Option } from "commander";
import { createContext } from "../../gpu/context.ts";
import { TextTokenizer } from "../../io/tokenizer.ts";
import { generate } from "../../model/generate.ts";
import { LlamaModel } from "../../model/llama.ts";
import { checkContextLength, floatOption, intOption } from "../util.ts";
import { loadConfig } from "../../model/config.ts";

export function generateCommand(): Command {
  return new Command("generate")
    .description("generate text from a prompt (greedy by default; sampling with --temperature)")
    .requiredOption("--model <dir>", "Hugging Face model folder")
    .requiredOption("--prompt <text>", "prompt text (BOS is added)")
    .option("--max-tokens <n>", "new tokens at most", intOption("--max-tokens", 1), 128)
    .option("--temperature <t>", "0 = greedy", floatOption("--temperature", 0), 0)
    .option("--top-k <k>", "sample among the k most likely tokens (0 = all)", intOption("--top-k", 0), 0)
    .option("--top-p <p>", "nucleus sampling mass", floatOption("--top-p", 0), 1)
    .option("--seed <n>", "sampling seed", intOption("--seed", 0), 0)
    .addOption(new Option("--weights <dtype>", "weight storage on the GPU").choices(["f32", "f16"]).default("f32"))
    .option("--allow-long-context", "allow prompt + --max-tokens beyond the model's max_position_embeddings")
    .option("--json", "print one JSON object instead of streaming text")
    .addHelpText("after", '\nExamples:\n  wgq generate --model ../shared/models/stories260K --prompt "Once upon a time" --temperature 0')
    .action(async (o: { model: string; prompt: string; maxTokens: number; temperature: number; topK: number; topP: number; seed: number; weights: "f32" | "f16"; json?: boolean; allowLongContext?: boolean }) => {
      const config = await loadConfig(o.model);
      const tok = await TextTokenizer.fromHF(o.model);
      const prompt = tok.encode(o.prompt, { bos: true });
      checkContextLength(config, o.model, [["--max-tokens", o.maxTokens], ["the prompt's tokens + --max-tokens", prompt.length + o.maxTokens]], o.allowLongContext);
      const ctx = await createContext();
      const model = await LlamaModel.load(ctx, o.model, { maxTokens: prompt.length, maxSeq: prompt.length + o.maxTokens, weightDtype: o.weights });
      const stopIds = [...model.config.eosTokenIds, ...(tok.eosId !== null ? [tok.eosId] : [])];
      // A model that ends a story by starting the next one emits BOS: stop there too.
      if (model.config.bosTokenId !== null) stopIds.push(model.config.bosTokenId);
      if (!o.json) process.stdout.write(o.prompt);
      let printed = o.prompt.length;
      const ids: number[] = [];
      const r = await generate(model, prompt, {
        maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed, stopIds,
        onToken: (id) => {
          if (o.json) return;
          ids.push(id);
          const text = tok.decode([...prompt.slice(1), ...ids], { skipSpecial: true });
          process.stdout.write(text.slice(printed));
          printed = text.length;
        },
      });
      model.destroy();
      ctx.gpu.destroy();
      const text = tok.decode([...prompt.slice(1), ...r.ids], { skipSpecial: true });
      if (o.json) {
        process.stdout.write(JSON.stringify({ prompt: o.prompt, text, ids: r.ids, stopped_by: r.stoppedBy, prefill_tokens_per_s: r.prefillTokensPerSecond, decode_tokens_per_s: r.decodeTokensPerSecond }) + "\n");
      } else {
        process.stdout.write("\n");
        process.stderr.write(`[${r.ids.length} tokens, stopped by ${r.stoppedBy}; prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s]\n`);
      }
    });
}
