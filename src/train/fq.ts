// train/fq.ts — the fake quantizer QAT puts in front of each linear: LSQ (src/train/lsq.ts) with
// fixed integer zero points, LSQ's gradient scale on the step sizes, and a scratch weight gradient
// when the weights themselves are frozen.

import type { GpuContext } from "../gpu/context.ts";
import type { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import type { QuantSpec } from "../quant/formats.ts";
import { lsqBackward, lsqForward, type LsqSpec } from "./lsq.ts";

export class FakeQuant {
  readonly lsq: LsqSpec;
  constructor(spec: QuantSpec) {
    this.lsq = { bits: spec.bits, G: spec.G, sym: spec.sym };
  }

  /** Records wq = fq(w; s, z). */
  forward(ctx: GpuContext, b: CommandBatch, w: GpuTensor, s: GpuTensor, z: GpuTensor, wq: GpuTensor): Promise<void> {
    return lsqForward(ctx, b, w, s, this.lsq.sym ? null : z, wq, this.lsq);
  }

  /** Records ds (dw when given, else it is discarded; dz when given) from the upstream gradient dwq. */
  async backward(ctx: GpuContext, b: CommandBatch, w: GpuTensor, s: GpuTensor, z: GpuTensor, dwq: GpuTensor, dw: GpuTensor | null, ds: GpuTensor, dz: GpuTensor | null = null): Promise<void> {
    let sink = dw;
    if (!sink) {
      sink = GpuTensor.empty(ctx.gpu, w.shape as number[], "f32", `${w.label}.dw_unused`);
      b.own(sink);
    }
    await lsqBackward(ctx, b, { w, scale: s, zero: this.lsq.sym ? null : z, dwq, dw: sink, dscale: ds, dzero: this.lsq.sym ? null : dz }, this.lsq, { gradScale: true });
  }
}
