import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { addBias, addInPlace, scale, siluMul, sub, transpose } from "../../src/nn/elementwise.ts";
import { siluRef } from "../../src/ref/llama.ts";
import { gpuContext, randomF32 } from "../helpers/gpu.ts";

describe("element-wise kernels", async () => {
  const ctx = await gpuContext();
  const R = 37, C = 173;
  const a = randomF32(R * C, 1), b = randomF32(R * C, 2), v = randomF32(C, 3), r = randomF32(R, 4);
  const up = (x: Float32Array, shape: number[], label: string) => GpuTensor.fromHost(ctx.gpu, x, shape, "f32", label);
  const run = async (f: (b: CommandBatch, x: GpuTensor) => Promise<void>, init: Float32Array) => {
    const x = up(init, [R, C], "x");
    const batch = new CommandBatch(ctx.gpu);
    await f(batch, x);
    batch.submit();
    const out = (await x.toHost()) as Float32Array;
    x.destroy();
    return out;
  };
  const check = (got: Float32Array, want: (i: number) => number) => {
    for (let i = 0; i < got.length; i++) expect(got[i]).toBe(Math.fround(want(i)));
  };

  it("add, bias, column and row scaling, sub, silu_mul match the CPU", async () => {
    const base = ctx.gpu.stats.liveBytes;
    const bt = up(b, [R, C], "b"), vt = up(v, [C], "v"), rt = up(r, [R], "r");
    check(await run((bb, x) => addInPlace(ctx, bb, x, bt), a), (i) => a[i] + b[i]);
    check(await run((bb, x) => addBias(ctx, bb, x, vt), a), (i) => a[i] + v[i % C]);
    check(await run((bb, x) => scale(ctx, bb, x, vt, "cols"), a), (i) => a[i] * v[i % C]);
    check(await run((bb, x) => scale(ctx, bb, x, rt, "rows"), a), (i) => a[i] * r[Math.floor(i / C)]);
    const at = up(a, [R, C], "a");
    check(await run((bb, x) => sub(ctx, bb, at, bt, x), a), (i) => a[i] - b[i]);
    const got = await run((bb, x) => siluMul(ctx, bb, at, bt, x), a);
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - siluRef(a[i]) * b[i])).toBeLessThan(1e-6);
    // transpose: exact, out[c, r] = a[r, c]
    check(await run((bb, x) => transpose(ctx, bb, at, x.view("aT", [C, R], 0)), a), (i) => a[(i % R) * C + Math.floor(i / R)]);
    await expect(transpose(ctx, new CommandBatch(ctx.gpu), at, at)).rejects.toThrow(/in place/);
    for (const t of [bt, vt, rt, at]) t.destroy();
    expect(ctx.gpu.stats.liveBytes).toBe(base);
  });
});
