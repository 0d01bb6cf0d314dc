// train/qat_method.ts — quantization-aware training as a method of quantizeModel's block loop
// (src/ptq/method.ts). prepare trains the whole model before the first block: the starting weights
// (the checkpoint's, or AWQ's scaled and clipped weights with the norms folded), then qatEndToEnd
// or qatBlockwise (src/train/qat.ts), resumable from the output's state folder; the trained linears
// are packed (export.ts) there. The loop then writes each trained linear as packed
// (packedLinear) instead of quantizing it, and transformBlock puts AWQ's rewritten tensors (the
// folded norms, and the weights of any linear not trained) into the block before it is saved.

import * as path from "node:path";
import { TensorError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { LlamaConfig } from "../model/config.ts";
import { LlamaModel, type BlockWeights } from "../model/llama.ts";
import { awqTransform, type AwqBlockReport } from "../ptq/awq.ts";
import type { PrepareArgs, QuantMethod } from "../ptq/method.ts";
import type { HostPackedWeight } from "../quant/formats.ts";
import { packTrained } from "./export.ts";
import { qatBlockwise, qatEndToEnd, qatSettings, type QatOptions, type QatResult } from "./qat.ts";
import { checkCheckpoint, type QatCheckpoint, type Setting } from "./qat_checkpoint.ts";

type Progress = (done: number, total: number, detail?: string) => void;

export interface QatMethodOptions {
  /** The training settings (the method sets onStep, teacher and checkpoint). */
  qat: Omit<QatOptions, "onStep" | "teacher" | "checkpoint">;
  /** Starting point: the checkpoint's weights (rtn), or AWQ's on the calibration tokens. */
  init: "rtn" | "awq";
  /** e2e: kd distils the fp model at `model`; ce is cross-entropy on the text. */
  loss: "kd" | "ce";
  /** The fp model's folder (the teacher of --loss kd). */
  model: string;
  /** Block mode: train only these blocks. */
  layers?: number[];
  /** e2e: the training and held-out token streams. */
  train: ArrayLike<number>;
  heldOut: ArrayLike<number>;
  /** Calibration tokens (AWQ init, block mode) in sequences of calibSeqLen, drawn when first needed. */
  calibration: () => Uint32Array;
  calibSeqLen: number;
  /**
   * What a resumed run must share besides the training options, by option name ("--model" is
   * also AWQ's resume identity).
   */
  settings: Record<string, Setting>;
  /** e2e: save resumable progress every this many steps (see QatCheckpoint.every). */
  checkpointEvery?: number;
  /** The progress display of a phase, or null. */
  progress?: (phase: "awq" | "qat") => Progress | null;
  /** The run's settings as report.json's qat object lists them; the results follow them. */
  report: Record<string, unknown>;
}

export class QatMethod implements QuantMethod {
  readonly name = "qat";
  /** The training result, once prepare has run. */
  result: QatResult | null = null;
  /** Block mode: the GPU's peak allocation while training (0 in e2e). */
  peakBytes = 0;
  /** AWQ init: what each block chose. */
  awqBlocks: AwqBlockReport[] = [];
  /** AWQ's rewritten f32 block tensors (norms, linears) by name, until their block is written. */
  #init = new Map<string, Float32Array>();
  #packed = new Map<string, HostPackedWeight>();

  constructor(readonly opts: QatMethodOptions) {}

  async prepare(ctx: GpuContext, args: PrepareArgs): Promise<void> {
    const { opts } = this;
    const c = args.config;
    const { layers } = opts;
    let bar: Progress | null = null;
    let best = Infinity;
    const qat: QatOptions = {
      ...opts.qat,
      onStep: (p) => {
        if (p.heldOut !== undefined) best = Math.min(best, p.heldOut);
        const where = p.block === null ? "" : `block ${p.block} `;
        const total = p.block === null ? p.steps : p.steps * (layers?.length ?? c.numLayers);
        const done = p.block === null ? p.step : (layers ? layers.indexOf(p.block) : p.block) * p.steps + p.step;
        bar?.(done, total, `${where}step ${p.step} loss ${p.loss.toFixed(4)}${Number.isFinite(best) ? ` held-out best ${best.toFixed(4)}` : ""}`);
      },
    };
    const checkpoint: QatCheckpoint = { dir: await args.out.state(), resumed: args.out.resumed, every: opts.checkpointEvery, settings: opts.settings };
    if (args.resume && !args.out.resumed) args.log(`resume: no interrupted run into ${args.out.dest} was found; training starts from step 0`);
    // refuse a mismatching resume before any work
    await checkCheckpoint(checkpoint, { ...opts.settings, ...qatSettings(qat, layers), ...(qat.mode === "e2e" ? { "--loss": opts.loss } : {}) });
    qat.checkpoint = checkpoint;
    // starting weights: the checkpoint, or AWQ's scaled and clipped weights (norms folded)
    if (opts.init === "awq") {
      const phase = opts.progress?.("awq") ?? null;
      const r = await awqTransform(ctx, c, args.read, {
        bits: qat.bits, groupSize: qat.groupSize, sym: qat.sym, tokens: opts.calibration(), seqLen: opts.calibSeqLen, onProgress: (d, n, detail) => phase?.(d, n, detail),
        state: { dir: path.join(checkpoint.dir, "awq"), resumed: args.out.resumed, identity: { model: opts.settings["--model"] as string } },
      });
      this.awqBlocks = r.blocks;
      this.#init = r.weights;
    }
    const init = this.#init;
    const read = async (n: string) => init.get(n) ?? (await args.read(n));
    bar = opts.progress?.("qat") ?? null;
    if (qat.mode === "e2e") {
      let fp: LlamaModel | null = null;
      if (opts.loss === "kd") {
        fp = await LlamaModel.load(ctx, opts.model, { maxTokens: qat.batch * qat.seqLen });
        qat.teacher = async (ids, seq) => {
          fp!.reset();
          return fp!.forward(ids, { seq });
        };
      }
      try {
        this.result = await qatEndToEnd(ctx, c, read, opts.train, opts.heldOut, qat);
      } finally {
        fp?.destroy();
      }
    } else {
      const r = await qatBlockwise(ctx, c, read, opts.calibration(), qat, layers);
      this.peakBytes = r.peakBytes;
      this.result = r;
    }
    for (const [name, t] of this.result.linears) this.#packed.set(`${name}.weight`, packTrained(t, qat.bits, qat.groupSize, qat.sym));
  }

  packedLinear(name: string): HostPackedWeight | undefined {
    return this.#packed.get(name);
  }

  async transformBlock(_ctx: GpuContext, _layer: number, block: BlockWeights): Promise<void> {
    for (const [name, t] of blockTensors(block)) {
      const data = this.#init.get(name);
      if (!data) continue;
      this.#init.delete(name);
      if (this.#packed.has(name)) continue; // written packed as trained
      if (data.length !== t.numel) throw new TensorError(name, `AWQ returned ${data.length} elements, the weight has ${t.numel}`);
      t.write(data);
    }
  }

  report(): Record<string, unknown> {
    const r = this.result;
    return {
      qat: { ...this.opts.report, held_out: r?.heldOut, curve: r?.curve, seconds: r?.seconds, peak_gpu_bytes: this.peakBytes || undefined },
      awq: this.opts.init === "awq" ? this.awqBlocks : undefined,
    };
  }

  dispose(): void {
    this.#init.clear();
  }
}

/** A block's norms, linear weights and biases by Hugging Face name. */
function blockTensors(b: BlockWeights): [string, { numel: number; write(data: Float32Array): void }][] {
  const out: [string, { numel: number; write(data: Float32Array): void }][] = [[b.inputNorm.label, b.inputNorm], [b.postNorm.label, b.postNorm]];
  for (const li of Object.values(b.lin)) {
    if (li.kind !== "dense") continue;
    out.push([`${li.name}.weight`, li.w]);
    if (li.bias) out.push([`${li.name}.bias`, li.bias]);
  }
  return out;
}
