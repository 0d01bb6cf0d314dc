// model/llama.ts — the Llama-family forward pass on the GPU, block by block, activations resident.
//
// LlamaModel owns its weights (resident mode: all uploaded at load; streaming mode: one block's
// weights uploaded, used and released per forward, for models larger than GPU memory) and its run
// state (activations for up to maxTokens tokens per call, and the KV cache for maxSeq positions).
// One forward = one CommandBatch per block in streaming mode, one for the whole model otherwise.
// Every weight is checked for NaN/±Inf on the GPU when it is first uploaded (one flag reduction per
// tensor, one readback per model; streamed blocks during the first forward): a bad weight throws
// NonFiniteWeightError (exit code 2) naming the tensor and its file.
//
//   const m = await LlamaModel.load(ctx, "models/stories260K", { maxTokens: 256 });
//   const logits = await m.forward(ids);          // GpuTensor (T, V), stays on the GPU
//   m.reset();                                    // start a new sequence (KV cache position 0)

import { NonFiniteWeightError, TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { SafetensorsCheckpoint } from "../io/safetensors.ts";
import { f32ArrayToF16 } from "../common/half.ts";
import { embedding } from "../nn/embedding.ts";
import { rmsnorm } from "../nn/rmsnorm.ts";
import { describeNonFinite, FiniteChecks, type FiniteFailure } from "../nn/finite.ts";
import { loadConfig, validateCheckpoint, type LlamaConfig } from "./config.ts";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.ts";
import type { HostPackedWeight } from "../quant/formats.ts";
import { readPacked, readQuantizationConfig } from "../quant/model_format.ts";
import { destroyPacked, uploadPacked } from "../quant/packed.ts";
import { blockForward, DenseLinear, linear, LINEARS, PackedLinear, type BlockActivations, type BlockParams, type LinearRole } from "./block.ts";
import { ropeInvFreq } from "./rope.ts";

export { LINEARS, type LinearRole } from "./block.ts";

/** A linear layer as loaded: W (N, K) dense f32/f16, or packed int4/int8 (src/quant/formats.ts). */
export type WeightLinear = DenseLinear | PackedLinear;

/** A block's weights as loaded (the model's BlockParams). */
export interface BlockWeights extends BlockParams {
  lin: Record<LinearRole, WeightLinear>;
}

/** Host-side source of weights by Hugging Face name. */
export interface WeightSource {
  has(name: string): boolean;
  readF32(name: string): Promise<Float32Array>;
  /** The packed weight of linear `name` (without ".weight") of shape [N, K], when stored quantized. */
  readPacked?(name: string, N: number, K: number): Promise<HostPackedWeight | null>;
  /** Releases files; called when nothing more will be read. */
  close?(): Promise<void>;
  /** The file holding tensor `name`, for error messages (default: "in-memory weights"). */
  fileOf?(name: string): string;
}

/** Seen by hooks: the input activation of a group of linears that share it, on the GPU. */
export interface LinearInputEvent {
  layer: number;
  /** The linears fed by `input`: [q,k,v], [o], [gate,up] or [down]. */
  roles: readonly LinearRole[];
  /** (T, K) f32 view of the activation; valid while the batch runs. */
  input: GpuTensor;
  batch: CommandBatch;
}

export interface ModelOptions {
  /** Most tokens per forward call (activation buffers are sized for it). */
  maxTokens: number;
  /** KV cache length (positions); default maxTokens. */
  maxSeq?: number;
  /** Weight storage on the GPU: f32 (default) or f16 (half the bytes; activations stay f32). */
  weightDtype?: "f32" | "f16";
  /** Upload one block at a time and release it after use (bounded GPU memory). */
  streaming?: boolean;
  /** Called for every linear input during forward; may record dispatches into ev.batch. */
  onLinearInput?: (ev: LinearInputEvent) => void | Promise<void>;
  /** Check every weight for NaN/±Inf on the GPU when uploaded (default true). */
  checkWeights?: boolean;
}

export class LlamaModel {
  #pos = 0;
  #blocks: (BlockWeights | null)[];
  #state: RunState;
  #destroyed = false;
  /** Streamed blocks whose weights were not checked yet (checked during the first forward). */
  #unchecked: Set<number>;
  /** Their checks' result slots, allocated at load (so a forward needs no more memory than before). */
  #streamChecks: FiniteChecks<WeightTag> | null;

  private constructor(
    readonly ctx: GpuContext,
    readonly config: LlamaConfig,
    readonly opts: Required<Omit<ModelOptions, "onLinearInput">> & Pick<ModelOptions, "onLinearInput">,
    readonly source: WeightSource,
    readonly embed: GpuTensor,
    readonly norm: GpuTensor,
    /** The LM head: dense (possibly the tied embedding) or packed (--quantize-head). */
    readonly head: WeightLinear,
    readonly invFreq: GpuTensor,
    blocks: (BlockWeights | null)[],
  ) {
    this.#blocks = blocks;
    this.#unchecked = new Set(opts.checkWeights ? blocks.flatMap((b, l) => (b ? [] : [l])) : []);
    // at most 16 tensors per block: 2 norms, 7 weights (or packed scales), 7 biases
    this.#streamChecks = this.#unchecked.size ? new FiniteChecks<WeightTag>(ctx, { slots: this.#unchecked.size * 16, label: "llama.weights" }).reserve() : null;
    this.#state = new RunState(ctx, config, opts.maxTokens, opts.maxSeq);
  }

  /** Loads config + weights from a Hugging Face folder (safetensors, sharded or not), fp or quantized by wgq. */
  static async load(ctx: GpuContext, dir: string, opts: ModelOptions): Promise<LlamaModel> {
    const config = await loadConfig(dir);
    const cfgFile = path.join(dir, "config.json");
    const qc = readQuantizationConfig(JSON.parse(await fsp.readFile(cfgFile, "utf8")), cfgFile);
    const ckpt = await SafetensorsCheckpoint.open(dir);
    try {
      validateCheckpoint(config, ckpt.infos(), { config: cfgFile, weights: ckpt.source }, { floatOnly: !qc, quantized: !!qc });
    } catch (e) {
      await ckpt.close();
      throw e;
    }
    const source: WeightSource = {
      has: (n) => ckpt.has(n),
      readF32: async (n) => {
        if (!ckpt.has(n)) throw new InputError(ckpt.source, n, "tensor missing from the checkpoint");
        return (await ckpt.read(n, "f32")).data as Float32Array;
      },
      readPacked: async (n, N, K) => (qc && ckpt.has(`${n}.qweight`) ? readPacked(ckpt, n, qc, N, K) : null),
      close: () => ckpt.close(),
      fileOf: (n) => ckpt.files.find((f) => f.tensors.has(n))?.path ?? ckpt.source,
    };
    try {
      return await LlamaModel.fromSource(ctx, config, source, opts);
    } catch (e) {
      await ckpt.close();
      throw e;
    }
  }

  /** Builds a model from any weight source (a checkpoint, a synthetic model, a quantized export). */
  static async fromSource(ctx: GpuContext, config: LlamaConfig, source: WeightSource, opts: ModelOptions): Promise<LlamaModel> {
    if (config.headDim % 2) throw new UsageError(`head_dim ${config.headDim} must be even for RoPE`);
    const full = {
      maxTokens: opts.maxTokens,
      maxSeq: opts.maxSeq ?? opts.maxTokens,
      weightDtype: opts.weightDtype ?? "f32",
      streaming: opts.streaming ?? false,
      onLinearInput: opts.onLinearInput,
      checkWeights: opts.checkWeights ?? true,
    };
    if (full.maxSeq < full.maxTokens) throw new UsageError(`maxSeq (${full.maxSeq}) is smaller than maxTokens (${full.maxTokens})`);
    const up = (name: string, shape: number[], dtype = full.weightDtype) => uploadWeight(ctx, source, name, shape, dtype);
    const H = config.hiddenSize;
    const embed = await up("model.embed_tokens.weight", [config.vocabSize, H]);
    const norm = await up("model.norm.weight", [H], "f32");
    const packedHead = await source.readPacked?.("lm_head", config.vocabSize, H);
    const head: WeightLinear = packedHead
      ? new PackedLinear("lm_head", uploadPacked(ctx.gpu, packedHead, "lm_head"))
      : new DenseLinear("lm_head", !source.has("lm_head.weight") && config.tieWordEmbeddings ? embed : await up("lm_head.weight", [config.vocabSize, H]));
    const invFreq = GpuTensor.fromHost(ctx.gpu, ropeInvFreq(config), [config.headDim / 2], "f32", "rope.inv_freq");
    const blocks: (BlockWeights | null)[] = [];
    for (let l = 0; l < config.numLayers; l++) blocks.push(full.streaming ? null : await loadBlock(ctx, config, source, l, full.weightDtype));
    if (!full.streaming) await source.close?.(); // every weight is on the GPU
    const model = new LlamaModel(ctx, config, full, source, embed, norm, head, invFreq, blocks);
    if (full.checkWeights) {
      // one flag reduction per weight, all in one batch, one readback
      const named = [...namedWeights([["model.embed_tokens.weight", embed], ["model.norm.weight", norm]], head)];
      for (const b of blocks) if (b) named.push(...namedWeights([], b));
      try {
        await checkWeights(ctx, source, named);
      } catch (e) {
        model.destroy();
        throw e;
      }
    }
    return model;
  }

  /** Current KV cache position (tokens already seen in this sequence). */
  get position(): number {
    return this.#pos;
  }

  /** Starts a new sequence. */
  reset(): void {
    this.#pos = 0;
  }

  /** The token ids of the last forward, (T) u32 on the GPU (valid until the next forward). */
  ids(T: number): GpuTensor {
    return this.#state.ids.view("ids", [T], 0);
  }

  /** Weights of block `l` when resident (null in streaming mode). */
  block(l: number): BlockWeights | null {
    return this.#blocks[l];
  }

  /**
   * Runs `ids` (T <= maxTokens) at the current position and advances it. Returns logits (T, V) f32,
   * a view of the run state valid until the next forward. With `seq`, ids are T / seq independent
   * sequences of seq tokens, all from position 0 (batched evaluation/calibration); the position
   * stays 0.
   */
  async forward(ids: ArrayLike<number>, opts: { seq?: number } = {}): Promise<GpuTensor> {
    this.#check();
    const c = this.config;
    const T = ids.length;
    const seq = opts.seq ?? 0;
    if (seq && (T % seq || this.#pos !== 0)) throw new UsageError(`packed sequences: ${T} tokens is not a multiple of ${seq}, or the model is not at position 0 (reset() first)`);
    if (T < 1 || T > this.opts.maxTokens) throw new UsageError(`forward of ${T} tokens; this model was opened for 1..${this.opts.maxTokens}`);
    if (this.#pos + T > this.opts.maxSeq) throw new UsageError(`sequence of ${this.#pos + T} tokens exceeds the KV cache (${this.opts.maxSeq})`, "reset() between sequences or open the model with a larger maxSeq");
    const idArr = new Uint32Array(T);
    for (let t = 0; t < T; t++) {
      const v = ids[t];
      if (!Number.isInteger(v) || v < 0 || v >= c.vocabSize) throw new TensorError("ids", `token id ${v} at ${t} is outside the vocabulary (0..${c.vocabSize - 1})`);
      idArr[t] = v;
    }
    const s = this.#state;
    const ctx = this.ctx;
    const pos0 = this.#pos;
    s.ids.write(idArr);
    const v = s.views(T);
    let batch = new CommandBatch(ctx.gpu, "llama.embed");
    await embedding(ctx, batch, v.ids, this.embed, v.x);
    // streamed blocks are checked for NaN/Inf the first time they are uploaded
    const checks = this.#streamChecks;
    checks?.reset();
    const checked: number[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const streamed = this.#blocks[l] === null;
      const w = this.#blocks[l] ?? (await loadBlock(ctx, c, this.source, l, this.opts.weightDtype));
      if (checks && this.#unchecked.has(l)) {
        // a batch of its own, submitted at once: its params need no room beside the block's
        const cb = new CommandBatch(ctx.gpu, `llama.check_block${l}`);
        for (const [name, t] of namedWeights([], w)) await checks.record(cb, t, weightTag(name, t));
        cb.submit();
        checked.push(l);
      }
      await this.#block(batch, l, w, v, T, pos0, seq);
      if (streamed) {
        batch.submit();
        destroyBlock(w); // WebGPU keeps the buffers alive for the submitted work
        batch = new CommandBatch(ctx.gpu, `llama.block${l + 1}`);
      }
    }
    await rmsnorm(ctx, batch, v.x, this.norm, v.xn, c.rmsNormEps);
    await linear(ctx, batch, v.xn, this.head, v.logits);
    batch.submit();
    this.#pos = seq ? 0 : this.#pos + T;
    if (checks && checked.length) {
      throwNonFiniteWeights(this.source, await checks.read());
      for (const l of checked) this.#unchecked.delete(l);
      if (!this.#unchecked.size) {
        checks.destroy();
        this.#streamChecks = null;
      }
    }
    return v.logits;
  }

  async #block(batch: CommandBatch, l: number, w: BlockWeights, v: Views, T: number, pos0: number, seq: number): Promise<void> {
    const hook = this.opts.onLinearInput;
    // one buffer per width: the residual stream x is updated in place, xn and o serve both halves
    const a: BlockActivations = {
      x: v.x, xn1: v.xn, q: v.q, k: v.k, v: v.v, att: v.att, attnOut: v.o, mid: v.x,
      xn2: v.xn, g: v.g, u: v.u, h: v.h, mlpOut: v.o, out: v.x,
    };
    await blockForward(this.ctx, batch, this.config, w, a, {
      invFreq: this.invFreq, pos0, seq,
      cache: { k: this.#state.kCache[l], v: this.#state.vCache[l] },
      onLinearInput: hook ? (roles, input, b) => hook({ layer: l, roles, input, batch: b }) : undefined,
    });
  }

  /** Releases every GPU buffer of the model (idempotent). */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const b of this.#blocks) if (b) destroyBlock(b);
    this.embed.destroy();
    this.norm.destroy();
    if (this.head.kind === "packed") destroyPacked(this.head.q);
    else this.head.w.destroy(); // idempotent: a tied head is the embedding
    this.invFreq.destroy();
    this.#streamChecks?.destroy();
    this.#state.destroy();
    if (this.opts.streaming) void this.source.close?.();
  }

  #check(): void {
    if (this.#destroyed) throw new UsageError("the model was destroyed");
  }
}

// ---------------------------------------------------------------------------------------------

interface Views {
  ids: GpuTensor; x: GpuTensor; xn: GpuTensor; q: GpuTensor; k: GpuTensor; v: GpuTensor;
  att: GpuTensor; o: GpuTensor; g: GpuTensor; u: GpuTensor; h: GpuTensor; logits: GpuTensor;
}

/** Activations for up to maxT tokens and the KV cache; allocated once, reused every call. */
class RunState {
  readonly ids: GpuTensor;
  readonly bufs: Record<Exclude<keyof Views, "ids">, GpuTensor>;
  readonly kCache: GpuTensor[] = [];
  readonly vCache: GpuTensor[] = [];
  readonly widths: Record<Exclude<keyof Views, "ids">, number>;

  constructor(ctx: GpuContext, c: LlamaConfig, readonly maxT: number, maxSeq: number) {
    const g = ctx.gpu;
    const H = c.hiddenSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim, I = c.intermediateSize;
    this.widths = { x: H, xn: H, q: qw, k: kvw, v: kvw, att: qw, o: H, g: I, u: I, h: I, logits: c.vocabSize };
    this.ids = GpuTensor.empty(g, [maxT], "u32", "state.ids");
    const bufs = {} as Record<Exclude<keyof Views, "ids">, GpuTensor>;
    for (const [k, w] of Object.entries(this.widths)) bufs[k as keyof typeof bufs] = GpuTensor.empty(g, [maxT, w], "f32", `state.${k}`);
    this.bufs = bufs;
    for (let l = 0; l < c.numLayers; l++) {
      this.kCache.push(GpuTensor.empty(g, [maxSeq, kvw], "f32", `cache.k${l}`));
      this.vCache.push(GpuTensor.empty(g, [maxSeq, kvw], "f32", `cache.v${l}`));
    }
  }

  views(T: number): Views {
    const out = { ids: this.ids.view("ids", [T], 0) } as Views;
    for (const [k, t] of Object.entries(this.bufs)) {
      const w = this.widths[k as keyof typeof this.widths];
      (out as unknown as Record<string, GpuTensor>)[k] = t.view(t.label, [T, w], 0);
    }
    return out;
  }

  destroy(): void {
    this.ids.destroy();
    for (const t of Object.values(this.bufs)) t.destroy();
    for (const t of [...this.kCache, ...this.vCache]) t.destroy();
  }
}

export async function uploadWeight(ctx: GpuContext, src: WeightSource, name: string, shape: number[], dtype: "f32" | "f16"): Promise<GpuTensor> {
  const data = await src.readF32(name);
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new TensorError(name, `has ${data.length} elements, the config implies [${shape}]`);
  return dtype === "f16"
    ? GpuTensor.fromHost(ctx.gpu, f32ArrayToF16(data), shape, "f16", name)
    : GpuTensor.fromHost(ctx.gpu, data, shape, "f32", name);
}

/** A weight under check: its checkpoint name, and whether the GPU holds it converted to f16 (--weights f16). */
interface WeightTag {
  name: string;
  converted: boolean;
}

function weightTag(name: string, t: GpuTensor): WeightTag {
  // packed scales are stored in f16 by the format; dense weights become f16 only by conversion
  return { name, converted: t.dtype === "f16" && !name.endsWith(".scales") };
}

/** The GPU tensors of weights, by checkpoint name: `extra`, then a head or a block's tensors (packed: the f16 scales). */
export function* namedWeights(extra: [string, GpuTensor][], w: WeightLinear | BlockWeights): Generator<[string, GpuTensor]> {
  yield* extra;
  const lins: WeightLinear[] = "kind" in w ? [w] : Object.values(w.lin);
  if (!("kind" in w)) yield* [[w.inputNorm.label, w.inputNorm], [w.postNorm.label, w.postNorm]] as [string, GpuTensor][];
  for (const li of lins) {
    if (li.kind === "dense") yield [li.w.label, li.w];
    else yield [li.q.scales.label, li.q.scales];
    if (li.bias) yield [li.bias.label, li.bias];
  }
}

/** Checks the weights for NaN/±Inf on the GPU: one batch, one readback; throws NonFiniteWeightError. */
export async function checkWeights(ctx: GpuContext, source: WeightSource, named: [string, GpuTensor][]): Promise<void> {
  const seen = new Set<GpuTensor>(); // a tied head is the embedding: checked once
  const checks = new FiniteChecks<WeightTag>(ctx, { slots: named.length, label: "llama.weights" });
  try {
    const batch = new CommandBatch(ctx.gpu, "llama.check_weights");
    for (const [name, t] of named) {
      if (seen.has(t)) continue;
      seen.add(t);
      await checks.record(batch, t, weightTag(name, t));
    }
    batch.submit();
    throwNonFiniteWeights(source, await checks.read());
  } finally {
    checks.destroy();
  }
}

function throwNonFiniteWeights(source: WeightSource, failures: FiniteFailure<WeightTag>[]): void {
  if (!failures.length) return;
  const [f] = failures;
  let detail = describeNonFinite(f.bad, f.shape);
  let hint: string | undefined;
  if (f.tag.converted) {
    detail += " as stored on the GPU in f16";
    hint = "f16 holds values up to ±65504 only: load the model with f32 weights (--weights f32), or check the checkpoint for huge values";
  }
  if (failures.length > 1) {
    const more = failures.slice(1).map((x) => x.tag.name);
    detail += `; ${more.length} more tensor(s) hold NaN/Inf too (${more.slice(0, 3).join(", ")}${more.length > 3 ? ", …" : ""})`;
  }
  throw new NonFiniteWeightError(source.fileOf?.(f.tag.name) ?? "in-memory weights", f.tag.name, detail, hint);
}

/** Uploads block `l`'s weights (packed linears stay packed). */
export async function loadBlock(ctx: GpuContext, c: LlamaConfig, src: WeightSource, l: number, dtype: "f32" | "f16"): Promise<BlockWeights> {
  const p = `model.layers.${l}.`;
  const H = c.hiddenSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim, I = c.intermediateSize;
  const shapes: Record<LinearRole, [number, number]> = {
    q_proj: [qw, H], k_proj: [kvw, H], v_proj: [kvw, H], o_proj: [H, qw], gate_proj: [I, H], up_proj: [I, H], down_proj: [H, I],
  };
  const lin = {} as Record<LinearRole, WeightLinear>;
  for (const r of LINEARS) {
    const part = r.endsWith("proj") && ["q_proj", "k_proj", "v_proj", "o_proj"].includes(r) ? "self_attn" : "mlp";
    const name = `${p}${part}.${r}`;
    const b = src.has(`${name}.bias`) ? await uploadWeight(ctx, src, `${name}.bias`, [shapes[r][0]], "f32") : null;
    const packed = await src.readPacked?.(name, shapes[r][0], shapes[r][1]);
    lin[r] = packed
      ? new PackedLinear(name, uploadPacked(ctx.gpu, packed, name), b)
      : new DenseLinear(name, await uploadWeight(ctx, src, `${name}.weight`, shapes[r], dtype), b);
  }
  return {
    inputNorm: await uploadWeight(ctx, src, `${p}input_layernorm.weight`, [H], "f32"),
    postNorm: await uploadWeight(ctx, src, `${p}post_attention_layernorm.weight`, [H], "f32"),
    lin,
  };
}

export function destroyBlock(b: BlockWeights): void {
  b.inputNorm.destroy();
  b.postNorm.destroy();
  for (const l of Object.values(b.lin)) {
    if (l.kind === "dense") l.w.destroy();
    else destroyPacked(l.q);
    l.bias?.destroy();
  }
}
