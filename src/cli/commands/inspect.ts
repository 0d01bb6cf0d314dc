// cli/commands/inspect.ts — `wgq inspect MODEL`: architecture, sizes, and what fp16 / int8 / int4
// would weigh, before anyone waits for a quantization.

import { Command } from "commander";
import { formatSummary, inspectModel } from "../../model/inspect.ts";

export function inspectCommand(): Command {
  return new Command("inspect")
    .description("print a model's architecture, parameter count, size on disk and its size at fp16 / int8 / int4")
    .argument("<model>", "Hugging Face model folder or .gguf file")
    .option("--json", "print one JSON object")
    .addHelpText("after", "\nExamples:\n  wgq inspect ../shared/models/stories260K\n  wgq inspect model.gguf --json")
    .action(async (model: string, o: { json?: boolean }) => {
      const s = await inspectModel(model);
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + "\n" : formatSummary(s) + "\n");
    });
}
