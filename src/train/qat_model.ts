// train/qat_model.ts — a Llama whose block linears are fake-quantized with learnable step sizes
// (LSQ), with a forward pass that keeps what the backward pass needs (the model's block forward,
// model/block.ts, with QLinear as its Linear) and a backward pass through every op, all on the
// GPU. Used by train/qat.ts for end-to-end and block-wise training.
//
// Per linear: W (N, K) f32 — frozen, or trained with --trainable all —, step sizes s (N, ng) and
// zero points z (N, ng, fixed integers) initialised by the packed quantizer's rules (so the
// untrained model computes exactly the RTN model of its weights). Forward uses W' = fq(W; s, z);
// backward passes dW' to W inside the clipping range (STE) and to s with the LSQ gradient.
// Embedding, norms, biases and the LM head stay in f32 and are not trained.

import { UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { blockForward, type Linear } from "../model/block.ts";
import { expectedTensors, type LlamaConfig } from "../model/config.ts";
import { ropeInvFreq } from "../model/rope.ts";
import { transpose } from "../nn/elementwise.ts";
import { embedding } from "../nn/embedding.ts";
import { matmul, matmulWt, matmulWtPreferred } from "../nn/matmul.ts";
import { rmsnorm } from "../nn/rmsnorm.ts";
import { groupsPerRow, maxCode, quantSpec, type QuantBits, type QuantSpec } from "../quant/formats.ts";
import { f16BitsToF32 } from "../common/half.ts";
import { quantizeCodes } from "../quant/pack.ts";
import { attentionBackward } from "./attention_bwd.ts";
import { crossEntropyBackward, linearBackward, mseBackward, rmsnormBackward, ropeBackward, swigluBackward } from "./backward.ts";
import { FakeQuant } from "./fq.ts";
import { kdBackward } from "./kd.ts";

export const ROLES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type Role = (typeof ROLES)[number];

export interface QatSpec {
  bits: QuantBits;
  groupSize: number;
  sym: boolean;
  /** Train the weights too (LLM-QAT style), not only the step sizes. */
  trainWeights: boolean;
  /** Learn the zero points too (asymmetric; rounded to integers when packed). Default: fixed. */
  learnZero?: boolean;
}

/** One fake-quantized linear and its gradients; as a Linear of the block forward it multiplies by W'. */
export class QLinear implements Linear {
  readonly wq: GpuTensor;
  readonly dwq: GpuTensor;
  readonly dw: GpuTensor | null;
  readonly ds: GpuTensor;
  /** Gradient of the zero points when they are learned. */
  readonly dz: GpuTensor | null;
  readonly fq: FakeQuant;
  /** W'ᵀ (K, N) for the transposed-weight GEMM on CPU adapters (null elsewhere). */
  readonly wqT: GpuTensor | null;
  private constructor(
    readonly name: string,
    readonly spec: QuantSpec,
    readonly w: GpuTensor,
    readonly s: GpuTensor,
    readonly z: GpuTensor,
    /** Frozen bias (added by the block forward; no gradient). */
    readonly bias: GpuTensor | null,
    trainWeights: boolean,
    kn: boolean,
    learnZero: boolean,
  ) {
    const gpu = w.gpu;
    const { N, K } = spec;
    this.wq = GpuTensor.empty(gpu, [N, K], "f32", `${name}.wq`);
    this.dwq = GpuTensor.empty(gpu, [N, K], "f32", `${name}.dwq`);
    this.dw = trainWeights ? GpuTensor.empty(gpu, [N, K], "f32", `${name}.dw`) : null;
    this.ds = GpuTensor.empty(gpu, s.shape as number[], "f32", `${name}.ds`);
    this.dz = learnZero && !spec.sym ? GpuTensor.empty(gpu, z.shape as number[], "f32", `${name}.dz`) : null;
    this.fq = new FakeQuant(spec);
    this.wqT = kn ? GpuTensor.empty(gpu, [K, N], "f32", `${name}.wq_t`) : null;
  }

  /** Records W' (from W, or W itself with `identity`) and its transpose when kept. */
  async quantize(ctx: GpuContext, b: CommandBatch, identity = false): Promise<void> {
    if (identity) b.copy(this.w, this.wq);
    else await this.fq.forward(ctx, b, this.w, this.s, this.z, this.wq);
    if (this.wqT) await transpose(ctx, b, this.wq, this.wqT);
  }

  /** Records y = x · W'ᵀ (without the bias). */
  async matmul(ctx: GpuContext, b: CommandBatch, x: GpuTensor, y: GpuTensor): Promise<void> {
    // (the transposed copy is kept when the shapes allow it; a batch too large for one binding falls back)
    if (this.wqT && matmulWtPreferred(ctx.gpu, x.shape[0], this.spec.N, this.spec.K)) await matmulWt(ctx, b, x, this.wqT, y);
    else await matmul(ctx, b, x, this.wq, y);
  }

  /** Step sizes and zero points from the packed quantizer's rules (f16 scales, integer zeros). */
  static create(ctx: GpuContext, name: string, w: Float32Array, N: number, K: number, q: QatSpec, bias: Float32Array | null = null): QLinear {
    const spec = quantSpec(q.bits, N, K, q.groupSize, q.sym);
    const codes = quantizeCodes(w, spec, name);
    const ng = groupsPerRow(spec);
    const s = Float32Array.from(codes.scales, (b) => f16BitsToF32(b));
    // LSQ's symmetric step must be positive: an all-zero group keeps a tiny step.
    for (let i = 0; i < s.length; i++) if (!(s[i] > 0)) s[i] = 1e-6;
    const z = codes.zeros ? Float32Array.from(codes.zeros) : new Float32Array(N * ng);
    const { gpu } = ctx;
    return new QLinear(
      name, spec,
      GpuTensor.fromHost(gpu, w, [N, K], "f32", `${name}.weight`),
      GpuTensor.fromHost(gpu, s, [N, ng], "f32", `${name}.s`),
      GpuTensor.fromHost(gpu, z, [N, ng], "f32", `${name}.z`),
      bias ? GpuTensor.fromHost(gpu, bias, [N], "f32", `${name}.bias`) : null,
      q.trainWeights,
      matmulWtPreferred(gpu, 1, N, K),
      !!q.learnZero,
    );
  }

  get maxq(): number {
    return maxCode(this.spec.bits, this.spec.sym);
  }

  /** The trainable tensors and their gradients. */
  params(): { p: GpuTensor; g: GpuTensor; name: string }[] {
    const out = [{ p: this.s, g: this.ds, name: `${this.name}.s` }];
    if (this.dw) out.push({ p: this.w, g: this.dw, name: `${this.name}.weight` });
    if (this.dz) out.push({ p: this.z, g: this.dz, name: `${this.name}.z` });
    return out;
  }

  destroy(): void {
    for (const t of [this.w, this.s, this.z, this.bias, this.wq, this.wqT, this.dwq, this.dw, this.ds, this.dz]) t?.destroy();
  }
}

export interface QBlock {
  inNorm: GpuTensor;
  postNorm: GpuTensor;
  lin: Record<Role, QLinear>;
}

/** What a block's forward keeps for its backward (T tokens). */
interface Saved {
  x: GpuTensor;
  xn1: GpuTensor;
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  att: GpuTensor;
  xmid: GpuTensor;
  xn2: GpuTensor;
  g: GpuTensor;
  u: GpuTensor;
  h: GpuTensor;
}

/** Weight reader by Hugging Face name (f32). */
export type ReadF32 = (name: string) => Promise<Float32Array>;

export class QatModel {
  /** Activations of the last forward, per block, and the block outputs. */
  #saved: Saved[] = [];
  #outputs: GpuTensor[] = [];
  #headT: GpuTensor | null = null;
  /**
   * Skip the quantizer (W' = W, dW = dW'): the plain fp model with exact gradients, for checking the
   * backward pass against finite differences. Needs trainWeights (dW is where the gradient lands).
   */
  identityQuant = false;

  private constructor(
    readonly ctx: GpuContext,
    readonly config: LlamaConfig,
    readonly embed: GpuTensor | null,
    readonly norm: GpuTensor | null,
    readonly head: GpuTensor | null,
    readonly invFreq: GpuTensor,
    readonly blocks: (QBlock | null)[],
  ) {}

  /**
   * Uploads the model. `layers` limits the fake-quantized blocks held (block mode holds one at a
   * time: the others are null); `withHead` false skips embedding, final norm and head.
   */
  static async create(ctx: GpuContext, c: LlamaConfig, read: ReadF32, q: QatSpec, opts: { layers?: number[]; withHead?: boolean } = {}): Promise<QatModel> {
    const { gpu } = ctx;
    const withHead = opts.withHead ?? true;
    const H = c.hiddenSize;
    const up = async (name: string, shape: number[]) => GpuTensor.fromHost(gpu, await read(name), shape, "f32", name);
    const embed = withHead ? await up("model.embed_tokens.weight", [c.vocabSize, H]) : null;
    const norm = withHead ? await up("model.norm.weight", [H]) : null;
    const head = withHead && !c.tieWordEmbeddings ? await up("lm_head.weight", [c.vocabSize, H]) : null;
    const invFreq = GpuTensor.fromHost(gpu, ropeInvFreq(c), [c.headDim / 2], "f32", "qat.inv_freq");
    const want = new Set(opts.layers ?? Array.from({ length: c.numLayers }, (_, i) => i));
    const blocks: (QBlock | null)[] = [];
    for (let l = 0; l < c.numLayers; l++) blocks.push(want.has(l) ? await QatModel.block(ctx, c, read, q, l) : null);
    return new QatModel(ctx, c, embed, norm, head, invFreq, blocks);
  }

  static async block(ctx: GpuContext, c: LlamaConfig, read: ReadF32, q: QatSpec, l: number): Promise<QBlock> {
    const H = c.hiddenSize, I = c.intermediateSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim;
    const p = `model.layers.${l}.`;
    const dims: Record<Role, [string, number, number]> = {
      q_proj: ["self_attn", qw, H], k_proj: ["self_attn", kvw, H], v_proj: ["self_attn", kvw, H], o_proj: ["self_attn", H, qw],
      gate_proj: ["mlp", I, H], up_proj: ["mlp", I, H], down_proj: ["mlp", H, I],
    };
    const lin = {} as Record<Role, QLinear>;
    const biases = new Set(expectedTensors(c).filter((t) => t.name.endsWith(".bias")).map((t) => t.name));
    for (const r of ROLES) {
      const [part, N, K] = dims[r];
      const name = `${p}${part}.${r}`;
      const bias = biases.has(`${name}.bias`) ? await read(`${name}.bias`) : null;
      lin[r] = QLinear.create(ctx, name, await read(`${name}.weight`), N, K, q, bias);
    }
    const norm = async (n: string) => GpuTensor.fromHost(ctx.gpu, await read(`${p}${n}.weight`), [H], "f32", `${p}${n}.weight`);
    return { inNorm: await norm("input_layernorm"), postNorm: await norm("post_attention_layernorm"), lin };
  }

  /** Replaces block l (block mode); the previous one is destroyed. */
  setBlock(l: number, b: QBlock | null): void {
    const old = this.blocks[l];
    if (old) destroyBlock(old);
    this.blocks[l] = b;
  }

  linears(): QLinear[] {
    return this.blocks.flatMap((b) => (b ? ROLES.map((r) => b.lin[r]) : []));
  }

  /** Records W' = fq(W; s, z) for every held linear. */
  async quantizeWeights(b: CommandBatch): Promise<void> {
    for (const li of this.linears()) await li.quantize(this.ctx, b, this.identityQuant);
  }

  #freeSaved(): void {
    for (const s of this.#saved) if (s) for (const t of Object.values(s)) if (t !== s.x) t.destroy();
    for (const t of this.#outputs) t.destroy();
    this.#saved = [];
    this.#outputs = [];
  }

  /**
   * Records block l's forward on x (T, H) of packed sequences of `seq` tokens, keeping its
   * activations; returns the block output (owned by the model until the next forward).
   */
  async blockForward(b: CommandBatch, l: number, x: GpuTensor, seq: number): Promise<GpuTensor> {
    const { ctx, config: c } = this;
    const blk = this.blocks[l];
    if (!blk) throw new UsageError(`block ${l} is not loaded`);
    const T = x.shape[0];
    const H = c.hiddenSize, I = c.intermediateSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim;
    const E = (w: number, n: string) => GpuTensor.empty(ctx.gpu, [T, w], "f32", `qat.${l}.${n}`);
    const s: Saved = {
      x, xn1: E(H, "xn1"), q: E(qw, "q"), k: E(kvw, "k"), v: E(kvw, "v"), att: E(qw, "att"), xmid: E(H, "xmid"), xn2: E(H, "xn2"),
      g: E(I, "g"), u: E(I, "u"), h: E(I, "h"),
    };
    const out = E(H, "out");
    // the shared block forward, keeping what the backward reads: o's output accumulates the
    // residual in place (xmid), g and u are kept (swigluBackward), the block output is `out`
    await blockForward(ctx, b, c, { inputNorm: blk.inNorm, postNorm: blk.postNorm, lin: blk.lin }, {
      x, xn1: s.xn1, q: s.q, k: s.k, v: s.v, att: s.att, attnOut: s.xmid, mid: s.xmid,
      xn2: s.xn2, g: s.g, u: s.u, h: s.h, keepGateUp: true, mlpOut: out, out,
    }, { invFreq: this.invFreq, pos0: 0, seq });
    this.#saved[l] = s;
    this.#outputs.push(out);
    return out;
  }

  /**
   * Records block l's backward: dOut (T, H) -> dX (T, H), and accumulates nothing: the
   * linears' dW' (dwq) are overwritten, then turned into ds (and dW) by the fake quantizer.
   */
  async blockBackward(b: CommandBatch, l: number, dOut: GpuTensor, dX: GpuTensor, seq: number): Promise<void> {
    const { ctx, config: c } = this;
    const blk = this.blocks[l]!;
    const s = this.#saved[l];
    const T = dOut.shape[0];
    const H = c.hiddenSize, I = c.intermediateSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim;
    const E = (w: number, n: string) => {
      const t = GpuTensor.empty(ctx.gpu, [T, w], "f32", `qat.${l}.d${n}`);
      b.own(t);
      return t;
    };
    const L = blk.lin;
    // MLP: out = xmid + down(h)
    const dh = E(I, "h"), dg = E(I, "g"), du = E(I, "u"), dxn2 = E(H, "xn2"), dxmid = E(H, "xmid");
    await linearBackward(ctx, b, s.h, L.down_proj.wq, dOut, dh, L.down_proj.dwq);
    await swigluBackward(ctx, b, s.g, s.u, dh, dg, du);
    await linearBackward(ctx, b, s.xn2, L.gate_proj.wq, dg, dxn2, L.gate_proj.dwq);
    await linearBackward(ctx, b, s.xn2, L.up_proj.wq, du, dxn2, L.up_proj.dwq, { accumulateDx: true });
    b.copy(dOut, dxmid);
    await rmsnormBackward(ctx, b, s.xmid, blk.postNorm, dxn2, dxmid, null, c.rmsNormEps, { accumulateDx: true });
    // attention: xmid = x + o(attention(rope(q), rope(k), v))
    const datt = E(qw, "att"), dq = E(qw, "q"), dk = E(kvw, "k"), dv = E(kvw, "v"), dxn1 = E(H, "xn1");
    await linearBackward(ctx, b, s.att, L.o_proj.wq, dxmid, datt, L.o_proj.dwq);
    await attentionBackward(ctx, b, { q: s.q, k: s.k, v: s.v, out: s.att, dout: datt, dq, dk, dv }, { T, Hq: c.numHeads, Hkv: c.numKvHeads, D: c.headDim, seq });
    await ropeBackward(ctx, b, dq, this.invFreq, T, c.numHeads, 0, seq);
    await ropeBackward(ctx, b, dk, this.invFreq, T, c.numKvHeads, 0, seq);
    await linearBackward(ctx, b, s.xn1, L.q_proj.wq, dq, dxn1, L.q_proj.dwq);
    await linearBackward(ctx, b, s.xn1, L.k_proj.wq, dk, dxn1, L.k_proj.dwq, { accumulateDx: true });
    await linearBackward(ctx, b, s.xn1, L.v_proj.wq, dv, dxn1, L.v_proj.dwq, { accumulateDx: true });
    b.copy(dxmid, dX);
    await rmsnormBackward(ctx, b, s.x, blk.inNorm, dxn1, dX, null, c.rmsNormEps, { accumulateDx: true });
    // fake quantizer: dW' -> ds (LSQ) and dW (STE)
    for (const r of ROLES) {
      const li = L[r];
      if (this.identityQuant && li.dw) b.copy(li.dwq, li.dw);
      else await li.fq.backward(ctx, b, li.w, li.s, li.z, li.dwq, li.dw, li.ds, li.dz);
    }
  }

  /**
   * Records the whole model's forward on token ids (T = n·seq, packed sequences) and, with
   * `targets`, the next-token loss and the backward pass. lossSum receives [NLL sum, scored rows].
   * With `teacher` logits (T, V) the loss is the distillation loss KL(teacher || model) instead.
   */
  async forwardBackward(b: CommandBatch, ids: Uint32Array, targets: Uint32Array, seq: number, lossSum: GpuTensor, backward: boolean, teacher?: GpuTensor): Promise<void> {
    const { ctx, config: c } = this;
    if (!this.embed || !this.norm) throw new UsageError("this model was created without its embedding and head");
    this.#freeSaved();
    const T = ids.length;
    const H = c.hiddenSize, V = c.vocabSize;
    const idsT = GpuTensor.fromHost(ctx.gpu, ids, [T], "u32", "qat.ids");
    const tgT = GpuTensor.fromHost(ctx.gpu, targets, [T], "u32", "qat.targets");
    b.own(idsT, tgT);
    const x0 = GpuTensor.empty(ctx.gpu, [T, H], "f32", "qat.x0");
    b.own(x0);
    await embedding(ctx, b, idsT, this.embed, x0);
    await this.quantizeWeights(b);
    let x = x0;
    for (let l = 0; l < c.numLayers; l++) x = await this.blockForward(b, l, x, seq);
    const xf = GpuTensor.empty(ctx.gpu, [T, H], "f32", "qat.xf");
    const logits = GpuTensor.empty(ctx.gpu, [T, V], "f32", "qat.logits");
    b.own(xf, logits);
    const head = this.head ?? this.embed;
    await rmsnorm(ctx, b, x, this.norm, xf, c.rmsNormEps);
    if (matmulWtPreferred(ctx.gpu, T, V, H)) {
      if (!this.#headT) {
        this.#headT = GpuTensor.empty(ctx.gpu, [H, V], "f32", "qat.head_t");
        await transpose(ctx, b, head, this.#headT);
      }
      await matmulWt(ctx, b, xf, this.#headT, logits);
    } else {
      await matmul(ctx, b, xf, head, logits);
    }
    if (teacher) await kdBackward(ctx, b, logits, teacher, lossSum);
    else await crossEntropyBackward(ctx, b, logits, tgT, logits, lossSum);
    if (!backward) return;
    const dxf = GpuTensor.empty(ctx.gpu, [T, H], "f32", "qat.dxf");
    let dx = GpuTensor.empty(ctx.gpu, [T, H], "f32", "qat.dx");
    let dnext = GpuTensor.empty(ctx.gpu, [T, H], "f32", "qat.dx2");
    b.own(dxf, dx, dnext);
    await linearBackward(ctx, b, xf, head, logits, dxf, null);
    await rmsnormBackward(ctx, b, x, this.norm, dxf, dx, null, c.rmsNormEps);
    for (let l = c.numLayers - 1; l >= 0; l--) {
      await this.blockBackward(b, l, dx, dnext, seq);
      [dx, dnext] = [dnext, dx];
    }
  }

  /**
   * Block mode: records block l's forward on x (T, H), the MSE against `target` (T, H) into
   * lossSum [Σ err², n] and, with `backward`, its gradients.
   */
  async blockStep(b: CommandBatch, l: number, x: GpuTensor, target: GpuTensor, seq: number, lossSum: GpuTensor, backward: boolean): Promise<void> {
    this.#freeSaved();
    const blk = this.blocks[l]!;
    for (const r of ROLES) await blk.lin[r].quantize(this.ctx, b, this.identityQuant);
    const y = await this.blockForward(b, l, x, seq);
    const T = x.shape[0];
    const dy = GpuTensor.empty(this.ctx.gpu, [T, this.config.hiddenSize], "f32", "qat.dy");
    b.own(dy);
    await mseBackward(this.ctx, b, y, target, dy, lossSum);
    if (!backward) return;
    const dx = GpuTensor.empty(this.ctx.gpu, [T, this.config.hiddenSize], "f32", "qat.dxin");
    b.own(dx);
    await this.blockBackward(b, l, dy, dx, seq);
  }

  /** Releases what the last forward kept (call after the batch that used it has been submitted). */
  release(): void {
    this.#freeSaved();
  }

  destroy(): void {
    this.#freeSaved();
    for (const blk of this.blocks) if (blk) destroyBlock(blk);
    for (const t of [this.embed, this.norm, this.head, this.invFreq, this.#headT]) t?.destroy();
  }
}

export function destroyBlock(b: QBlock): void {
  b.inNorm.destroy();
  b.postNorm.destroy();
  for (const r of ROLES) b.lin[r].destroy();
}
