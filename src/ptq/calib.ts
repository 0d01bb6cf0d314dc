// ptq/calib.ts — calibration statistics on the GPU: for every group of linears that share an
// input (q/k/v, o, gate/up, down of each block), per input channel over all calibration tokens:
// mean |x| (AWQ's activation statistic), max |x| and mean x^2 (llama.cpp's importance statistic),
// and optionally the Gram matrix XᵀX / tokens (K x K, the Hessian proxy of GPTQ-style methods).
// Collected through LlamaModel's onLinearInput hook into running sums on the GPU; read back once.
// Every hooked input is also checked for NaN/±Inf on the GPU (one flag reduction each, recorded
// into the forward's batch); read() throws NonFiniteError (exit code 2) naming the layer, the
// input group and the first bad calibration token before it returns any statistic.

import { reduceStats } from "../nn/reduce.ts";
import { NonFiniteError, TensorError } from "../errors.ts";
import { describeNonFinite, FiniteChecks } from "../nn/finite.ts";
import { addInPlace, transpose } from "../nn/elementwise.ts";
import { matmul } from "../nn/matmul.ts";
import type { GpuContext } from "../gpu/context.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import type { LinearInputEvent, LinearRole } from "../model/llama.ts";

/** The input groups of a block, named after the linears they feed. */
export const INPUT_GROUPS = { qkv: ["q_proj", "k_proj", "v_proj"], o: ["o_proj"], gate_up: ["gate_proj", "up_proj"], down: ["down_proj"] } as const;
export type InputGroup = keyof typeof INPUT_GROUPS;

export function groupOf(roles: readonly LinearRole[]): InputGroup {
  const r = roles[0];
  return r === "o_proj" ? "o" : r === "down_proj" ? "down" : r === "gate_proj" || r === "up_proj" ? "gate_up" : "qkv";
}

export interface ChannelStats {
  layer: number;
  group: InputGroup;
  tokens: number;
  meanAbs: Float32Array;
  maxAbs: Float32Array;
  meanSq: Float32Array;
  /** XᵀX / tokens, [K, K] row-major (with { gram: true }). */
  gram?: Float32Array;
}

/** The raw running sums of one (layer, group), as CalibrationCollector.exportState() gives them. */
export interface CollectorState {
  key: string;
  layer: number;
  group: InputGroup;
  tokens: number;
  /** [K, 4] accumulator as reduceStats keeps it. */
  acc: Float32Array;
  /** [K, K] sum of XᵀX (with { gram: true }). */
  gram: Float32Array | null;
}

/** Accumulates statistics of every linear input it is hooked into; one [K, 4] running tensor per (layer, group). */
export class CalibrationCollector {
  readonly #acc = new Map<string, { layer: number; group: InputGroup; t: GpuTensor; tokens: number; gram: GpuTensor | null }>();
  /** One finiteness check per hooked input: (layer, group, first calibration token of the call). */
  readonly #checks: FiniteChecks<{ layer: number; group: InputGroup; token0: number }>;

  constructor(readonly ctx: GpuContext, readonly opts: { gram?: boolean } = {}) {
    this.#checks = new FiniteChecks(ctx, { slots: 1024, label: "calib.finite" });
  }

  /** Pass as LlamaModel's onLinearInput. */
  readonly hook = async (ev: LinearInputEvent): Promise<void> => {
    const group = groupOf(ev.roles);
    const key = `${ev.layer}.${group}`;
    const [T, K] = ev.input.shape;
    let a = this.#acc.get(key);
    if (!a) {
      const gram = this.opts.gram ? GpuTensor.empty(this.ctx.gpu, [K, K], "f32", `calib.${key}.gram`) : null;
      a = { layer: ev.layer, group, t: GpuTensor.empty(this.ctx.gpu, [K, 4], "f32", `calib.${key}`), tokens: 0, gram };
      this.#acc.set(key, a);
    }
    await this.#checks.record(ev.batch, ev.input, { layer: ev.layer, group, token0: a.tokens });
    a.tokens += T;
    await reduceStats(this.ctx, ev.batch, ev.input, "cols", a.t, true);
    if (a.gram) {
      // G += Xᵀ X: (K, T) · (K, T)ᵀ with the dense GEMM (W = Xᵀ)
      const xT = GpuTensor.empty(this.ctx.gpu, [K, T], "f32", `calib.${key}.xT`);
      const g = GpuTensor.empty(this.ctx.gpu, [K, K], "f32", `calib.${key}.gram_part`);
      ev.batch.own(xT, g);
      await transpose(this.ctx, ev.batch, ev.input, xT);
      await matmul(this.ctx, ev.batch, xT, xT, g);
      await addInPlace(this.ctx, ev.batch, a.gram, g);
    }
  };

  /**
   * Reads every running tensor back (K x 4 floats each) as per-channel means. Throws
   * NonFiniteError when a hooked input held NaN/±Inf (or a statistic overflowed).
   */
  async read(): Promise<ChannelStats[]> {
    await this.#assertFinite();
    const out: ChannelStats[] = [];
    for (const a of this.#acc.values()) {
      const s = (await a.t.toHost()) as Float32Array;
      const K = s.length / 4;
      const meanAbs = new Float32Array(K), maxAbs = new Float32Array(K), meanSq = new Float32Array(K);
      for (let k = 0; k < K; k++) {
        meanAbs[k] = s[k * 4 + 1] / a.tokens;
        maxAbs[k] = s[k * 4 + 2];
        meanSq[k] = s[k * 4 + 3] / a.tokens;
      }
      const k = [meanAbs, maxAbs, meanSq].findIndex((v) => v.some((x) => !Number.isFinite(x)));
      if (k >= 0) {
        throw new NonFiniteError(`calibration, layer ${a.layer} (input of ${INPUT_GROUPS[a.group].join("/")})`,
          `the ${["mean |x|", "max |x|", "mean x²"][k]} statistic overflowed f32 over ${a.tokens} tokens (the inputs were finite)`);
      }
      const st: ChannelStats = { layer: a.layer, group: a.group, tokens: a.tokens, meanAbs, maxAbs, meanSq };
      if (a.gram) st.gram = Float32Array.from((await a.gram.toHost()) as Float32Array, (v) => v / a.tokens);
      out.push(st);
    }
    return out.sort((x, y) => x.layer - y.layer || Object.keys(INPUT_GROUPS).indexOf(x.group) - Object.keys(INPUT_GROUPS).indexOf(y.group));
  }

  async #assertFinite(): Promise<void> {
    const [bad] = await this.#checks.read();
    if (bad) {
      const { layer, group, token0 } = bad.tag;
      throw new NonFiniteError(`calibration, layer ${layer} (input of ${INPUT_GROUPS[group].join("/")})`,
        `the activations are not finite: ${describeNonFinite(bad.bad, bad.shape, (row, col) => `calibration token ${token0 + row} (channel ${col})`)}`);
    }
  }

  /**
   * The running sums as they are on the GPU (raw [K, 4] accumulators, Gram sums, token counts),
   * to save progress: importState() of this continues bit for bit. Throws NonFiniteError, as
   * read() does, when an input so far held NaN/±Inf (nothing bad is saved).
   */
  async exportState(): Promise<CollectorState[]> {
    await this.#assertFinite();
    const out: CollectorState[] = [];
    for (const [key, a] of this.#acc) {
      out.push({
        key, layer: a.layer, group: a.group, tokens: a.tokens,
        acc: ((await a.t.toHost()) as Float32Array).slice(),
        gram: a.gram ? ((await a.gram.toHost()) as Float32Array).slice() : null,
      });
    }
    return out;
  }

  /** Replaces the running sums with saved ones (from exportState()), uploaded as they were. */
  importState(entries: readonly CollectorState[]): void {
    for (const a of this.#acc.values()) {
      a.t.destroy();
      a.gram?.destroy();
    }
    this.#acc.clear();
    for (const e of entries) {
      const K = e.acc.length / 4;
      if (!Number.isInteger(K) || (e.gram && e.gram.length !== K * K) || (!!e.gram !== !!this.opts.gram)) {
        throw new TensorError(`calib.${e.key}`, `saved statistics have ${e.acc.length} accumulator and ${e.gram?.length ?? 0} Gram values, which do not fit ${this.opts.gram ? "with" : "without"} --gram`);
      }
      this.#acc.set(e.key, {
        layer: e.layer, group: e.group, tokens: e.tokens,
        t: GpuTensor.fromHost(this.ctx.gpu, e.acc, [K, 4], "f32", `calib.${e.key}`),
        gram: e.gram ? GpuTensor.fromHost(this.ctx.gpu, e.gram, [K, K], "f32", `calib.${e.key}.gram`) : null,
      });
    }
  }

  destroy(): void {
    this.#checks.destroy();
    for (const a of this.#acc.values()) {
      a.t.destroy();
      a.gram?.destroy();
    }
    this.#acc.clear();
  }
}
