// model/block.ts — the one Llama block forward, used by the model (src/model/llama.ts), AWQ's
// calibration and scale search (src/ptq/awq.ts) and QAT (src/train/qat_model.ts):
//
//   xn1 = input_layernorm(x)
//   attnOut = o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1)))        attentionHalf
//   mid = x + attnOut
//   xn2 = post_attention_layernorm(mid)
//   mlpOut = down(silu(gate(xn2)) ⊙ up(xn2))                         mlpHalf
//   out = mid + mlpOut
//
// What differs between callers is a parameter, not a copy:
//   - how each linear computes x · Wᵀ (a Linear: dense f32/f16 weights, packed int4/int8,
//     transposed Wᵀ on CPU adapters, fake-quantized weights); biases are added here, once;
//   - which activations are kept (the BlockActivations record: the caller's buffers, separate to
//     keep them, aliased to save memory) and who sees the linears' inputs (onLinearInput);
//   - the KV cache (generation) or packed independent sequences from position 0.
// T is the token count of a call everywhere.

import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import type { Gpu } from "../gpu/device.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { attention } from "../nn/attention.ts";
import { addBias, addInPlace, siluMul } from "../nn/elementwise.ts";
import { matmul, matmulWt, matmulWtPreferred, swigluWt } from "../nn/matmul.ts";
import { rmsnorm } from "../nn/rmsnorm.ts";
import { rope } from "../nn/rope.ts";
import { qmatmul } from "../quant/matmul.ts";
import type { GpuPackedWeight } from "../quant/packed.ts";
import { LINEAR_ROLES } from "../common/llama.ts";
import type { LlamaConfig } from "./config.ts";

/** A block's linears: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
export type LinearRole = (typeof LINEAR_ROLES)[number];

/** The linears in checkpoint order. */
export const LINEARS: readonly LinearRole[] = LINEAR_ROLES;

/** A linear layer y = x · Wᵀ + b as the block forward runs it: how W is held and multiplied is the implementation's. */
export interface Linear {
  /** Hugging Face name without ".weight" (model.layers.0.self_attn.q_proj). */
  readonly name: string;
  /** Added to every output row (linear() adds it), or none. */
  readonly bias?: GpuTensor | null;
  /** Records y = x · Wᵀ, x (T, K) and y (T, N) f32, without the bias. */
  matmul(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, y: GpuTensor): Promise<void>;
}

/** W (N, K) as stored, f32 or f16 (nn/matmul.ts picks the kernel for the token count). */
export class DenseLinear implements Linear {
  readonly kind = "dense";
  constructor(readonly name: string, public w: GpuTensor, readonly bias: GpuTensor | null = null) {}
  async matmul(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, y: GpuTensor): Promise<void> {
    await matmul(ctx, batch, x, this.w, y);
  }
}

/** W packed int4/int8 (quant/formats.ts), multiplied without a dequantized copy. */
export class PackedLinear implements Linear {
  readonly kind = "packed";
  constructor(readonly name: string, readonly q: GpuPackedWeight, readonly bias: GpuTensor | null = null) {}
  async matmul(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, y: GpuTensor): Promise<void> {
    await qmatmul(ctx, batch, x, this.q, y);
  }
}

/** Wᵀ (K, N) f32: the transposed-weight GEMM, several times faster on CPU adapters (see linearLayout). */
export class TransposedLinear implements Linear {
  readonly kind = "transposed";
  constructor(readonly name: string, readonly wT: GpuTensor, readonly bias: GpuTensor | null = null) {}
  async matmul(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, y: GpuTensor): Promise<void> {
    await matmulWt(ctx, batch, x, this.wT, y);
  }
}

/**
 * The layout f32 weights a caller rewrites (AWQ) are best multiplied in on this device for up to
 * maxT tokens: "kn" (Wᵀ, TransposedLinear) where the transposed-weight GEMM runs and is faster for every linear
 * of the block (CPU adapters), else "nk" (W as stored, DenseLinear).
 */
export function linearLayout(gpu: Gpu, c: LlamaConfig, maxT: number): "nk" | "kn" {
  const H = c.hiddenSize, I = c.intermediateSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim;
  const shapes = [[qw, H], [kvw, H], [H, qw], [I, H], [H, I]] as const;
  return shapes.every(([N, K]) => matmulWtPreferred(gpu, maxT, N, K)) ? "kn" : "nk";
}

/** A weight held in `layout` ((N, K) for "nk", (K, N) for "kn") as a Linear. */
export function layoutLinear(layout: "nk" | "kn", name: string, w: GpuTensor, bias: GpuTensor | null = null): Linear {
  return layout === "kn" ? new TransposedLinear(name, w, bias) : new DenseLinear(name, w, bias);
}

/** Records y = x · Wᵀ + b. */
export async function linear(ctx: GpuContext, batch: CommandBatch, x: GpuTensor, lin: Linear, y: GpuTensor): Promise<void> {
  await lin.matmul(ctx, batch, x, y);
  if (lin.bias) await addBias(ctx, batch, y, lin.bias);
}

/** A block's weights as the forward uses them. */
export interface BlockParams {
  inputNorm: GpuTensor;
  postNorm: GpuTensor;
  lin: Record<LinearRole, Linear>;
}

/**
 * The activations of one block forward over T tokens: (T, width) tensors or views, the caller's.
 * A record may alias what it need not keep: mid may be x or attnOut, out may be mid or mlpOut,
 * xn2 may be xn1, mlpOut may be attnOut (the model's forward keeps one buffer per width).
 */
export interface BlockActivations extends AttentionActivations, MlpActivations {
  /** The block input (T, H). */
  x: GpuTensor;
  /** x + attnOut (T, H). */
  mid: GpuTensor;
  /** The block output mid + mlpOut (T, H). */
  out: GpuTensor;
}

/** attentionHalf: xn1 (T, H) -> attnOut (T, H), through q, k, v (T, q/kv width) and att (T, q width). */
export interface AttentionActivations {
  xn1: GpuTensor;
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  att: GpuTensor;
  attnOut: GpuTensor;
}

/** mlpHalf: xn2 (T, H) -> mlpOut (T, H), through g, u and h = silu(g) ⊙ u (T, I). */
export interface MlpActivations {
  xn2: GpuTensor;
  g: GpuTensor;
  u: GpuTensor;
  h: GpuTensor;
  mlpOut: GpuTensor;
  /** g and u must hold gate's and up's outputs (a backward pass reads them); otherwise SwiGLU may run fused and leave them unwritten. */
  keepGateUp?: boolean;
}

export interface BlockForwardOptions {
  /** RoPE inverse frequencies (headDim / 2). */
  invFreq: GpuTensor;
  /** Position of the first token (a KV cache's fill), 0 for packed sequences. */
  pos0: number;
  /** Tokens per packed independent sequence (all from position 0), or 0 for one sequence. */
  seq: number;
  /** This block's KV cache (maxSeq, kv width): k and v are stored at pos0 and attention reads the cache. */
  cache?: { k: GpuTensor; v: GpuTensor };
  /** Sees the input (T, K) of each group of linears sharing it, before they run; may record into the batch. */
  onLinearInput?: (roles: readonly LinearRole[], input: GpuTensor, batch: CommandBatch) => void | Promise<void>;
}

/** Records the attention half of a block: attnOut = o(attention(rope(q(xn1)), rope(k(xn1)), v(xn1))). */
export async function attentionHalf(ctx: GpuContext, b: CommandBatch, c: LlamaConfig, lin: Record<LinearRole, Linear>, a: AttentionActivations, opts: BlockForwardOptions): Promise<void> {
  const T = a.xn1.shape[0];
  await opts.onLinearInput?.(["q_proj", "k_proj", "v_proj"], a.xn1, b);
  await linear(ctx, b, a.xn1, lin.q_proj, a.q);
  await linear(ctx, b, a.xn1, lin.k_proj, a.k);
  await linear(ctx, b, a.xn1, lin.v_proj, a.v);
  await rope(ctx, b, a.q, opts.invFreq, T, c.numHeads, opts.pos0, opts.seq);
  await rope(ctx, b, a.k, opts.invFreq, T, c.numKvHeads, opts.pos0, opts.seq);
  let [k, v] = [a.k, a.v];
  if (opts.cache) {
    const kvw = c.numKvHeads * c.headDim;
    const { k: kc, v: vc } = opts.cache;
    b.copy(a.k, kc.view(`${kc.label}.new`, [T, kvw], opts.pos0 * kvw * 4));
    b.copy(a.v, vc.view(`${vc.label}.new`, [T, kvw], opts.pos0 * kvw * 4));
    [k, v] = [kc, vc];
  }
  await attention(ctx, b, a.q, k, v, a.att, { T, Hq: c.numHeads, Hkv: c.numKvHeads, D: c.headDim, pos0: opts.pos0, seq: opts.seq });
  await opts.onLinearInput?.(["o_proj"], a.att, b);
  await linear(ctx, b, a.att, lin.o_proj, a.attnOut);
}

/** Records the MLP half of a block: mlpOut = down(silu(gate(xn2)) ⊙ up(xn2)). */
export async function mlpHalf(ctx: GpuContext, b: CommandBatch, lin: Record<LinearRole, Linear>, a: MlpActivations, opts: Pick<BlockForwardOptions, "onLinearInput">): Promise<void> {
  const { gate_proj: gate, up_proj: up } = lin;
  await opts.onLinearInput?.(["gate_proj", "up_proj"], a.xn2, b);
  if (!a.keepGateUp && gate instanceof TransposedLinear && up instanceof TransposedLinear && !gate.bias && !up.bias) {
    await swigluWt(ctx, b, a.xn2, gate.wT, up.wT, a.h); // gate, up and SwiGLU in one pass
  } else {
    await linear(ctx, b, a.xn2, gate, a.g);
    await linear(ctx, b, a.xn2, up, a.u);
    await siluMul(ctx, b, a.g, a.u, a.h);
  }
  await opts.onLinearInput?.(["down_proj"], a.h, b);
  await linear(ctx, b, a.h, lin.down_proj, a.mlpOut);
}

/** Records one block forward (see the top of this file) into `b`. */
export async function blockForward(ctx: GpuContext, b: CommandBatch, c: LlamaConfig, w: BlockParams, a: BlockActivations, opts: BlockForwardOptions): Promise<void> {
  await rmsnorm(ctx, b, a.x, w.inputNorm, a.xn1, c.rmsNormEps);
  await attentionHalf(ctx, b, c, w.lin, a, opts);
  await residual(ctx, b, a.mid, a.x, a.attnOut);
  await rmsnorm(ctx, b, a.mid, w.postNorm, a.xn2, c.rmsNormEps);
  await mlpHalf(ctx, b, w.lin, a, opts);
  await residual(ctx, b, a.out, a.mid, a.mlpOut);
}

/** dst = x + r, where dst may be x or r itself. */
async function residual(ctx: GpuContext, b: CommandBatch, dst: GpuTensor, x: GpuTensor, r: GpuTensor): Promise<void> {
  if (dst === x) return addInPlace(ctx, b, dst, r);
  if (dst === r) return addInPlace(ctx, b, dst, x);
  b.copy(x, dst);
  await addInPlace(ctx, b, dst, r);
}
