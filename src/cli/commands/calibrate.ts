// cli/commands/calibrate.ts — `wgq calibrate`: per-channel activation statistics of every linear
// input over calibration text, computed on the GPU, saved as safetensors. With --out, the running
// sums are saved after each batch of forwards (state/ of the partial output), so that --resume
// continues an interrupted run from its next batch, with the same file bit for bit.

import { Command } from "commander";
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { UsageError } from "../../errors.ts";
import { createContext } from "../../gpu/context.ts";
import { AtomicOutput, checkResumeSettings, realPathOf, removeStaleTemps, STATE_DIR, writeFileAtomic } from "../../io/output.ts";
import { SafetensorsCheckpoint, writeSafetensors, type HostTensor } from "../../io/safetensors.ts";
import { TextTokenizer } from "../../io/tokenizer.ts";
import { LlamaModel } from "../../model/llama.ts";
import { CalibrationCollector, INPUT_GROUPS, type ChannelStats, type CollectorState, type InputGroup } from "../../ptq/calib.ts";
import { calibrationBlocks } from "../../ptq/calib_data.ts";
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
    .option("--resume", "continue an interrupted run into the same --out from its last completed batch")
    .option("--allow-long-context", "allow --seq-len beyond the model's max_position_embeddings")
    .option("--show", "print per-layer summaries (outlier channels: max/mean ratio)")
    .option("--gram", "also save the Gram matrix XᵀX / tokens of every linear input (K x K; GPTQ-style Hessian)")
    .option("--quiet", "no progress output")
    .addHelpText("after", "\nExamples:\n  wgq calibrate --model ../shared/models/stories260K --calib ../shared/data/tinystories-valid-sample.txt --samples 64 --seq-len 256 --show")
    .action(async (o: CalibrateCliOptions) => {
      const config = await loadConfig(o.model);
      checkContextLength(config, o.model, [["--seq-len", o.seqLen]], o.allowLongContext);
      if (o.resume && o.out === undefined) throw new UsageError("--resume needs --out (the statistics file an interrupted run was writing)");
      const out = o.out === undefined ? null
        : await AtomicOutput.create(o.out, "file", { command: "calibrate", inputs: [o.model, o.calib], force: o.force, resume: o.resume, ownFile: isCalibrationFile });
      if (out && o.resume && !out.resumed) process.stderr.write(`--resume: no saved progress of an earlier run into ${o.out}; starting from the first batch\n`);
      try {
        await collect(o, out, JSON.stringify(config));
      } catch (e) {
        if (out?.hasProgress()) {
          out.keep();
          process.stderr.write(`the progress of this run is kept in ${out.tmp}: rerun the same command with --resume to continue\n`);
        } else {
          await out?.abort();
        }
        throw e;
      }
    });
}

interface CalibrateCliOptions {
  model: string; calib: string; samples: number; seqLen: number; seed: number; batch: number; out?: string; show?: boolean; quiet?: boolean;
  gram?: boolean; force?: boolean; resume?: boolean; allowLongContext?: boolean;
}

async function collect(o: CalibrateCliOptions, out: AtomicOutput | null, configJson: string): Promise<void> {
  const tok = await TextTokenizer.fromHF(o.model);
  const blocks = await calibrationBlocks(tok, o.calib, o.samples, o.seqLen, o.seed);
  const ctx = await createContext();
  const col = new CalibrationCollector(ctx, { gram: o.gram });
  const per = Math.min(o.batch, blocks.n);
  const model = await LlamaModel.load(ctx, o.model, { maxTokens: per * o.seqLen, onLinearInput: col.hook });
  const progress = progressLine(o.quiet ? null : "calibrate");
  // Resumable progress: the collector's raw running sums after each batch but the last.
  const state = out ? {
    dir: path.join(out.tmp, STATE_DIR),
    settings: {
      model: realPathOf(o.model), samples: blocks.n, seqLen: o.seqLen, seed: o.seed, batch: per, gram: !!o.gram,
      tokens: sha256(blocks.tokens), config: sha256(configJson),
    },
  } : null;
  const start = state && out?.resumed ? await loadCalibProgress(state, col, blocks.n) : 0;
  if (start > 0) progress?.(start, blocks.n);
  for (let i = start; i < blocks.n; i += per) {
    const n = Math.min(per, blocks.n - i);
    model.reset();
    await model.forward(blocks.tokens.subarray(i * o.seqLen, (i + n) * o.seqLen), { seq: o.seqLen });
    if (state && i + n < blocks.n) await saveCalibProgress(state, col, i + n);
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

// --- resumable progress ------------------------------------------------------------------------

const PROGRESS_FORMAT = "webgpu-quant.calibrate-progress";
const PROGRESS_VERSION = 1;
const MANIFEST = "calibrate.json";
const sumsFile = (done: number) => `calibrate-sums-${done}.safetensors`;
const SETTING_LABELS: Record<string, string> = {
  model: "model (--model)", config: "model config (config.json)", samples: "--samples", seqLen: "--seq-len", seed: "--seed",
  batch: "--batch", gram: "--gram", tokens: "calibration tokens (--calib)",
};

interface CalibManifest {
  format: typeof PROGRESS_FORMAT;
  version: number;
  settings: Record<string, unknown>;
  /** Calibration blocks whose statistics the saved sums hold (whole batches). */
  done: number;
  sums: string;
  entries: { key: string; layer: number; group: InputGroup; tokens: number }[];
}

type CalibState = { dir: string; settings: Record<string, unknown> };

const sha256 = (a: Uint32Array | string) =>
  createHash("sha256").update(typeof a === "string" ? a : new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");

/** Saves the raw running sums after `done` blocks: the sums file, then calibrate.json naming it. */
async function saveCalibProgress(state: CalibState, col: CalibrationCollector, done: number): Promise<void> {
  const entries = await col.exportState();
  await fsp.mkdir(state.dir, { recursive: true });
  const prev = await fsp.readFile(path.join(state.dir, MANIFEST), "utf8").then((t) => (JSON.parse(t) as CalibManifest).sums, () => null);
  const tensors: HostTensor[] = entries.flatMap((e) => [
    { name: `${e.key}.acc`, dtype: "F32" as const, shape: [e.acc.length / 4, 4], data: e.acc },
    ...(e.gram ? [{ name: `${e.key}.gram`, dtype: "F32" as const, shape: [e.acc.length / 4, e.acc.length / 4], data: e.gram }] : []),
  ]);
  await writeSafetensors(path.join(state.dir, sumsFile(done)), tensors);
  const m: CalibManifest = {
    format: PROGRESS_FORMAT, version: PROGRESS_VERSION, settings: state.settings, done, sums: sumsFile(done),
    entries: entries.map(({ key, layer, group, tokens }) => ({ key, layer, group, tokens })),
  };
  await writeFileAtomic(path.join(state.dir, MANIFEST), JSON.stringify(m, null, 1) + "\n");
  if (prev && prev !== m.sums) await fsp.rm(path.join(state.dir, prev), { force: true });
}

/**
 * Loads the saved running sums into the collector; returns the blocks they cover, or 0 (said on
 * stderr) when nothing usable was saved. Progress saved under other settings is refused.
 */
async function loadCalibProgress(state: CalibState, col: CalibrationCollector, total: number): Promise<number> {
  await removeStaleTemps(state.dir);
  const fromZero = (why: string) => {
    process.stderr.write(`--resume: ${why}; starting from the first batch\n`);
    col.importState([]);
    return 0;
  };
  let m: CalibManifest;
  try {
    m = JSON.parse(await fsp.readFile(path.join(state.dir, MANIFEST), "utf8")) as CalibManifest;
  } catch (e) {
    return fromZero((e as NodeJS.ErrnoException).code === "ENOENT" ? "no batch was completed before the interruption" : `${MANIFEST} is unreadable`);
  }
  if (m?.format !== PROGRESS_FORMAT || m.version !== PROGRESS_VERSION || typeof m.settings !== "object" || m.settings === null) return fromZero(`${MANIFEST} is not calibration progress of this version`);
  checkResumeSettings(state.dir, m.settings, state.settings, SETTING_LABELS);
  if (!Number.isInteger(m.done) || m.done < 1 || m.done >= total || !Array.isArray(m.entries) || typeof m.sums !== "string" || path.basename(m.sums) !== m.sums) return fromZero(`${MANIFEST} is inconsistent`);
  const entries: CollectorState[] = [];
  try {
    const ck = await SafetensorsCheckpoint.open(path.join(state.dir, m.sums));
    try {
      for (const e of m.entries) {
        if (!(e.group in INPUT_GROUPS)) throw new Error(`unknown group ${e.group}`);
        const acc = (await ck.read(`${e.key}.acc`, "f32")).data as Float32Array;
        const gram = ck.has(`${e.key}.gram`) ? (await ck.read(`${e.key}.gram`, "f32")).data as Float32Array : null;
        entries.push({ ...e, acc, gram });
      }
    } finally {
      await ck.close();
    }
    col.importState(entries);
  } catch {
    return fromZero(`the saved sums (${m.sums}) are unreadable`);
  }
  process.stderr.write(`--resume: ${m.done} of ${total} calibration blocks were done before the interruption; continuing from there\n`);
  return m.done;
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
