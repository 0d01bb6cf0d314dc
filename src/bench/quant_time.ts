// bench/quant_time.ts — how long quantization takes on this device, per block of the synthetic
// 1B-shaped Llama (7 linears, 44M weights at hidden 2048 / intermediate 5632) and per 1e9 weights:
//   rtn   int4 g128 (asymmetric) and int8: each linear uploaded as f32, quantized on the GPU
//         (src/quant/rtn.ts) and read back packed, as `wgq quantize --method rtn` does per tensor
//         (reading the checkpoint and writing the file are left out; so is making the weights)
//   awq   (optional) int4 g128 AWQ search + clip of one block (src/ptq/awq.ts), on 4 random
//         sequences of 128 tokens; the time of the block alone, not the embedding lookup before it

import type { GpuContext } from "../gpu/context.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { parseConfig, type LlamaConfig } from "../model/config.ts";
import { syntheticConfigJson, syntheticTensor } from "../model/synthetic.ts";
import { awqTransform } from "../ptq/awq.ts";
import { type QuantBits } from "../quant/formats.ts";
import { destroyPacked, downloadPacked } from "../quant/packed.ts";
import { quantizeRtn } from "../quant/rtn.ts";
import { rng } from "../common/random.ts";
import type { BenchDType, BenchRow } from "./kernels.ts";
import { median } from "./timer.ts";

export interface QuantTimeOptions {
  /** Synthetic preset (default "1b"). */
  preset?: string;
  /** Blocks timed per format (default 2). */
  blocks?: number;
  /** Also time AWQ on one block. */
  awq?: boolean;
  /** AWQ calibration: sequences and their length (default 4 × 128). */
  awqSequences?: number;
  awqSeqLen?: number;
  log?: (msg: string) => void;
}

const LINEAR_NAMES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Rows of kind "quant": name "rtn" (int4 g128, int8) and, with awq, "awq" (int4 g128). */
export async function benchQuantTime(ctx: GpuContext, opts: QuantTimeOptions = {}): Promise<BenchRow[]> {
  const log = opts.log ?? (() => {});
  const preset = opts.preset ?? "1b";
  const blocks = Math.max(1, opts.blocks ?? 2);
  const c = parseConfig({ ...syntheticConfigJson(preset), num_hidden_layers: blocks }, `synthetic:${preset}`);
  const model = `synthetic:${preset}`;
  const params = blockParams(c);
  const rows: BenchRow[] = [];
  for (const [dtype, bits, group] of [["int4", 4, 128], ["int8", 8, undefined]] as const) {
    const quantize = async (name: string, data: Float32Array) => {
      const N = rowsOf(c, name);
      const t = GpuTensor.fromHost(ctx.gpu, data, [N, data.length / N], "f32", name);
      try {
        const q = await quantizeRtn(ctx, t, { bits: bits as QuantBits, groupSize: group, sym: false });
        await downloadPacked(q);
        destroyPacked(q);
      } finally {
        t.destroy();
      }
    };
    // Warm-up (pipeline compilation): one small linear, untimed.
    const k0 = "model.layers.0.self_attn.k_proj.weight";
    await quantize(k0, syntheticTensor(c, k0, { seed: 1 }));
    const seconds: number[] = [];
    for (let l = 0; l < blocks; l++) {
      const ws = LINEAR_NAMES.map((n) => ({ name: `model.layers.${l}.${n}.weight`, data: syntheticTensor(c, `model.layers.${l}.${n}.weight`, { seed: 1 }) }));
      const t0 = performance.now();
      for (const w of ws) await quantize(w.name, w.data);
      seconds.push((performance.now() - t0) / 1000);
    }
    rows.push(quantRow("rtn", dtype, group, c, model, seconds, params));
    log(`quant rtn ${dtype}${group ? ` g${group}` : ""}: ${median(seconds).toFixed(2)} s per block (${(params / 1e6).toFixed(1)} M weights), ${(median(seconds) / params * 1e9).toFixed(1)} s per 1e9 weights`);
  }
  if (opts.awq) {
    const one = parseConfig({ ...syntheticConfigJson(preset), num_hidden_layers: 1 }, `synthetic:${preset}`);
    const L = Math.min(opts.awqSeqLen ?? 128, one.maxPositionEmbeddings);
    const n = opts.awqSequences ?? 4;
    const r = rng(3);
    const tokens = Uint32Array.from({ length: n * L }, () => Math.floor(r() * one.vocabSize));
    const res = await awqTransform(ctx, one, async (name) => syntheticTensor(one, name, { seed: 1, outliers: 4 }), {
      bits: 4, groupSize: 128, sym: false, tokens, seqLen: L, clipTokens: 128,
      onProgress: (d, total, detail) => { if (d % 20 === 0 || d === total) log(`  awq ${d}/${total} ${detail}`); },
    });
    rows.push(quantRow("awq", "int4", 128, one, model, res.blocks.map((b) => b.seconds), params));
    log(`quant awq int4 g128: ${res.blocks[0].seconds.toFixed(1)} s per block (${n}×${L} calibration tokens)`);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

function quantRow(name: string, dtype: BenchDType, group: number | undefined, c: LlamaConfig, model: string, seconds: number[], params: number): BenchRow {
  const med = median(seconds);
  return {
    name, dtype, ...(group ? { group } : {}), variant: name, kind: "quant", m: 0, n: c.hiddenSize, k: c.intermediateSize,
    median_ms: med * 1000, min_ms: Math.min(...seconds) * 1000, wall_median_ms: med * 1000, timer: "wall", reps: seconds.length,
    weight_bytes: params * 4, gbps: (params * 4) / (med * 1e9), pct_copy: null, gflops: NaN, speedup_vs_f16: null, rel_err: 0, tol: 0,
    model, layers: c.numLayers, seconds_per_block: med, seconds_per_billion: (med / params) * 1e9, params_per_block: params,
  };
}

/** Weights of one block's 7 linears. */
function blockParams(c: LlamaConfig): number {
  const H = c.hiddenSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim, I = c.intermediateSize;
  return 2 * qw * H + 2 * kvw * H + 3 * I * H;
}

/** Output features (rows) of a block linear. */
function rowsOf(c: LlamaConfig, name: string): number {
  const qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim;
  if (/q_proj/.test(name)) return qw;
  if (/[kv]_proj/.test(name)) return kvw;
  if (/(gate|up)_proj/.test(name)) return c.intermediateSize;
  return c.hiddenSize;
}
