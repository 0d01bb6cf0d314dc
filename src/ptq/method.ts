// ptq/method.ts — what a post-training quantization method plugs into quantizeModel's block loop
// (src/ptq/quantize.ts). The loop owns the walk over the model: per block it uploads the
// block's f32 tensors from the checkpoint, lets the method rewrite them on the GPU
// (transformBlock), quantizes the linears on the GPU, reads back only the packed words, writes them
// to the output file and frees the block. A method sees one block at a time and keeps whatever it
// carries from block to block (AWQ: the next block's input activations) on the GPU.
//
//   RTN:  no transform (RTN below)
//   AWQ:  prepare embeds the calibration tokens; transformBlock searches scales, folds them,
//         searches clip ranges and computes the next block's input (src/ptq/awq.ts, AwqMethod)
//   QAT:  prepare trains the whole model; its linears come packed from packedLinear, AWQ's folded
//         norms from transformBlock (src/train/qat_method.ts, QatMethod)

import type { GpuContext } from "../gpu/context.ts";
import type { AtomicOutput } from "../io/output.ts";
import type { LlamaConfig } from "../model/config.ts";
import type { BlockWeights } from "../model/llama.ts";
import type { HostPackedWeight } from "../quant/formats.ts";

/** What a method gets before the first block. */
export interface PrepareArgs {
  config: LlamaConfig;
  /** A tensor of the source checkpoint by Hugging Face name, as f32 on the host. */
  read: (name: string) => Promise<Float32Array>;
  /** The output being written: resumable progress goes to its partial folder's state/. */
  out: AtomicOutput;
  /** The run was asked to continue an interrupted one (--resume). */
  resume: boolean;
  /** Notices (progress resumed, nothing to resume). */
  log: (line: string) => void;
}

export interface QuantMethod {
  /** The name stored in config.json's quantization_config and in report.json ("rtn", "awq"). */
  readonly name: string;
  /** Once, before the first block. */
  prepare?(ctx: GpuContext, args: PrepareArgs): Promise<void>;
  /**
   * Rewrites block `layer`'s f32 tensors (dense [N, K] linears, norms, biases) in place on the GPU
   * before its linears are quantized; the norms and biases are saved as they are afterwards.
   */
  transformBlock?(ctx: GpuContext, layer: number, block: BlockWeights): Promise<void>;
  /**
   * Linear `name` (its ".weight" name) as the method packed it itself (QAT's trained codes and
   * step sizes), written as given instead of quantizing the block's f32 weight; undefined: quantize
   * it. Asked after prepare.
   */
  packedLinear?(name: string): HostPackedWeight | undefined;
  /** Fields added to report.json, after the last block. */
  report?(): Record<string, unknown>;
  /** Releases what the method holds on the GPU; called once after the last block or an error. */
  dispose?(): void;
}

/** Round to nearest: the block's weights are quantized as they are. */
export const RTN: QuantMethod = { name: "rtn" };
