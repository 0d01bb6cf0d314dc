// selftest.ts — runs every foundation kernel once on fresh random inputs and compares it with its
// CPU reference (src/ref). Used by `wgq doctor`; the test suite covers the same kernels in depth.

import { convertF16ToF32, convertF32ToF16 } from "./nn/convert.ts";
import { reduceStats } from "./nn/reduce.ts";
import type { GpuContext } from "./gpu/context.ts";
import { CommandBatch } from "./gpu/encoder.ts";
import { GpuTensor } from "./gpu/tensor.ts";
import { matmul } from "./nn/matmul.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "./ref/f16.ts";
import { matmulRef } from "./ref/matmul.ts";
import { randomF32 } from "./ref/random.ts";
import { reduceRef } from "./ref/reduce.ts";

export interface SelfTestRow {
  kernel: string;
  shape: string;
  /** Relative error ||gpu - ref|| / ||ref|| (mismatching elements / n for bit-exact kernels). */
  error: number;
  tolerance: number;
  pass: boolean;
  ms: number;
}

/** Runs the self-test; `seed` makes the inputs (default: time-based, so every run is fresh). */
export async function selfTest(ctx: GpuContext, seed = Date.now() >>> 0): Promise<SelfTestRow[]> {
  const rows: SelfTestRow[] = [];
  const { gpu } = ctx;
  let calls = 0;
  const randn = (n: number) => randomF32(n, seed + 7919 * ++calls);
  const time = async (kernel: string, shape: string, tolerance: number, fn: () => Promise<number>) => {
    const t0 = performance.now();
    const error = await fn();
    rows.push({ kernel, shape, error, tolerance, pass: Number.isFinite(error) && error <= tolerance, ms: performance.now() - t0 });
  };

  await time("convert f32<->f16", "[1001]", 0, async () => {
    const x = randn(1001);
    const src = GpuTensor.fromHost(gpu, x, [1001], "f32", "selftest.x");
    const half = GpuTensor.empty(gpu, [1001], "f16", "selftest.x16");
    const back = GpuTensor.empty(gpu, [1001], "f32", "selftest.x32");
    try {
      const b = new CommandBatch(gpu, "selftest.convert");
      await convertF32ToF16(ctx, b, src, half);
      await convertF16ToF32(ctx, b, half, back);
      b.submit();
      const ref = f32ArrayToF16(x);
      const h = (await half.toHost()) as Uint16Array;
      const y = (await back.toHost()) as Float32Array;
      const refBack = f16ArrayToF32(ref);
      let bad = 0;
      for (let i = 0; i < x.length; i++) if (h[i] !== ref[i] || y[i] !== refBack[i]) bad++;
      return bad / x.length;
    } finally {
      src.destroy(); half.destroy(); back.destroy();
    }
  });

  for (const axis of ["rows", "cols"] as const) {
    await time(`reduce ${axis}`, "[37, 4099]", 1e-6, async () => {
      const [R, C] = [37, 4099];
      const x = randn(R * C);
      const t = GpuTensor.fromHost(gpu, x, [R, C], "f32", "selftest.r");
      const S = axis === "rows" ? R : C;
      const out = GpuTensor.empty(gpu, [S, 4], "f32", "selftest.stats");
      try {
        const b = new CommandBatch(gpu, "selftest.reduce");
        await reduceStats(ctx, b, t, axis, out);
        b.submit();
        const got = (await out.toHost()) as Float32Array;
        const ref = reduceRef(x, R, C, axis);
        let worst = 0;
        for (let s = 0; s < S; s++) {
          for (const j of [0, 1, 3]) worst = Math.max(worst, Math.abs(got[s * 4 + j] - ref[s * 4 + j]) / ref[s * 4 + (j === 3 ? 3 : 1)]);
          if (got[s * 4 + 2] !== Math.fround(ref[s * 4 + 2]) || Number.isNaN(got[s * 4])) worst = Infinity;
        }
        return worst;
      } finally {
        t.destroy(); out.destroy();
      }
    });
  }

  for (const wd of ["f32", "f16"] as const) {
    const [M, N, K] = [37, 100, 300];
    await time(`matmul ${wd} weights`, `${M}x${N}x${K}`, 1e-5, async () => {
      const x = randn(M * K);
      let w = randn(N * K);
      const bits = wd === "f16" ? f32ArrayToF16(w) : null;
      if (bits) w = f16ArrayToF32(bits);
      const xt = GpuTensor.fromHost(gpu, x, [M, K], "f32", "selftest.mx");
      const wt = GpuTensor.fromHost(gpu, bits ?? w, [N, K], wd, "selftest.mw");
      const yt = GpuTensor.empty(gpu, [M, N], "f32", "selftest.my");
      try {
        const b = new CommandBatch(gpu, "selftest.matmul");
        await matmul(ctx, b, xt, wt, yt);
        b.submit();
        const y = (await yt.toHost()) as Float32Array;
        const ref = matmulRef(x, w, M, N, K);
        let num = 0;
        let den = 0;
        for (let i = 0; i < ref.length; i++) {
          if (!Number.isFinite(y[i])) return Infinity;
          num += (y[i] - ref[i]) ** 2;
          den += ref[i] ** 2;
        }
        return Math.sqrt(num / den);
      } finally {
        xt.destroy(); wt.destroy(); yt.destroy();
      }
    });
  }
  return rows;
}
