import { describe, expect, it } from "vitest";
import { convertF16ToF32, convertF32ToF16 } from "../../src/nn/convert.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { f16ArrayToF32, f16BitsToF32, f32ArrayToF16, f32ToF16Bits } from "../../src/ref/f16.ts";
import { gpuContext, randomF32, rng } from "../helpers/gpu.ts";

describe("f16 reference", () => {
  it("rounds to nearest even, handles subnormals, overflow and NaN", () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to Inf
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie -> even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie -> even (2)
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f16BitsToF32(f32ToF16Bits(NaN))).toBeNaN();
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    for (let h = 0; h < 0x7c00; h += 7) expect(f32ToF16Bits(f16BitsToF32(h))).toBe(h); // exact round trip
  });
});

describe("convert kernels", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  for (const n of [1, 37, 1000, 65537]) {
    it(`f32 -> f16 -> f32 on ${n} random values matches the CPU reference bit for bit`, async () => {
      const base = gpu.stats.liveBytes;
      const r = rng(n);
      // Mixed magnitudes: normals across the f16 range and subnormals.
      const x = randomF32(n, 100 + n).map((v, i) => v * 2 ** (Math.floor(r() * 40) - 24) * (i % 5 === 0 ? 1e-3 : 1));
      const src = GpuTensor.fromHost(gpu, x, [n], "f32", "x");
      const half = GpuTensor.empty(gpu, [n], "f16", "x16");
      const back = GpuTensor.empty(gpu, [n], "f32", "x32");
      const b = new CommandBatch(gpu);
      await convertF32ToF16(ctx, b, src, half);
      await convertF16ToF32(ctx, b, half, back);
      b.submit();
      const h = (await half.toHost()) as Uint16Array;
      const ref = f32ArrayToF16(x);
      let mismatches = 0;
      for (let i = 0; i < n; i++) if (h[i] !== ref[i]) mismatches++;
      expect(mismatches).toBe(0);
      expect(Array.from(await back.toHost())).toEqual(Array.from(f16ArrayToF32(ref)));
      for (const t of [src, half, back]) t.destroy();
      expect(gpu.stats.liveBytes).toBe(base);
    });
  }
});

describe("bf16 cast kernel", async () => {
  const ctx = await gpuContext();
  it("matches the CPU reference bit for bit, ties, NaN and overflow included (odd count)", async () => {
    const { convertF32ToBf16 } = await import("../../src/nn/convert.ts");
    const { f32ToBf16Bits } = await import("../../src/ref/quant.ts");
    const special = [NaN, -NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1e-40, -0];
    const x = new Float32Array([...special, ...randomF32(1001, 44, -1e3, 1e3)]);
    const src = GpuTensor.fromHost(ctx.gpu, x, [x.length], "f32", "x");
    const dst = GpuTensor.empty(ctx.gpu, [x.length], "bf16", "xb");
    const b = new CommandBatch(ctx.gpu);
    await convertF32ToBf16(ctx, b, src, dst);
    b.submit();
    const got = (await dst.toHost()) as Uint16Array;
    let bad = 0;
    for (let i = 0; i < x.length; i++) {
      const want = f32ToBf16Bits(x[i]);
      const nan = (w: number) => (w & 0x7f80) === 0x7f80 && (w & 0x7f) !== 0;
      if (nan(want) ? !nan(got[i]) : got[i] !== want) bad++;
    }
    expect(bad).toBe(0);
    src.destroy();
    dst.destroy();
  });
});
