// The distillation loss kernel against float64: per-row KL(teacher || student), its sum, and the
// gradient (softmax(student) − softmax(teacher)) · scale, on a ragged [T, V].

import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { kdBackward } from "../../src/train/kd.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";

function softmax64(x: Float32Array, b: number, V: number): Float64Array {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, x[b + v]);
  const p = new Float64Array(V);
  let z = 0;
  for (let v = 0; v < V; v++) z += p[v] = Math.exp(x[b + v] - m);
  for (let v = 0; v < V; v++) p[v] /= z;
  return p;
}

describe("kd loss", async () => {
  const ctx = await gpuContext();
  it("KL and gradient match float64 on a ragged 67x203", async () => {
    const T = 67, V = 203;
    const s = randomF32(T * V, 1, -4, 4), t = randomF32(T * V, 2, -4, 4);
    let kl = 0;
    const grad = new Float64Array(T * V);
    for (let r = 0; r < T; r++) {
      const q = softmax64(s, r * V, V), p = softmax64(t, r * V, V);
      for (let v = 0; v < V; v++) {
        kl += p[v] * (Math.log(p[v]) - Math.log(q[v]));
        grad[r * V + v] = (q[v] - p[v]) / T;
      }
    }
    const ls = GpuTensor.fromHost(ctx.gpu, s, [T, V], "f32", "logits");
    const lt = GpuTensor.fromHost(ctx.gpu, t, [T, V], "f32", "teacher");
    const sum = GpuTensor.empty(ctx.gpu, [2], "f32", "loss");
    const b = new CommandBatch(ctx.gpu);
    await kdBackward(ctx, b, ls, lt, sum);
    b.submit();
    const got = (await sum.toHost()) as Float32Array;
    const gerr = relError((await ls.toHost()) as Float32Array, grad);
    const lerr = Math.abs(got[0] - kl) / kl;
    console.log(`kd: KL sum relative error ${lerr.toExponential(2)}, gradient ${gerr.toExponential(2)}`);
    expect(lerr).toBeLessThan(1e-4);
    expect(gerr).toBeLessThan(1e-4);
    expect(got[1]).toBe(T);
    for (const x of [ls, lt, sum]) x.destroy();
  });
});
