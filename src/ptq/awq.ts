// ptq/awq.ts — activation-aware weight quantization (AWQ, llm-awq / AutoAWQ), block by block on
// the GPU. Only the per-channel activation means, the chosen ratios, clip choices and losses come
// back to the CPU; activations and weights stay resident.
//
// Per block l, on its cached input X (all calibration tokens, in chunks of whole sequences):
//   1. fp pass (captureBlockInputs; the model's block forward, model/block.ts): the block's
//      intermediate activations, their per-channel mean |x|, the fp outputs of the attention and
//      the MLP, and the block output (the next block's input, as llm-awq).
//   2. scale search for each group (prev op -> linears; loss on the inspected module's output):
//        input_layernorm -> q,k,v   (loss: attention output after o_proj)
//        v -> o                      (only when Hq == Hkv; skipped under GQA)
//        post_attention_layernorm -> gate,up   (loss: MLP output)
//        up -> down                  (loss: down output)
//      (searchScales, scored on the halves of the block forward, attentionHalf and mlpHalf)
//      α = i/20, s = mean|x|^α / sqrt(max·min) (optionally ÷ w_mean^(1−α), "duo"), weights
//      W·diag(s) fake-quantized then ·diag(1/s), module re-run, MSE vs fp; best α kept (α = 0 is
//      RTN). 1/s is folded into the previous op, s into the linears, so the fp model is unchanged
//      (foldScales).
//   3. clip search (searchClip) on v, o, gate, up, down: per (row, group) shrink max|w| by 1.00 … 0.55, scored on
//      the group's partial dot products over sampled tokens; weights clamped to the best.
//
// AwqMethod is AWQ as a method of quantizeModel's block loop (ptq/method.ts): it rescales and clips
// each block's f32 weights in place on the GPU, and quantizeModel packs them with RTN right after.
// awqTransform runs the same over every block for callers that want the weights on the host.
//
// With `state` (or `resumable`), each completed block is saved (see AwqState) and an interrupted
// run continues from its last completed block, with the same result bit for bit: the blocks
// already done are re-emitted from their saved tensors.

import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { reduceStats, sumPartials } from "../nn/reduce.ts";
import { InputError, NonFiniteError, UsageError } from "../errors.ts";
import { checkResumeSettings, removeStaleTemps, STATE_DIR, writeFileAtomic } from "../io/output.ts";
import { SafetensorsCheckpoint, writeSafetensors } from "../io/safetensors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { addInPlace, scale, transpose } from "../nn/elementwise.ts";
import { embedding } from "../nn/embedding.ts";
import { matmul, matmulWt, matmulWtPreferred } from "../nn/matmul.ts";
import { attentionHalf, blockForward, layoutLinear, linear, linearLayout, LINEARS, mlpHalf, type BlockParams, type Linear, type LinearRole } from "../model/block.ts";
import { expectedTensors, type LlamaConfig } from "../model/config.ts";
import { destroyBlock, loadBlock, type BlockWeights, type WeightSource } from "../model/llama.ts";
import { ropeInvFreq } from "../model/rope.ts";
import { gramDot, sqErr, sqErrParts } from "../quant/awq_loss.ts";
import { applyClip, clipSearch, colScaleWords, fakeQuantize, type FakeQuantSpec } from "../quant/fake_quant.ts";
import type { PrepareArgs, QuantMethod } from "./method.ts";

export interface AwqOptions {
  bits: number;
  groupSize: number;
  sym: boolean;
  /** Ratios tried: α = i / grid, i = 0 … grid−1 (default 20). */
  grid?: number;
  duo?: boolean;
  clip?: boolean;
  /** Tokens sampled for the clip search (default 512). */
  clipTokens?: number;
  /** Calibration tokens (n·L, u32) and the sequence length L. */
  tokens: Uint32Array;
  seqLen: number;
  /** Sequences per chunk (default: as many as keep a chunk's widest activation in one binding). */
  chunkSeqs?: number;
  /**
   * Scoring of groups whose loss is one linear layer's output (down; v → o without GQA): "gram"
   * from G = XᵀX (N·K² work per candidate), "rerun" re-running the layer over every token (T·N·K),
   * or "auto" (default): gram when K ≤ T and G fits one binding. Both give the same loss.
   */
  singleLinearLoss?: "auto" | "gram" | "rerun";
  /** Progress over the whole run: steps done / total, and what is being done. */
  onProgress?: (done: number, total: number, detail: string) => void;
  /** Save each completed block here, and continue from the blocks an interrupted run saved. */
  state?: AwqState;
}

/**
 * Resumable progress of AWQ, in a folder (the `state/` of the partial output). After each block:
 * `awq-block-<l>.safetensors` (the block's transformed f32 tensors), `awq-x-<l+1>.bin` (the next
 * block's input activations, f32 [tokens, hidden], the only one kept), then `awq.json` (the
 * settings, the completed block count and the block reports), each written atomically; awq.json
 * is written last, so it only ever names complete files.
 */
export interface AwqState {
  /** The progress folder (created on the first save). */
  dir: string;
  /** The folder holds the progress of an interrupted run: continue from it when it matches. */
  resumed: boolean;
  /** More settings the saved progress must match (e.g. the model's path), by name. */
  identity?: Record<string, string | number | boolean>;
  /** Notices (continuing from block l, nothing usable saved); default stderr. */
  log?: (line: string) => void;
}

export interface AwqGroupReport {
  group: string;
  alpha: number;
  loss_rtn: number;
  loss_best: number;
}

export interface AwqBlockReport {
  layer: number;
  groups: AwqGroupReport[];
  clip: { linear: string; loss_before: number; loss_after: number }[];
  seconds: number;
}

type Read = (name: string) => Promise<Float32Array>;

/** The chunks of whole sequences the calibration tokens are processed in. */
interface Chunk {
  first: number;
  n: number;
}

/** What AWQ carries from block to block, on the GPU. */
interface AwqRun {
  config: LlamaConfig;
  chunks: Chunk[];
  /** The current block's input activations, chunk by chunk (f32 [n·L, H] each). */
  X: GpuTensor[];
  invFreq: GpuTensor;
  /** Blocks an interrupted run completed (their transformed tensors are in the saved progress). */
  start: number;
  state: StateOf | null;
  progress: Progress;
}

interface Progress {
  done: number;
  total: number;
  tick(detail: string): void;
}

/** AWQ as a method of quantizeModel: its options, plus where to keep resumable progress. */
export interface AwqMethodOptions extends AwqOptions {
  /**
   * Save each completed block in the output's state/ folder (unless `state` names another folder)
   * and continue from it on --resume; `identity` holds more settings the progress must match.
   */
  resumable?: { identity?: Record<string, string | number | boolean> };
}

/**
 * AWQ, one block at a time: prepare() embeds the calibration tokens on the GPU (or reads the saved
 * input of the first block still to do); transformBlock() scales and clips the block's f32 weights
 * in place on the GPU and computes the next block's input. Blocks an interrupted run completed get
 * their saved tensors back instead.
 */
export class AwqMethod implements QuantMethod {
  readonly name = "awq";
  /** What each block chose, in block order (including the blocks resumed). */
  readonly blocks: AwqBlockReport[] = [];
  #run: AwqRun | null = null;

  constructor(readonly opts: AwqMethodOptions) {}

  async prepare(ctx: GpuContext, args: PrepareArgs): Promise<void> {
    const { opts } = this;
    let state = opts.state;
    if (!state && opts.resumable) {
      if (args.resume && !args.out.resumed) args.log(`--resume: no saved progress of an earlier run into ${args.out.dest}; AWQ starts from block 0`);
      state = { dir: path.join(args.out.tmp, STATE_DIR), resumed: args.out.resumed, identity: opts.resumable.identity, log: args.log };
    }
    await this.start(ctx, args.config, args.read, state);
  }

  /** Sets up the run: the first block's input on the GPU, and the progress an interrupted run saved. */
  async start(ctx: GpuContext, c: LlamaConfig, read: Read, savedState?: AwqState): Promise<void> {
    const { gpu } = ctx;
    const { opts } = this;
    const L = opts.seqLen;
    const nSeq = opts.tokens.length / L;
    if (!Number.isInteger(nSeq) || nSeq < 1) throw new UsageError(`calibration tokens (${opts.tokens.length}) are not whole sequences of ${L}`);
    const H = c.hiddenSize, I = c.intermediateSize;
    const widest = Math.max(H, I, c.numHeads * c.headDim) * 4 * L;
    const per = Math.max(1, Math.min(nSeq, opts.chunkSeqs ?? Math.floor(gpu.limits.maxStorageBufferBindingSize / widest)));
    const chunks: Chunk[] = [];
    for (let s = 0; s < nSeq; s += per) chunks.push({ first: s, n: Math.min(per, nSeq - s) });

    const groupsPerBlock = 3 + (c.numHeads === c.numKvHeads ? 1 : 0);
    const stepsPerBlock = 1 + groupsPerBlock * (opts.grid ?? 20) + (opts.clip === false ? 0 : 5);
    const progress: Progress = { done: 0, total: stepsPerBlock * c.numLayers, tick(detail: string) { this.done++; opts.onProgress?.(this.done, this.total, detail); } };
    const embed = await read("model.embed_tokens.weight");
    const state = savedState ? { ...savedState, settings: awqSettings(c, embed, opts, nSeq) } : null;
    this.blocks.length = 0;
    // Blocks an interrupted run completed: their reports, and the next block's input.
    const start = state?.resumed ? await loadAwqProgress(state, c, nSeq * L * H, this.blocks) : 0;
    if (start > 0) {
      progress.done = start * stepsPerBlock;
      opts.onProgress?.(progress.done, progress.total, `block ${start - 1}: resumed`);
    }
    // Block inputs, chunk by chunk: the embeddings of the calibration tokens (or the saved input).
    let X: GpuTensor[] = [];
    if (start > 0) {
      if (start < c.numLayers) X = await loadAwqInput(gpu, state!.dir, start, chunks.map((ch) => [ch.n * L, H]));
    } else {
      const E = GpuTensor.fromHost(gpu, embed, [c.vocabSize, H], "f32", "awq.embed");
      const b = new CommandBatch(gpu, "awq.embed");
      for (const ch of chunks) {
        const ids = GpuTensor.fromHost(gpu, opts.tokens.subarray(ch.first * L, (ch.first + ch.n) * L), [ch.n * L], "u32", "awq.ids");
        const x = GpuTensor.empty(gpu, [ch.n * L, H], "f32", "awq.x");
        await embedding(ctx, b, ids, E, x);
        b.own(ids);
        X.push(x);
      }
      b.submit();
      E.destroy();
    }
    const invFreq = GpuTensor.fromHost(gpu, ropeInvFreq(c), [c.headDim / 2], "f32", "awq.inv_freq");
    this.#run = { config: c, chunks, X, invFreq, start, state, progress };
  }

  async transformBlock(ctx: GpuContext, l: number, block: BlockWeights): Promise<void> {
    const run = this.#run;
    if (!run) throw new UsageError("AwqMethod.transformBlock before prepare()");
    if (l < run.start) {
      await restoreAwqBlock(run.state!.dir, l, block);
      return;
    }
    const t0 = performance.now();
    const { report, next } = await awqBlock(ctx, run.config, block, l, run.X, run.chunks, run.invFreq, this.opts, run.progress);
    for (const x of run.X) x.destroy();
    run.X = next;
    report.seconds = (performance.now() - t0) / 1000;
    this.blocks.push(report);
    if (run.state) await saveAwqProgress(run.state, run.config, l, await awqBlockTensors(block), this.blocks, run.X);
  }

  report(): Record<string, unknown> {
    return { awq: this.blocks };
  }

  dispose(): void {
    const run = this.#run;
    if (!run) return;
    for (const x of run.X) x.destroy();
    run.invFreq.destroy();
    this.#run = null;
  }
}

/** The tensors AWQ rewrites in a block (its linears' weights and its two norms), read back, by name. */
async function awqBlockTensors(block: BlockWeights): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const r of LINEARS) {
    const li = block.lin[r];
    if (li.kind !== "dense") throw new UsageError(`AWQ needs the f32 weight of ${li.name}`);
    out.set(`${li.name}.weight`, (await li.w.toHost()) as Float32Array);
  }
  out.set(block.inputNorm.label, (await block.inputNorm.toHost()) as Float32Array);
  out.set(block.postNorm.label, (await block.postNorm.toHost()) as Float32Array);
  return out;
}

/**
 * Runs AWQ over every block and returns the transformed f32 weights by HF name (every block's
 * linears and norms, on the host), and the report. For callers that need the whole model on the
 * host (QAT's starting point); quantizeModel streams AwqMethod block by block instead.
 */
export async function awqTransform(ctx: GpuContext, c: LlamaConfig, read: Read, opts: AwqOptions): Promise<{ weights: Map<string, Float32Array>; blocks: AwqBlockReport[] }> {
  const method = new AwqMethod(opts);
  const weights = new Map<string, Float32Array>();
  const names = new Set(expectedTensors(c).filter((t) => !t.optional).map((t) => t.name));
  const source: WeightSource = { has: (n) => names.has(n), readF32: read };
  try {
    await method.start(ctx, c, read, opts.state);
    for (let l = 0; l < c.numLayers; l++) {
      const block = await loadBlock(ctx, c, source, l, "f32");
      try {
        await method.transformBlock(ctx, l, block);
        for (const [name, data] of await awqBlockTensors(block)) weights.set(name, data);
      } finally {
        destroyBlock(block);
      }
    }
  } finally {
    method.dispose();
  }
  return { weights, blocks: method.blocks };
}

// --- resumable progress ----------------------------------------------------------------------

const PROGRESS_FORMAT = "webgpu-quant.awq-progress";
const PROGRESS_VERSION = 1;
const MANIFEST = "awq.json";
const blockFile = (l: number) => `awq-block-${l}.safetensors`;
const inputFile = (l: number) => `awq-x-${l}.bin`;

interface AwqManifest {
  format: typeof PROGRESS_FORMAT;
  version: number;
  settings: Record<string, unknown>;
  /** Blocks completed: 0 … completed−1 are saved, and the input of block `completed` (if any). */
  completed: number;
  blocks: AwqBlockReport[];
}

/** Names of the settings, for the message that refuses to resume under other settings. */
const SETTING_LABELS: Record<string, string> = {
  model: "model (--model)", config: "model config (config.json)", embed: "model weights (model.embed_tokens)", layers: "layer count",
  bits: "--bits", groupSize: "--group-size", sym: "--sym", duo: "--duo", clip: "clip search (--no-clip)", clipTokens: "--clip-tokens",
  grid: "scale grid", singleLinearLoss: "single-linear loss", samples: "--samples", seqLen: "--seq-len",
  tokens: "calibration tokens (--calib, --seed)",
};

const sha256 = (a: ArrayBufferView | string) =>
  createHash("sha256").update(typeof a === "string" ? a : new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest("hex");

/** Everything the result depends on, besides the device: a resume must match all of it. */
function awqSettings(c: LlamaConfig, embed: Float32Array, opts: AwqOptions, nSeq: number): Record<string, unknown> {
  return {
    ...opts.state?.identity,
    bits: opts.bits, groupSize: opts.groupSize, sym: opts.sym, duo: !!opts.duo, clip: opts.clip !== false, clipTokens: opts.clipTokens ?? 512,
    grid: opts.grid ?? 20, singleLinearLoss: opts.singleLinearLoss ?? "auto", samples: nSeq, seqLen: opts.seqLen,
    tokens: sha256(opts.tokens), layers: c.numLayers, config: sha256(JSON.stringify(c)), embed: sha256(embed),
  };
}

type StateOf = AwqState & { settings: Record<string, unknown> };
const logOf = (s: AwqState) => s.log ?? ((l: string) => process.stderr.write(`${l}\n`));

/** Saves block l (its tensors, the next block's input X, the reports so far), awq.json last. */
async function saveAwqProgress(state: StateOf, c: LlamaConfig, l: number, tensors: Map<string, Float32Array>, blocks: AwqBlockReport[], X: GpuTensor[]): Promise<void> {
  await fsp.mkdir(state.dir, { recursive: true });
  await writeSafetensors(path.join(state.dir, blockFile(l)), [...tensors].map(([name, data]) => ({ name, dtype: "F32" as const, shape: [data.length], data })));
  if (l + 1 < c.numLayers) {
    await writeFileAtomic(path.join(state.dir, inputFile(l + 1)), async (write) => {
      for (const x of X) {
        const h = (await x.toHost()) as Float32Array; // one chunk on the host at a time
        await write(new Uint8Array(h.buffer, h.byteOffset, h.byteLength));
      }
    });
  }
  const m: AwqManifest = { format: PROGRESS_FORMAT, version: PROGRESS_VERSION, settings: state.settings, completed: l + 1, blocks };
  await writeFileAtomic(path.join(state.dir, MANIFEST), JSON.stringify(m, null, 1) + "\n");
  await fsp.rm(path.join(state.dir, inputFile(l)), { force: true });
}

/**
 * Reads the progress of an interrupted run: fills `blocks` with the completed blocks' reports and
 * returns their count, or 0 (said on the log) when nothing usable was saved. Progress saved under
 * other settings is refused (UsageError naming the setting).
 */
async function loadAwqProgress(state: StateOf, c: LlamaConfig, inputWords: number, blocks: AwqBlockReport[]): Promise<number> {
  const log = logOf(state);
  await removeStaleTemps(state.dir);
  const fromZero = async (why: string) => {
    log(`--resume: ${why}; AWQ starts from block 0`);
    for (const n of await fsp.readdir(state.dir).catch(() => [] as string[])) if (n.startsWith("awq")) await fsp.rm(path.join(state.dir, n), { force: true });
    blocks.length = 0;
    return 0;
  };
  let m: AwqManifest;
  try {
    m = JSON.parse(await fsp.readFile(path.join(state.dir, MANIFEST), "utf8")) as AwqManifest;
  } catch (e) {
    return fromZero((e as NodeJS.ErrnoException).code === "ENOENT" ? "no AWQ block was completed before the interruption" : `${MANIFEST} is unreadable`);
  }
  if (m?.format !== PROGRESS_FORMAT || m.version !== PROGRESS_VERSION || typeof m.settings !== "object" || m.settings === null) return fromZero(`${MANIFEST} is not AWQ progress of this version`);
  checkResumeSettings(state.dir, m.settings, state.settings, SETTING_LABELS);
  const n = m.completed;
  if (!Number.isInteger(n) || n < 1 || n > c.numLayers || !Array.isArray(m.blocks) || m.blocks.length !== n) return fromZero(`${MANIFEST} is inconsistent`);
  if (n < c.numLayers) {
    const st = await fsp.stat(path.join(state.dir, inputFile(n))).catch(() => null);
    if (st?.size !== inputWords * 4) return fromZero(`${inputFile(n)} is missing or has the wrong size`);
  }
  // the saved blocks are read when their turn comes: here only checked to be readable and whole
  try {
    for (let l = 0; l < n; l++) {
      const ck = await SafetensorsCheckpoint.open(path.join(state.dir, blockFile(l)));
      try {
        if (ck.names().length !== AWQ_TENSORS_PER_BLOCK) throw new Error("incomplete");
      } finally {
        await ck.close();
      }
    }
  } catch {
    return fromZero(`a saved block (${state.dir}/awq-block-*.safetensors) is unreadable`);
  }
  blocks.push(...m.blocks);
  log(`--resume: ${n} of ${c.numLayers} AWQ blocks were completed before the interruption; continuing${n < c.numLayers ? ` from block ${n}` : ""}`);
  return n;
}

/** Tensors saved per block: seven linear weights and two norms. */
const AWQ_TENSORS_PER_BLOCK = 9;

/** Writes the saved tensors of completed block l into its tensors on the GPU. */
async function restoreAwqBlock(dir: string, l: number, block: BlockWeights): Promise<void> {
  const onGpu = new Map<string, GpuTensor>([[block.inputNorm.label, block.inputNorm], [block.postNorm.label, block.postNorm]]);
  for (const li of Object.values(block.lin)) if (li.kind === "dense") onGpu.set(`${li.name}.weight`, li.w);
  const file = path.join(dir, blockFile(l));
  const ck = await SafetensorsCheckpoint.open(file);
  try {
    for (const name of ck.names()) {
      const t = onGpu.get(name);
      const data = (await ck.read(name, "f32")).data as Float32Array;
      if (!t || data.length !== t.numel) throw new InputError(file, name, "does not match the model's block", "rerun without --resume to start over");
      t.write(data);
    }
  } finally {
    await ck.close();
  }
}

/** The saved input of block l, uploaded chunk by chunk (f32 [M, H] each). */
async function loadAwqInput(gpu: GpuContext["gpu"], dir: string, l: number, shapes: [number, number][]): Promise<GpuTensor[]> {
  const file = path.join(dir, inputFile(l));
  const fh = await fsp.open(file, "r");
  const X: GpuTensor[] = [];
  try {
    let pos = 0;
    for (const [M, H] of shapes) {
      const h = new Float32Array(M * H);
      const bytes = new Uint8Array(h.buffer);
      for (let off = 0; off < bytes.length;) {
        const { bytesRead } = await fh.read(bytes, off, Math.min(bytes.length - off, 1 << 26), pos + off);
        if (bytesRead === 0) throw new InputError(file, undefined, "ended early", "rerun without --resume to start over");
        off += bytesRead;
      }
      pos += bytes.length;
      X.push(GpuTensor.fromHost(gpu, h, [M, H], "f32", "awq.x"));
    }
  } catch (e) {
    for (const x of X) x.destroy();
    throw e;
  } finally {
    await fh.close();
  }
  return X;
}

// ---------------------------------------------------------------------------------------------

// --- one block ---------------------------------------------------------------------------------
//
// awqBlock runs the steps below over an explicit record of what the block carries (AwqBlock):
//   captureBlockInputs  the fp pass: every chunk's activations, their statistics, the next input
//   searchScales        one group: the best s over the grid, by the output error of its module
//   foldScales          1/s into the previous op (and the captured inputs), s into the linears
//   searchClip          per (row, group) clip ranges of v, o, gate, up, down, applied in place

/** Scale candidates recorded per submit in the search (one wait and one readback each). */
const CANDIDATES_PER_SUBMIT = 5;

/** A linear of the block under AWQ: its f32 weight (rewritten in place) and, in the transposed layout, Wᵀ kept in step with it. */
interface AwqLinear {
  name: string;
  w: GpuTensor;
  wT: GpuTensor | null;
  bias: GpuTensor | null;
}

/** The fp pass's activations of one chunk of calibration sequences (T tokens), kept for the searches. */
interface ChunkActivations {
  T: number;
  xn1: GpuTensor;
  att: GpuTensor;
  attnOut: GpuTensor;
  xn2: GpuTensor;
  h: GpuTensor;
  mlpOut: GpuTensor;
  /** The block output: the next block's input. */
  next: GpuTensor;
}

/** The inputs of the scale groups: input_layernorm's output, the attention output, post_attention_layernorm's output, SwiGLU's output. */
type GroupInput = "xn1" | "att" | "xn2" | "h";

/** Everything AWQ carries through one block. */
interface AwqBlock {
  ctx: GpuContext;
  c: LlamaConfig;
  l: number;
  opts: AwqOptions;
  spec: FakeQuantSpec;
  /** The layout the block's linears are multiplied in (model/block.ts linearLayout). */
  layout: "nk" | "kn";
  invFreq: GpuTensor;
  inputNorm: GpuTensor;
  postNorm: GpuTensor;
  lin: Record<LinearRole, AwqLinear>;
  acts: ChunkActivations[];
  /** Per-channel statistics of each group input over every token (nn/reduce.ts reduceStats). */
  stats: Record<GroupInput, GpuTensor>;
  /** Tokens over every chunk, and in the largest chunk. */
  T: number;
  maxT: number;
  /** Buffers of one module run for maxT tokens, shared by every run. */
  work: { q: GpuTensor; k: GpuTensor; v: GpuTensor; g: GpuTensor; u: GpuTensor; att: GpuTensor; h: GpuTensor; out: GpuTensor };
  /** Loss partial sums: one slot per candidate of a submit (see lossSlots). */
  loss: { partial: GpuTensor; slotWords: number; parts: number[]; offsets: number[] };
  report: AwqBlockReport;
  progress: { tick(detail: string): void };
  /** Freed when the block is done. */
  owned: GpuTensor[];
}

/** A scale group: the op before it, the linears that share its input, and the module whose output scores it. */
interface ScaleGroup {
  name: string;
  input: GroupInput;
  /** The previous op, which takes 1/s: a norm's weight (cols), or a linear's rows. */
  prev: { norm: "inputNorm" | "postNorm" } | { rows: LinearRole };
  lins: LinearRole[];
  /** Scored on: the attention half, the MLP half, or the one linear alone. */
  module: "attention" | "mlp" | "linear";
  target: "attnOut" | "mlpOut";
}

/** The groups in search order (llm-awq's). v -> o needs v's rows to line up with o's inputs (no GQA). */
function scaleGroups(c: LlamaConfig, lin: Record<LinearRole, AwqLinear>): ScaleGroup[] {
  const out: ScaleGroup[] = [{ name: "qkv", input: "xn1", prev: { norm: "inputNorm" }, lins: ["q_proj", "k_proj", "v_proj"], module: "attention", target: "attnOut" }];
  if (c.numHeads === c.numKvHeads && !lin.v_proj.bias) out.push({ name: "v_o", input: "att", prev: { rows: "v_proj" }, lins: ["o_proj"], module: "linear", target: "attnOut" });
  out.push({ name: "gate_up", input: "xn2", prev: { norm: "postNorm" }, lins: ["gate_proj", "up_proj"], module: "mlp", target: "mlpOut" });
  if (!lin.up_proj.bias) out.push({ name: "down", input: "h", prev: { rows: "up_proj" }, lins: ["down_proj"], module: "linear", target: "mlpOut" });
  return out;
}

async function awqBlock(
  ctx: GpuContext, c: LlamaConfig, block: BlockWeights, l: number, X: GpuTensor[], chunks: Chunk[],
  invFreq: GpuTensor, opts: AwqOptions, progress: { tick(detail: string): void },
): Promise<{ report: AwqBlockReport; next: GpuTensor[] }> {
  const blk = await openAwqBlock(ctx, c, block, l, chunks, invFreq, opts, progress);
  try {
    await captureBlockInputs(blk, X);
    for (const group of scaleGroups(c, blk.lin)) {
      const gram = group.module === "linear" && gramPays(blk, blk.stats[group.input].shape[0]) ? await gramOf(blk, group.input) : null;
      const s = await searchScales(blk, group, gram);
      gram?.destroy();
      await foldScales(blk, group, s);
    }
    if (opts.clip !== false) await searchClip(blk);
    return { report: blk.report, next: blk.acts.map((a) => a.next) };
  } catch (e) {
    for (const a of blk.acts) a.next.destroy();
    throw e;
  } finally {
    for (const t of blk.owned) t.destroy();
  }
}

/** The record of block l: its linears (Wᵀ copies allocated in the transposed layout), activation, statistic and loss buffers. */
async function openAwqBlock(
  ctx: GpuContext, c: LlamaConfig, block: BlockWeights, l: number, chunks: Chunk[],
  invFreq: GpuTensor, opts: AwqOptions, progress: { tick(detail: string): void },
): Promise<AwqBlock> {
  const { gpu } = ctx;
  const L = opts.seqLen;
  const H = c.hiddenSize, I = c.intermediateSize, qw = c.numHeads * c.headDim, kvw = c.numKvHeads * c.headDim;
  const owned: GpuTensor[] = [];
  const alloc = (shape: number[], label: string) => {
    const t = GpuTensor.empty(gpu, shape, "f32", `awq.${l}.${label}`);
    owned.push(t);
    return t;
  };
  const maxT = Math.max(...chunks.map((ch) => ch.n * L));
  // CPU adapters: the transposed-weight GEMM is several times faster; every module then reads Wᵀ.
  const layout = linearLayout(gpu, c, maxT);
  const lin = {} as Record<LinearRole, AwqLinear>;
  for (const role of LINEARS) {
    const li = block.lin[role];
    if (li.kind !== "dense" || li.w.dtype !== "f32") throw new UsageError(`AWQ needs the f32 weight of ${li.name}`);
    const [N, K] = li.w.shape;
    const wT = layout === "kn" ? GpuTensor.empty(gpu, [K, N], "f32", `${li.name}.weight_t`) : null;
    if (wT) owned.push(wT);
    lin[role] = { name: li.name, w: li.w, wT, bias: li.bias };
  }
  const acts = chunks.map((ch): ChunkActivations => {
    const T = ch.n * L;
    return {
      T, xn1: alloc([T, H], "xn1"), att: alloc([T, qw], "att"), attnOut: alloc([T, H], "attn_out"), xn2: alloc([T, H], "xn2"),
      h: alloc([T, I], "h"), mlpOut: alloc([T, H], "mlp_out"), next: GpuTensor.empty(gpu, [T, H], "f32", `awq.${l}.next`),
    };
  });
  const stats = { xn1: alloc([H, 4], "s.xn1"), att: alloc([qw, 4], "s.att"), xn2: alloc([H, 4], "s.xn2"), h: alloc([I, 4], "s.h") };
  const work = {
    q: alloc([maxT, qw], "q"), k: alloc([maxT, kvw], "k"), v: alloc([maxT, kvw], "v"), g: alloc([maxT, I], "g"), u: alloc([maxT, I], "u"),
    out: alloc([maxT, H], "out"), att: alloc([maxT, qw], "att2"), h: alloc([maxT, I], "h2"),
  };
  // Partial sums of the squared output errors (summed on the host in float64): one slot per
  // candidate of a submit, each chunk's range starting on a binding-aligned word; a slot also
  // holds one linear's N·K partial sums (gramDot).
  const parts = acts.map((a) => sqErrParts(a.T * H));
  const offsets = parts.map((_, i) => parts.slice(0, i).reduce((x, y) => x + align(y), 0));
  const slotWords = align(Math.max(offsets[acts.length - 1] + parts[acts.length - 1], qw * H, I * H, H * I));
  const partial = alloc([CANDIDATES_PER_SUBMIT * slotWords], "loss.partial");
  return {
    ctx, c, l, opts, spec: { bits: opts.bits, G: opts.groupSize, sym: opts.sym }, layout, invFreq,
    inputNorm: block.inputNorm, postNorm: block.postNorm, lin, acts, stats, T: acts.reduce((s, a) => s + a.T, 0), maxT, work,
    loss: { partial, slotWords, parts, offsets }, report: { layer: l, groups: [], clip: [], seconds: 0 }, progress, owned,
  };
}

/** Words rounded up to a binding offset (64 words = 256 bytes). */
const align = (n: number) => Math.ceil(n / 64) * 64;

/** Records `f` into a batch of its own and submits it. */
async function submit(blk: AwqBlock, label: string, f: (b: CommandBatch) => Promise<void>): Promise<void> {
  const b = new CommandBatch(blk.ctx.gpu, `awq.${blk.l}.${label}`);
  await f(b);
  b.submit();
}

/** A linear of the block at its current weights, in the block's layout. */
function fpLinear(blk: AwqBlock, role: LinearRole): Linear {
  const li = blk.lin[role];
  return layoutLinear(blk.layout, li.name, li.wT ?? li.w, li.bias);
}

/** The block's linears at their current weights, with `replaced` ones instead (candidate weights). */
function blockLinears(blk: AwqBlock, replaced: Partial<Record<LinearRole, Linear>> = {}): Record<LinearRole, Linear> {
  const out = {} as Record<LinearRole, Linear>;
  for (const role of LINEARS) out[role] = replaced[role] ?? fpLinear(blk, role);
  return out;
}

/** Records Wᵀ := transpose(W) for the linears that keep a transposed copy. */
async function syncTransposed(blk: AwqBlock, b: CommandBatch, roles: readonly LinearRole[]): Promise<void> {
  for (const role of roles) {
    const li = blk.lin[role];
    if (li.wT) await transpose(blk.ctx, b, li.w, li.wT);
  }
}

/** A (T, width) view of a work buffer for a chunk of T tokens. */
const rows = (t: GpuTensor, T: number) => t.view(t.label, [T, t.shape[1]], 0);

/**
 * The fp pass, chunk by chunk: the block forward on X keeping every group's input, the fp outputs
 * of both halves and the block output (the next block's input, as llm-awq), plus the statistics
 * of the group inputs.
 */
async function captureBlockInputs(blk: AwqBlock, X: GpuTensor[]): Promise<void> {
  const { ctx, c, work } = blk;
  const params: BlockParams = { inputNorm: blk.inputNorm, postNorm: blk.postNorm, lin: blockLinears(blk) };
  for (let i = 0; i < blk.acts.length; i++) {
    const a = blk.acts[i];
    await submit(blk, "fp", async (b) => {
      if (i === 0) await syncTransposed(blk, b, LINEARS);
      await blockForward(ctx, b, c, params, {
        x: X[i], xn1: a.xn1, q: rows(work.q, a.T), k: rows(work.k, a.T), v: rows(work.v, a.T), att: a.att, attnOut: a.attnOut, mid: a.next,
        xn2: a.xn2, g: rows(work.g, a.T), u: rows(work.u, a.T), h: a.h, mlpOut: a.mlpOut, out: a.next,
      }, { invFreq: blk.invFreq, pos0: 0, seq: blk.opts.seqLen });
      for (const key of ["xn1", "att", "xn2", "h"] as const) await reduceStats(ctx, b, a[key], "cols", blk.stats[key], true);
    });
  }
  blk.progress.tick(`block ${blk.l}: fp pass`);
}

/** mean |x| per channel of a group input over every token. */
async function meanAbs(blk: AwqBlock, input: GroupInput): Promise<Float32Array> {
  const s = (await blk.stats[input].toHost()) as Float32Array;
  return Float32Array.from({ length: s.length / 4 }, (_, i) => s[i * 4 + 1] / blk.T);
}

/**
 * Whether a one-linear group is scored from G = XᵀX over every token: it pays when the layer's
 * input width K is at most the token count (N·K² vs T·N·K per candidate) and G fits one binding.
 */
function gramPays(blk: AwqBlock, K: number): boolean {
  const mode = blk.opts.singleLinearLoss ?? "auto";
  if (mode !== "auto") return mode === "gram";
  return K <= blk.T && K * K * 4 <= blk.ctx.gpu.limits.maxStorageBufferBindingSize;
}

/** G = XᵀX (K, K) of a group input over every calibration token. */
async function gramOf(blk: AwqBlock, input: GroupInput): Promise<GpuTensor> {
  const { ctx } = blk;
  const { gpu } = ctx;
  const K = blk.stats[input].shape[0];
  const G = GpuTensor.empty(gpu, [K, K], "f32", `awq.${blk.l}.gram`);
  const g1 = GpuTensor.empty(gpu, [K, K], "f32", `awq.${blk.l}.gram.part`);
  try {
    for (let i = 0; i < blk.acts.length; i++) {
      const a = blk.acts[i];
      const x = a[input];
      await submit(blk, "gram", async (b) => {
        const xT = GpuTensor.empty(gpu, [K, a.T], "f32", "gram.xT");
        b.own(xT);
        await transpose(ctx, b, x, xT);
        const dst = i === 0 ? G : g1;
        if (blk.layout === "kn" && matmulWtPreferred(gpu, K, K, a.T)) await matmulWt(ctx, b, xT, x, dst);
        else await matmul(ctx, b, xT, xT, dst);
        if (i > 0) await addInPlace(ctx, b, G, g1);
      });
    }
  } catch (e) {
    G.destroy();
    throw e;
  } finally {
    g1.destroy();
  }
  return G;
}

/**
 * One group's scale search: for α = i / grid, s = awqScales(mean|x|, α), the group's linears
 * W·diag(s) are fake-quantized then ·diag(1/s), the module re-run on every chunk (or, for one
 * linear with `gram`, its error taken from G), and the mean squared error against the fp output
 * kept; returns the s of the smallest error (α = 0 is RTN).
 */
async function searchScales(blk: AwqBlock, group: ScaleGroup, gram: GpuTensor | null): Promise<Float32Array> {
  const { ctx, c, opts, l, loss, work } = blk;
  const H = c.hiddenSize;
  const grid = opts.grid ?? 20;
  const x = await meanAbs(blk, group.input);
  const K = x.length;
  const lins = group.lins.map((r) => blk.lin[r]);
  const wMean = opts.duo ? duoWeightMean(await Promise.all(lins.map(async (li) => (await li.w.toHost()) as Float32Array)), K, Math.min(opts.groupSize, K)) : null;
  // the candidates' fake-quantized weights, in the block's layout
  const fq = lins.map((li) => GpuTensor.empty(ctx.gpu, blk.layout === "kn" ? [li.w.shape[1], li.w.shape[0]] : (li.w.shape as number[]), "f32", `awq.${l}.fq.${li.name}`));
  const sStride = align(2 * K);
  const sT = GpuTensor.empty(ctx.gpu, [CANDIDATES_PER_SUBMIT * sStride], "f32", `awq.${l}.s`);
  const losses: number[] = [];
  const cands: Float32Array[] = [];
  for (let i = 0; i < grid; i++) cands.push(awqScales(x, i / grid, wMean));
  const candidate: Partial<Record<LinearRole, Linear>> = {};
  group.lins.forEach((r, i) => (candidate[r] = layoutLinear(blk.layout, lins[i].name, fq[i], lins[i].bias)));
  const linsOf = blockLinears(blk, candidate);
  try {
    // Several candidates per submit: one wait and one readback for all of them.
    for (let i0 = 0; i0 < grid; i0 += CANDIDATES_PER_SUBMIT) {
      const n = Math.min(CANDIDATES_PER_SUBMIT, grid - i0);
      const words = new Float32Array(n * sStride);
      for (let j = 0; j < n; j++) words.set(colScaleWords(cands[i0 + j]), j * sStride);
      sT.write(words);
      const ranges: [number, number][] = []; // per candidate slot: [first, count] of each range, in summation order
      await submit(blk, `search.${group.name}.${i0}`, async (b) => {
        for (let j = 0; j < n; j++) {
          const colScale = sT.view("s", [2 * K], j * sStride * 4);
          for (let i = 0; i < lins.length; i++) await fakeQuantize(ctx, b, lins[i].w, fq[i], blk.spec, { colScale, transposed: blk.layout === "kn" });
          const slot = j * loss.slotWords;
          if (gram) {
            // one linear layer: its output error over all tokens from G, without re-running it
            const [N] = lins[0].w.shape;
            await gramDot(ctx, b, fq[0], lins[0].wT ?? lins[0].w, gram, loss.partial.view("loss.partial", [N * K], slot * 4), { N, K, transposed: blk.layout === "kn" });
            ranges.push([slot, N * K]);
            continue;
          }
          for (let ci = 0; ci < blk.acts.length; ci++) {
            const a = blk.acts[ci];
            const out = rows(work.out, a.T);
            if (group.module === "attention") {
              await attentionHalf(ctx, b, c, linsOf, { xn1: a.xn1, q: rows(work.q, a.T), k: rows(work.k, a.T), v: rows(work.v, a.T), att: rows(work.att, a.T), attnOut: out }, { invFreq: blk.invFreq, pos0: 0, seq: opts.seqLen });
            } else if (group.module === "mlp") {
              await mlpHalf(ctx, b, linsOf, { xn2: a.xn2, g: rows(work.g, a.T), u: rows(work.u, a.T), h: rows(work.h, a.T), mlpOut: out }, {});
            } else {
              await linear(ctx, b, a[group.input], linsOf[group.lins[0]], out);
            }
            await sqErr(ctx, b, out, a[group.target], loss.partial.view("loss.partial", [loss.parts[ci]], (slot + loss.offsets[ci]) * 4));
            ranges.push([slot + loss.offsets[ci], loss.parts[ci]]);
          }
        }
      });
      const p = (await loss.partial.toHost()) as Float32Array;
      const per = ranges.length / n;
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (const [first, count] of ranges.slice(j * per, (j + 1) * per)) sum += sumPartials(p, first, count);
        losses.push(sum / (blk.T * H));
        blk.progress.tick(`block ${l}: scales ${group.name} α=${((i0 + j) / grid).toFixed(2)}`);
      }
    }
  } finally {
    for (const t of [...fq, sT]) t.destroy();
  }
  // a NaN loss never wins a comparison, so it would pass silently: it is an error
  const badLoss = losses.findIndex((v) => !Number.isFinite(v));
  if (badLoss >= 0) {
    throw new NonFiniteError(`AWQ block ${l}, group ${group.name}`,
      `the output error at α = ${(badLoss / grid).toFixed(2)} is ${losses[badLoss]}: the block's activations or weights hold NaN/Inf or overflow f32`);
  }
  let best = 0;
  for (let i = 1; i < grid; i++) if (losses[i] < losses[best]) best = i;
  blk.report.groups.push({ group: group.name, alpha: best / grid, loss_rtn: losses[0], loss_best: losses[best] });
  return cands[best];
}

/**
 * Folds a group's scales: the previous op takes 1/s (a norm's weight, or a linear's rows), the
 * group's linears s (their columns), and the captured group input 1/s, so the fp block is
 * unchanged and later searches see the scaled activations.
 */
async function foldScales(blk: AwqBlock, group: ScaleGroup, s: Float32Array): Promise<void> {
  const { ctx } = blk;
  const inv = Float32Array.from(s, (v) => 1 / v);
  const sT = GpuTensor.fromHost(ctx.gpu, s, [s.length], "f32", "awq.s");
  const iT = GpuTensor.fromHost(ctx.gpu, inv, [s.length], "f32", "awq.inv_s");
  const prevRole = "rows" in group.prev ? group.prev.rows : null;
  await submit(blk, "fold", async (b) => {
    if (prevRole) await scale(ctx, b, blk.lin[prevRole].w, iT, "rows");
    else await scale(ctx, b, blk[(group.prev as { norm: "inputNorm" | "postNorm" }).norm], iT, "cols");
    for (const r of group.lins) await scale(ctx, b, blk.lin[r].w, sT, "cols");
    for (const a of blk.acts) await scale(ctx, b, a[group.input], iT, "cols");
    await syncTransposed(blk, b, prevRole ? [...group.lins, prevRole] : group.lins);
    b.own(sT, iT);
  });
}

/**
 * The clip search on sampled tokens (q and k are skipped, as in AutoAWQ): per (row, group) of
 * v, o, gate, up and down, max|w| shrunk by 1.00 … 0.55 and scored on the group's partial dot
 * products; the weights are clamped to the best range.
 */
async function searchClip(blk: AwqBlock): Promise<void> {
  const { ctx, c, l } = blk;
  const H = c.hiddenSize, I = c.intermediateSize, qw = c.numHeads * c.headDim;
  const want = blk.opts.clipTokens ?? 512;
  const p = `model.layers.${l}.`;
  const sample = (input: GroupInput, K: number) => {
    const step = Math.max(1, Math.floor(blk.T / want));
    const picked: [GpuTensor, number][] = [];
    for (const a of blk.acts) for (let r = 0; r < a.T && picked.length < want; r += step) picked.push([a[input], r]);
    const xs = GpuTensor.empty(ctx.gpu, [picked.length, K], "f32", `awq.${l}.clip.x`);
    blk.owned.push(xs);
    const b = new CommandBatch(ctx.gpu, "awq.sample");
    picked.forEach(([t, r], i) => b.copy(t.view("row", [K], r * K * 4), xs.view("row", [K], i * K * 4)));
    b.submit();
    return xs;
  };
  const xn1s = sample("xn1", H);
  const atts = sample("att", qw);
  const xn2s = sample("xn2", H);
  const hs = sample("h", I);
  for (const [role, xs] of [["v_proj", xn1s], ["o_proj", atts], ["gate_proj", xn2s], ["up_proj", xn2s], ["down_proj", hs]] as [LinearRole, GpuTensor][]) {
    const li = blk.lin[role];
    const r = await clipSearch(ctx, li.w, xs, blk.spec);
    if (!Number.isFinite(r.lossBefore) || !Number.isFinite(r.lossAfter)) {
      r.maxVal.destroy();
      throw new NonFiniteError(`AWQ block ${l}, clip of ${li.name.slice(p.length)}`,
        `the clip search's error is ${r.lossBefore} before and ${r.lossAfter} after clipping: the weights or the sampled activations hold NaN/Inf`);
    }
    await submit(blk, "clip", (b) => applyClip(ctx, b, li.w, r.maxVal, blk.spec));
    r.maxVal.destroy();
    blk.report.clip.push({ linear: li.name.slice(p.length), loss_before: r.lossBefore, loss_after: r.lossAfter });
    blk.progress.tick(`block ${l}: clip ${li.name.slice(p.length)}`);
  }
}

/**
 * mean|x| (K), α -> s = mean|x|^α / sqrt(max s · min s) (AutoAWQ's normalisation); with duo
 * scaling s = mean|x|^α / (w_mean^(1−α) + 1e-4) before normalising.
 */
export function awqScales(meanAbs: Float32Array, alpha: number, wMean: Float32Array | null = null): Float32Array {
  const s = Float32Array.from(meanAbs, (m, k) => Math.max(Math.pow(m, alpha) / (wMean ? Math.pow(wMean[k], 1 - alpha) + 1e-4 : 1), 1e-4));
  let mx = 0, mn = Infinity;
  for (const v of s) {
    mx = Math.max(mx, v);
    mn = Math.min(mn, v);
  }
  const norm = Math.sqrt(mx * mn);
  for (let i = 0; i < s.length; i++) s[i] /= norm;
  return s;
}

/**
 * AutoAWQ's weight statistic for duo scaling: the linears' rows stacked, |w| divided by the max |w|
 * of its (row, group), averaged over rows -> (K).
 */
export function duoWeightMean(ws: Float32Array[], K: number, G: number): Float32Array {
  const out = new Float64Array(K);
  let rows = 0;
  for (const w of ws) {
    const N = w.length / K;
    rows += N;
    for (let n = 0; n < N; n++) {
      for (let k0 = 0; k0 < K; k0 += G) {
        const k1 = Math.min(k0 + G, K);
        let mx = 0;
        for (let k = k0; k < k1; k++) mx = Math.max(mx, Math.abs(w[n * K + k]));
        for (let k = k0; k < k1; k++) out[k] += Math.abs(w[n * K + k]) / (mx + 1e-6);
      }
    }
  }
  return Float32Array.from(out, (v) => v / rows);
}
