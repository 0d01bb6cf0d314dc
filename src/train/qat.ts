// train/qat.ts — quantization-aware training on the GPU: learn the step sizes (and optionally the
// weights) of a fake-quantized Llama with AdamW, then export the packed model.
//
//   e2e:   next-token loss over windows of the training text through the whole model: cross-entropy
//          against the text, or (--loss kd) the KL divergence from the fp model's next-token
//          distribution, as LLM-QAT distils (EfficientQAT's E2E-QP with --trainable scales; LLM-QAT
//          style with --trainable all).
//          A held-out split of the training text scores the model every `evalEvery` steps; the best
//          state is kept and training stops after `patience` evaluations without improvement.
//   block: each block in turn (one on the GPU at a time) learns to reproduce the fp block's
//          output on cached calibration activations (EfficientQAT's Block-AP, MSE loss); the next
//          block is fed the fp block output.
// The result is the trained W, s and z of every linear, which export.ts packs into the same
// format as the quantization core (scales rounded to f16, zero points integers).
//
// With `checkpoint`, progress is saved to a state folder (qat_checkpoint.ts): e2e every `every`
// steps and when training ends (parameters, AdamW moments and step, the draws made, the held-out
// best state and score, patience counter, loss curve); block mode after every block (its trained
// linears and the next block's input). A resumed run restores it and continues bit for bit as if
// it had never stopped.

import { UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import type { LlamaConfig } from "../model/config.ts";
import { embedding } from "../nn/embedding.ts";
import { rng } from "../common/random.ts";
import { adamwStep, clipFactor, gradNorm, learningRate, type AdamWTensors } from "./adamw.ts";
import {
  announce, curveFromSaved, curveToSaved, loadCheckpoint, saveManifest, tokensHash, writeTensors,
  type FileEntry, type LoadedCheckpoint, type QatCheckpoint, type Setting, type TensorSource,
} from "./qat_checkpoint.ts";
import { QatModel, ROLES, type QatSpec, type ReadF32 } from "./qat_model.ts";

export interface QatOptions extends QatSpec {
  mode: "e2e" | "block";
  /** Optimizer steps (e2e: in total; block: per block). */
  steps: number;
  /** Peak learning rate of the step sizes. */
  lr: number;
  /** Peak learning rate of the weights (trainWeights). */
  lrWeights: number;
  /** Sequences per step and their length. */
  batch: number;
  seqLen: number;
  warmup: number;
  schedule: "cosine" | "linear" | "constant";
  /** Gradient-norm clip (0: none). */
  clipNorm: number;
  weightDecay: number;
  seed: number;
  /** e2e: evaluate the held-out split every this many steps (and at the end). */
  evalEvery: number;
  /** e2e: stop after this many evaluations without improvement (0: never). */
  patience: number;
  onStep?: (p: StepInfo) => void;
  /**
   * e2e distillation: the fp model's logits (T, V) for packed sequences of `seq` tokens (valid
   * until the next call). The loss is then KL(fp || model) per token instead of cross-entropy.
   */
  teacher?: (ids: Uint32Array, seq: number) => Promise<GpuTensor>;
  /** Save progress there, and continue from it when `resumed` (see qat_checkpoint.ts). */
  checkpoint?: QatCheckpoint;
}

/**
 * The options a resumed run must share with the interrupted one (by CLI option name): everything
 * that changes the trajectory of training. The data (token hashes) and the caller's settings
 * (model, training text, init) are added by the training functions and the caller.
 */
export function qatSettings(o: QatOptions, layers?: number[]): Record<string, Setting> {
  const s: Record<string, Setting> = {
    "--mode": o.mode, "--bits": o.bits, "--group-size": o.groupSize, "--sym": o.sym,
    "--trainable": o.trainWeights ? "all" : "scales", "--learn-zero": !!o.learnZero && !o.sym,
    "--steps": o.steps, "--lr": o.lr, "--batch": o.batch, [o.mode === "e2e" ? "--seq-len" : "--calib-seq-len"]: o.seqLen,
    "--warmup": o.warmup, "--schedule": o.schedule, "--clip-norm": o.clipNorm, "--seed": o.seed,
  };
  if (o.trainWeights) Object.assign(s, { "--lr-weights": o.lrWeights, "--weight-decay": o.weightDecay });
  if (o.mode === "e2e") Object.assign(s, { "--eval-every": o.evalEvery, "--patience": o.patience, "--loss": o.teacher ? "kd" : "ce" });
  else s["--layers"] = layers ? layers.join(",") : "all";
  return s;
}

export interface StepInfo {
  block: number | null;
  step: number;
  steps: number;
  loss: number;
  lr: number;
  heldOut?: number;
}

export interface CurvePoint {
  block: number | null;
  step: number;
  loss: number;
  held_out?: number;
}

export interface TrainedLinear {
  name: string;
  N: number;
  K: number;
  w: Float32Array;
  s: Float32Array;
  z: Float32Array;
}

export interface QatResult {
  linears: Map<string, TrainedLinear>;
  curve: CurvePoint[];
  /** e2e: held-out loss before training, and the best reached (step). */
  heldOut?: { before: number; best: number; bestStep: number };
  seconds: number;
}

/** Token windows of seqLen + 1 (inputs and next-token targets) cut from a token stream. */
export function tokenWindows(stream: ArrayLike<number>, L: number): Uint32Array[] {
  const out: Uint32Array[] = [];
  for (let i = 0; i + L + 1 <= stream.length; i += L) out.push(Uint32Array.from({ length: L + 1 }, (_, j) => stream[i + j]));
  return out;
}

function batchOf(windows: Uint32Array[], L: number): { ids: Uint32Array; targets: Uint32Array } {
  const ids = new Uint32Array(windows.length * L);
  const targets = new Uint32Array(windows.length * L);
  windows.forEach((w, i) => {
    ids.set(w.subarray(0, L), i * L);
    targets.set(w.subarray(1, L + 1), i * L);
  });
  return { ids, targets };
}

class Optimizer {
  readonly states: (AdamWTensors & { weight: boolean; name: string })[] = [];
  step = 0;
  constructor(readonly ctx: GpuContext, params: { p: GpuTensor; g: GpuTensor; name: string }[]) {
    for (const { p, g, name } of params) {
      const m = GpuTensor.empty(ctx.gpu, [p.numel], "f32", `${name}.adam_m`);
      const v = GpuTensor.empty(ctx.gpu, [p.numel], "f32", `${name}.adam_v`);
      this.states.push({ param: p, grad: g, m, v, weight: name.endsWith(".weight"), name });
    }
  }
  /** The trained tensors and both moments of each, for a checkpoint. */
  tensors(): TensorSource[] {
    return this.states.flatMap((s) => [
      { name: s.name, data: () => host(s.param) },
      { name: `${s.name}.m`, data: () => host(s.m) },
      { name: `${s.name}.v`, data: () => host(s.v) },
    ]);
  }
  /** Restores what tensors() saved, and the step counter. */
  restore(ck: LoadedCheckpoint, role: string, step: number): void {
    for (const s of this.states) {
      s.param.write(ck.tensor(role, s.name));
      s.m.write(ck.tensor(role, `${s.name}.m`));
      s.v.write(ck.tensor(role, `${s.name}.v`));
    }
    this.step = step;
  }
  async update(o: QatOptions, total: number): Promise<number> {
    this.step++;
    const f = (lr: number) => learningRate(this.step, { kind: o.schedule, lr, total, warmup: Math.min(o.warmup, total) });
    const scale = o.clipNorm > 0 ? clipFactor(await gradNorm(this.ctx, this.states.map((s) => s.grad)), o.clipNorm) : 1;
    const b = new CommandBatch(this.ctx.gpu, "qat.adamw");
    for (const s of this.states) {
      await adamwStep(this.ctx, b, s, this.step, { lr: f(s.weight ? o.lrWeights : o.lr), weightDecay: s.weight ? o.weightDecay : 0, gradScale: scale });
    }
    b.submit();
    return f(o.lr);
  }
  destroy(): void {
    for (const s of this.states) {
      s.m.destroy();
      s.v.destroy();
    }
  }
}

async function host(t: GpuTensor): Promise<Float32Array> {
  return (await t.toHost()) as Float32Array;
}

/** The tensors of trained linears for a checkpoint (w only when it is trained). */
function linearTensors(ls: Iterable<TrainedLinear>, withW: boolean): TensorSource[] {
  const out: TensorSource[] = [];
  for (const t of ls) {
    const ng = t.s.length / t.N;
    out.push({ name: `${t.name}.s`, shape: [t.N, ng], data: async () => t.s }, { name: `${t.name}.z`, shape: [t.N, ng], data: async () => t.z });
    if (withW) out.push({ name: `${t.name}.w`, shape: [t.N, t.K], data: async () => t.w });
  }
  return out;
}

/** Trained linears back from a checkpoint file: `w` from the file, or given (the untrained W). */
async function linearsFrom(ck: LoadedCheckpoint, role: string, w: (name: string) => Promise<Float32Array | undefined>): Promise<Map<string, TrainedLinear>> {
  const out = new Map<string, TrainedLinear>();
  for (const e of ck.entries(role)) {
    if (!e.name.endsWith(".s")) continue;
    const name = e.name.slice(0, -2);
    const weight = ck.has(role, `${name}.w`) ? ck.tensor(role, `${name}.w`) : await w(name);
    if (!weight) throw new UsageError(`the checkpoint in ${ck.dir} has no weight for ${name}`, "rerun without --resume to start over");
    const N = e.shape?.[0] ?? 0;
    out.set(name, { name, N, K: weight.length / N, w: weight, s: ck.tensor(role, `${name}.s`), z: ck.tensor(role, `${name}.z`) });
  }
  return out;
}

async function readLoss(t: GpuTensor): Promise<number> {
  const r = (await t.toHost()) as Float32Array;
  return r[0] / Math.max(r[1], 1);
}

async function snapshot(model: QatModel): Promise<Map<string, TrainedLinear>> {
  const out = new Map<string, TrainedLinear>();
  for (const li of model.linears()) {
    out.set(li.name, {
      name: li.name, N: li.spec.N, K: li.spec.K,
      w: ((await li.w.toHost()) as Float32Array).slice(),
      s: ((await li.s.toHost()) as Float32Array).slice(),
      z: ((await li.z.toHost()) as Float32Array).slice(),
    });
  }
  return out;
}

function checkOptions(o: QatOptions): void {
  for (const [k, v] of Object.entries({ steps: o.steps, batch: o.batch, seqLen: o.seqLen })) {
    if (!Number.isInteger(v) || v < 1) throw new UsageError(`--${k === "seqLen" ? "seq-len" : k} must be a positive integer (got ${v})`);
  }
  if (!(o.lr > 0) || !(o.lrWeights >= 0)) throw new UsageError(`learning rates must be positive (lr ${o.lr}, lr-weights ${o.lrWeights})`);
}

/**
 * End-to-end QAT. `train` and `heldOut` are token streams (the held-out split scores the model for
 * early stopping; it is never trained on).
 */
export async function qatEndToEnd(ctx: GpuContext, c: LlamaConfig, read: ReadF32, train: ArrayLike<number>, heldOut: ArrayLike<number>, o: QatOptions): Promise<QatResult> {
  checkOptions(o);
  const t0 = performance.now();
  const L = o.seqLen;
  const wins = tokenWindows(train, L);
  const hold = tokenWindows(heldOut, L);
  if (wins.length < o.batch) throw new UsageError(`the training text gives ${wins.length} windows of ${L + 1} tokens; --batch ${o.batch} needs more`, "give more text or lower --seq-len / --batch");
  if (hold.length < 1) throw new UsageError(`the held-out split gives no window of ${L + 1} tokens`, "give more text or lower --seq-len");
  const ck = o.checkpoint;
  const settings = ck ? { ...ck.settings, ...qatSettings(o), "training tokens": tokensHash(train, heldOut) } : {};
  const saved = await loadCheckpoint(ck, "e2e", settings);
  const model = await QatModel.create(ctx, c, read, o);
  const opt = new Optimizer(ctx, model.linears().flatMap((li) => li.params()));
  const lossT = GpuTensor.empty(ctx.gpu, [2], "f32", "qat.loss");
  const rand = rng(o.seed);
  const curve: CurvePoint[] = [];
  const every = ck?.every ?? o.evalEvery;
  try {
    const evalHeldOut = async () => {
      let nll = 0, n = 0;
      for (let i = 0; i < hold.length; i += o.batch) {
        const { ids, targets } = batchOf(hold.slice(i, i + o.batch), L);
        const teacher = o.teacher ? await o.teacher(ids, L) : undefined;
        const b = new CommandBatch(ctx.gpu, "qat.eval");
        await model.forwardBackward(b, ids, targets, L, lossT, false, teacher);
        b.submit();
        const r = (await lossT.toHost()) as Float32Array;
        nll += r[0];
        n += r[1];
        model.release();
      }
      return nll / n;
    };
    let before: number, best: number, bestStep: number, since: number;
    let bestState: Map<string, TrainedLinear>;
    let first = 1, draws = 0, done = false;
    /** The held-out best state's file in the last checkpoint, and its step. */
    let bestFile: FileEntry | null = null, bestFileStep = -1;
    if (saved) {
      const m = saved.manifest;
      before = m.before!;
      best = m.best!;
      bestStep = m.bestStep!;
      since = m.since!;
      done = !!m.done;
      first = m.step! + 1;
      curve.push(...curveFromSaved(m.curve));
      if (!done) opt.restore(saved, "state", m.optStep!);
      draws = m.draws;
      for (let i = 0; i < draws; i++) rand();
      const held = new Map(model.linears().map((li) => [li.name, li.w]));
      bestState = await linearsFrom(saved, "best", async (n) => (held.has(n) ? host(held.get(n)!) : undefined));
      bestFile = m.files.best;
      bestFileStep = bestStep;
      announce(ck!, done ? `QAT had finished at step ${m.step}; exporting its held-out best state (step ${bestStep})` : `continuing QAT from step ${m.step} of ${o.steps}`);
    } else {
      before = await evalHeldOut();
      best = before;
      bestStep = 0;
      since = 0;
      bestState = await snapshot(model);
      curve.push({ block: null, step: 0, loss: NaN, held_out: before });
    }
    const save = async (step: number, finished: boolean) => {
      if (!ck) return;
      const files: Record<string, FileEntry> = {};
      if (!finished) files.state = await writeTensors(ck.dir, `state-${step}.bin`, opt.tensors());
      if (!bestFile || bestFileStep !== bestStep) {
        bestFile = await writeTensors(ck.dir, `best-${bestStep}.bin`, linearTensors(bestState.values(), o.trainWeights));
        bestFileStep = bestStep;
      }
      files.best = bestFile;
      await saveManifest(ck.dir, {
        mode: "e2e", settings, draws, curve: curveToSaved(curve), files,
        step, optStep: opt.step, before, best, bestStep, since, done: finished,
      });
    };
    for (let step = first; !done && step <= o.steps; step++) {
      const pick = Array.from({ length: o.batch }, () => wins[Math.floor(rand() * wins.length)]);
      draws += o.batch;
      const { ids, targets } = batchOf(pick, L);
      const teacher = o.teacher ? await o.teacher(ids, L) : undefined;
      const b = new CommandBatch(ctx.gpu, "qat.step");
      await model.forwardBackward(b, ids, targets, L, lossT, true, teacher);
      b.submit();
      const loss = await readLoss(lossT);
      if (!Number.isFinite(loss)) throw new UsageError(`training diverged at step ${step} (loss ${loss})`, "lower --lr / --lr-weights");
      model.release();
      const lr = await opt.update(o, o.steps);
      const point: CurvePoint = { block: null, step, loss };
      let heldOutLoss: number | undefined;
      if (step % o.evalEvery === 0 || step === o.steps) {
        heldOutLoss = await evalHeldOut();
        point.held_out = heldOutLoss;
        if (heldOutLoss < best) {
          best = heldOutLoss;
          bestStep = step;
          since = 0;
          bestState = await snapshot(model);
        } else {
          since++;
        }
      }
      curve.push(point);
      o.onStep?.({ block: null, step, steps: o.steps, loss, lr, heldOut: heldOutLoss });
      const stop = o.patience > 0 && since >= o.patience;
      if (stop || step === o.steps) await save(step, true);
      else if (every > 0 && step % every === 0) await save(step, false);
      if (stop) break;
    }
    return { linears: bestState, curve, heldOut: { before, best, bestStep }, seconds: (performance.now() - t0) / 1000 };
  } finally {
    lossT.destroy();
    opt.destroy();
    model.destroy();
  }
}

/**
 * Block-wise QAT on calibration tokens (n sequences of seqLen, packed): one block on the GPU at a
 * time, MSE against the fp block output; the next block gets the fp output.
 */
export async function qatBlockwise(ctx: GpuContext, c: LlamaConfig, read: ReadF32, calib: Uint32Array, o: QatOptions, layers?: number[]): Promise<QatResult & { peakBytes: number }> {
  checkOptions(o);
  const t0 = performance.now();
  const { gpu } = ctx;
  const L = o.seqLen;
  const nSeq = calib.length / L;
  if (!Number.isInteger(nSeq) || nSeq < o.batch) throw new UsageError(`block mode needs at least --batch ${o.batch} calibration sequences of ${L} tokens`);
  const T = nSeq * L;
  const H = c.hiddenSize;
  const lossT = GpuTensor.empty(gpu, [2], "f32", "qat.loss");
  const curve: CurvePoint[] = [];
  const linears = new Map<string, TrainedLinear>();
  const rand = rng(o.seed);
  const ck = o.checkpoint;
  const settings = ck ? { ...ck.settings, ...qatSettings(o, layers), "calibration tokens": tokensHash(calib) } : {};
  const saved = await loadCheckpoint(ck, "block", settings);
  const blockFiles: Record<string, FileEntry> = {};
  let first = 0, draws = 0;
  let X: GpuTensor;
  if (saved) {
    const m = saved.manifest;
    first = m.block! + 1;
    draws = m.draws;
    for (let i = 0; i < draws; i++) rand();
    curve.push(...curveFromSaved(m.curve));
    for (const [role, f] of Object.entries(m.files)) {
      if (!role.startsWith("block-")) continue;
      blockFiles[role] = f;
      for (const [k, v] of await linearsFrom(saved, role, (n) => read(`${n}.weight`))) linears.set(k, v);
    }
    X = GpuTensor.fromHost(gpu, saved.tensor("x", "x"), [T, H], "f32", "qat.block_in");
    announce(ck!, `continuing QAT after block ${m.block} of ${c.numLayers}`);
  } else {
    X = GpuTensor.empty(gpu, [T, H], "f32", "qat.block_in");
    const E = GpuTensor.fromHost(gpu, await read("model.embed_tokens.weight"), [c.vocabSize, H], "f32", "qat.embed");
    const ids = GpuTensor.fromHost(gpu, calib, [T], "u32", "qat.calib");
    const b = new CommandBatch(gpu, "qat.embed");
    await embedding(ctx, b, ids, E, X);
    b.own(E, ids);
    b.submit();
  }
  const model = await QatModel.create(ctx, c, read, o, { layers: [], withHead: false });
  try {
    const todo = layers ?? Array.from({ length: c.numLayers }, (_, i) => i);
    for (let l = first; l < c.numLayers && l <= Math.max(...todo); l++) {
      // fp targets: the block with W' = W (no quantization)
      model.setBlock(l, await QatModel.block(ctx, c, read, o, l));
      const blk = model.blocks[l]!;
      const Y = GpuTensor.empty(gpu, [T, H], "f32", `qat.block_out${l}`);
      {
        const b = new CommandBatch(gpu, "qat.fp");
        for (const r of ROLES) await blk.lin[r].quantize(ctx, b, true);
        const y = await model.blockForward(b, l, X, L);
        b.copy(y, Y);
        b.submit();
        await gpu.sync();
        model.release();
      }
      if (todo.includes(l)) {
        const opt = new Optimizer(ctx, ROLES.flatMap((r) => blk.lin[r].params()));
        try {
          for (let step = 1; step <= o.steps; step++) {
            // a mini-batch of whole sequences: copy them into contiguous views
            const pick = Array.from({ length: o.batch }, () => Math.floor(rand() * nSeq));
            draws += o.batch;
            const xb = GpuTensor.empty(gpu, [o.batch * L, H], "f32", "qat.xb");
            const yb = GpuTensor.empty(gpu, [o.batch * L, H], "f32", "qat.yb");
            const b = new CommandBatch(gpu, "qat.block_step");
            b.own(xb, yb);
            pick.forEach((s, i) => {
              b.copy(X.view("x", [L * H], s * L * H * 4), xb.view("xb", [L * H], i * L * H * 4));
              b.copy(Y.view("y", [L * H], s * L * H * 4), yb.view("yb", [L * H], i * L * H * 4));
            });
            await model.blockStep(b, l, xb, yb, L, lossT, true);
            b.submit();
            const loss = await readLoss(lossT);
            if (!Number.isFinite(loss)) throw new UsageError(`block ${l} diverged at step ${step} (loss ${loss})`, "lower --lr / --lr-weights");
            model.release();
            const lr = await opt.update(o, o.steps);
            curve.push({ block: l, step, loss });
            o.onStep?.({ block: l, step, steps: o.steps, loss, lr });
          }
        } finally {
          opt.destroy();
        }
        for (const [k, v] of await snapshot(model)) linears.set(k, v);
      }
      model.setBlock(l, null);
      X.destroy();
      X = Y;
      if (ck) {
        const prefix = `model.layers.${l}.`;
        if (todo.includes(l)) {
          blockFiles[`block-${l}`] = await writeTensors(ck.dir, `block-${l}.bin`, linearTensors([...linears.values()].filter((t) => t.name.startsWith(prefix)), o.trainWeights));
        }
        const x = X;
        const files = { ...blockFiles, x: await writeTensors(ck.dir, `x-${l}.bin`, [{ name: "x", shape: [T, H], data: () => host(x) }]) };
        await saveManifest(ck.dir, { mode: "block", settings, draws, curve: curveToSaved(curve), files, block: l });
      }
    }
    return { linears, curve, seconds: (performance.now() - t0) / 1000, peakBytes: gpu.stats.peakBytes };
  } finally {
    X.destroy();
    lossT.destroy();
    model.destroy();
  }
}

