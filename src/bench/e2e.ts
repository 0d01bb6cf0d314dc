// bench/e2e.ts — end-to-end speed of the Llama forward pass (src/model/llama.ts) with f16, int8
// and int4 g128 linears: decode tokens/s (M = 1 steps with the KV cache, each step's last logits
// read back and argmax-ed on the host, as `wgq generate` does) and prefill tokens/s (one forward
// of `prefillTokens` tokens from position 0, last logits read back).
//
// Models: the synthetic 1B-shaped Llama (src/model/synthetic.ts preset "1b": hidden 2048, 32/8
// heads, intermediate 5632, vocab 32000), cut to `layers` blocks, and stories260K when its folder
// exists. The quantized models are built in memory: each block linear is quantized by RTN on the
// GPU (src/quant/rtn.ts) as the model loads, and so is the LM head (in the row's format, as int4
// checkpoints of the field do); embeddings and norms stay f16 / f32 in every variant. Times are wall clock per step
// (the forward submits one batch; the readback waits for it).

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { GpuContext } from "../gpu/context.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { SafetensorsCheckpoint } from "../io/safetensors.ts";
import { loadConfig, parseConfig, type LlamaConfig } from "../model/config.ts";
import { LlamaModel, type WeightSource } from "../model/llama.ts";
import { syntheticConfigJson, syntheticSource } from "../model/synthetic.ts";
import { packedBytes, quantSpec, type QuantBits } from "../quant/formats.ts";
import { destroyPacked, downloadPacked } from "../quant/packed.ts";
import { quantizeRtn } from "../quant/rtn.ts";
import { rng } from "../common/random.ts";
import type { BenchDType, BenchRow } from "./kernels.ts";
import { median } from "./timer.ts";

export const DEFAULT_STORIES_DIR = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));

/** The weight formats of the e2e rows: block linears as f16, int8 per channel, or int4 g128 (asymmetric). */
export const E2E_FORMATS = [
  { dtype: "f16", bits: 16 },
  { dtype: "int8", bits: 8 },
  { dtype: "int4", bits: 4, group: 128 },
] as const satisfies readonly { dtype: BenchDType; bits: number; group?: number }[];

export interface E2eOptions {
  /** Synthetic preset of the first model (default "1b"). */
  preset?: string;
  /** Blocks of the synthetic model (default: the preset's). */
  layers?: number;
  /** Tokens per prefill forward (default 128). */
  prefillTokens?: number;
  /** Timed decode steps and prefill forwards (default 7 and 3; the prefill has no warm-up of its own: the decode prompt compiles its pipelines). */
  decodeSteps?: number;
  prefillReps?: number;
  /** stories260K folder; null or a missing folder leaves it out. */
  storiesDir?: string | null;
  log?: (msg: string) => void;
}

/** Tokens of the untimed prompt before the decode steps (the KV cache is not empty). */
const DECODE_PROMPT = 16;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Decode and prefill rows (kind "e2e", names "decode" / "prefill") for each model and format. */
export async function benchE2e(ctx: GpuContext, opts: E2eOptions = {}): Promise<BenchRow[]> {
  const log = opts.log ?? (() => {});
  const preset = opts.preset ?? "1b";
  const json = syntheticConfigJson(preset);
  if (opts.layers !== undefined) json.num_hidden_layers = opts.layers;
  const synth = parseConfig(json, `synthetic:${preset}`);
  const models: { name: string; config: LlamaConfig; source: () => Promise<WeightSource> }[] = [
    { name: `synthetic:${preset}`, config: synth, source: async () => syntheticSource(synth, { seed: 1, outliers: 4 }) },
  ];
  const stories = opts.storiesDir === undefined ? DEFAULT_STORIES_DIR : opts.storiesDir;
  if (stories && existsSync(stories)) {
    const config = await loadConfig(stories);
    models.push({ name: "stories260K", config, source: () => checkpointSource(stories) });
  } else if (stories) {
    log(`e2e: no stories260K at ${stories}; its rows are left out`);
  }
  const rows: BenchRow[] = [];
  for (const m of models) {
    const c = m.config;
    const P = Math.min(opts.prefillTokens ?? 128, c.maxPositionEmbeddings - DECODE_PROMPT - 64);
    const steps = opts.decodeSteps ?? 7;
    for (const f of E2E_FORMATS) {
      const t0 = performance.now();
      const base = await m.source();
      const spec = f.bits === 16 ? null : { bits: f.bits as QuantBits, group: "group" in f ? f.group : undefined };
      const source = spec ? rtnSource(ctx, base, spec.bits, spec.group) : base;
      const maxSeq = Math.max(P, DECODE_PROMPT + steps + 2);
      const model = await LlamaModel.fromSource(ctx, c, source, { maxTokens: Math.max(P, DECODE_PROMPT), maxSeq, weightDtype: "f16" });
      const bytes = weightBytes(c, f.bits, spec?.group);
      log(`e2e ${m.name} ${c.numLayers} layers ${f.dtype}: model ready in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(bytes / 2 ** 20).toFixed(0)} MiB of weights)`);
      try {
        const r = rng(7);
        const ids = (n: number) => Array.from({ length: n }, () => Math.floor(r() * c.vocabSize));
        // The decode prompt first: it compiles the pipelines of the multi-token path, untimed.
        model.reset();
        await lastRow(await model.forward(ids(DECODE_PROMPT)), DECODE_PROMPT, c.vocabSize);
        // Prefill: forwards of P tokens from position 0.
        const prefill: number[] = [];
        for (let i = 0; i < (opts.prefillReps ?? 3); i++) {
          const prompt = ids(P);
          model.reset();
          const t = performance.now();
          await lastRow(await model.forward(prompt), P, c.vocabSize);
          prefill.push(performance.now() - t);
        }
        // Decode: a prompt, one untimed step (it compiles the M = 1 pipelines), then timed steps of one token each.
        model.reset();
        let logits = await lastRow(await model.forward(ids(DECODE_PROMPT)), DECODE_PROMPT, c.vocabSize);
        const decode: number[] = [];
        for (let i = 0; i < 1 + steps; i++) {
          const next = argmax(logits);
          const t = performance.now();
          logits = await lastRow(await model.forward([next]), 1, c.vocabSize);
          if (i > 0) decode.push(performance.now() - t);
        }
        for (const [name, ms, M] of [["decode", decode, 1], ["prefill", prefill, P]] as const) {
          const med = median(ms);
          const row: BenchRow = {
            name, dtype: f.dtype, ...(spec?.group ? { group: spec.group } : {}), variant: name, kind: "e2e", m: M, n: c.hiddenSize, k: c.intermediateSize,
            median_ms: med, min_ms: Math.min(...ms), wall_median_ms: med, timer: "wall", reps: ms.length, weight_bytes: bytes,
            gbps: bytes / (med * 1e6), pct_copy: null, gflops: (2 * M * modelMacs(c)) / (med * 1e6), speedup_vs_f16: null, rel_err: 0, tol: 0,
            model: m.name, layers: c.numLayers, tokens_per_s: (1000 * M) / med,
          };
          rows.push(row);
          log(`  ${m.name} ${f.dtype.padEnd(4)} ${name.padEnd(7)} ${row.tokens_per_s!.toFixed(2)} tok/s (${med.toFixed(1)} ms per ${M === 1 ? "token" : `${M}-token forward`})`);
        }
      } finally {
        model.destroy();
      }
    }
  }
  for (const r of rows) {
    const f16 = rows.find((o) => o.model === r.model && o.name === r.name && o.dtype === "f16");
    if (f16) r.speedup_vs_f16 = f16.median_ms / r.median_ms;
  }
  return rows;
}

/**
 * A WeightSource whose block linears come back packed: read as f32 from `base`, quantized by RTN
 * on the GPU, downloaded (the model uploads them again, as it does for a saved quantized folder).
 */
export function rtnSource(ctx: GpuContext, base: WeightSource, bits: QuantBits, group?: number): WeightSource {
  return {
    has: (n) => base.has(n),
    readF32: (n) => base.readF32(n),
    readPacked: async (name, N, K) => {
      const head = name === "lm_head";
      if (!head && !/^model\.layers\.\d+\./.test(name)) return null;
      // a tied head is quantized from the embedding (which itself stays dense)
      const src = head && !base.has("lm_head.weight") ? "model.embed_tokens.weight" : `${name}.weight`;
      const w = GpuTensor.fromHost(ctx.gpu, await base.readF32(src), [N, K], "f32", name);
      try {
        const q = await quantizeRtn(ctx, w, { bits, groupSize: group, sym: false });
        try {
          return await downloadPacked(q);
        } finally {
          destroyPacked(q);
        }
      } finally {
        w.destroy();
      }
    },
    close: () => base.close?.() ?? Promise.resolve(),
  };
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

async function checkpointSource(dir: string): Promise<WeightSource> {
  const ck = await SafetensorsCheckpoint.open(dir);
  return {
    has: (n) => ck.has(n),
    readF32: async (n) => (await ck.read(n, "f32")).data as Float32Array,
    close: () => ck.close(),
  };
}

/** Row `T - 1` of logits (T, V) on the host. */
async function lastRow(logits: GpuTensor, T: number, V: number): Promise<Float32Array> {
  return (await logits.view("last", [V], (T - 1) * V * 4).toHost()) as Float32Array;
}

function argmax(a: Float32Array): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i;
  return b;
}

/** Bytes of weights one decode step reads: the LM head and every block's linears and norms (embedding rows aside). */
function weightBytes(c: LlamaConfig, bits: number, group?: number): number {
  const H = c.hiddenSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim, I = c.intermediateSize;
  const shapes: [number, number][] = [[qw, H], [kvw, H], [kvw, H], [H, qw], [I, H], [I, H], [H, I]];
  const lin = shapes.reduce((a, [N, K]) => a + (bits === 16 ? N * K * 2 : packedBytes(quantSpec(bits, N, K, group, false)).total), 0);
  const head = bits === 16 ? c.vocabSize * H * 2 : packedBytes(quantSpec(bits, c.vocabSize, H, group, false)).total;
  return c.numLayers * (lin + 2 * H * 4) + head + H * 4;
}

/** Multiply-adds per token of the linears and the LM head (attention excluded). */
function modelMacs(c: LlamaConfig): number {
  const H = c.hiddenSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim, I = c.intermediateSize;
  return c.numLayers * (2 * qw * H + 2 * kvw * H + 3 * I * H) + c.vocabSize * H;
}
