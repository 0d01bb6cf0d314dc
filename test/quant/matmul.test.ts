// Dequantize-matmul kernels (src/quant/matmul.ts) against the float64 reference matmul on the
// dequantized weights (src/ref/quant.ts + src/ref/matmul.ts): every variant the device has, ragged
// M, N, K, int4 asym/sym and int8; NaN propagates; row windows; no leaked GPU memory.
//
// Tolerances (relative error ||y - ref|| / ||ref||):
//   f32 activations (tiled, subgroup)  1e-5  — only f32 accumulation-order rounding (~1e-7 seen)
//   f16 activations (tiled_f16)        1e-3  — x is rounded to f16 before the reference too, so this
//                                              is y's own f16 rounding (2^-11 per element, ~3e-4 rms)
//   dp4a                               1e-2  — x is rounded to int8 per 32-block: error uniform in
//                                              ±max|x_block|/254, i.e. ≈ 0.5/127 ≈ 3.9e-3 relative for
//                                              uniform x; 1e-2 leaves 2.5x margin, and still fails on
//                                              any real indexing / nibble-order bug (errors ~1)
import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { quantSpec, type QuantSpec, specName } from "../../src/quant/formats.ts";
import { chooseVariant, qmatmul, QMATMUL_VARIANTS, type QMatmulVariant, variantUnavailable } from "../../src/quant/matmul.ts";
import { destroyPacked, uploadPacked } from "../../src/quant/packed.ts";
import { quantizeRtn } from "../../src/quant/rtn.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/ref/f16.ts";
import { matmulRef } from "../../src/ref/matmul.ts";
import { dequantizeRef, quantizePackRef } from "../../src/ref/quant.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";
import { VariantRuns } from "../helpers/variants.ts";

const TOL: Record<QMatmulVariant, number> = { tiled: 1e-5, subgroup: 1e-5, tiled_f16: 1e-3, dp4a: 1e-2 };

describe("qmatmul y = x · dequant(W)ᵀ", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;
  const worst = new Map<string, number>();

  /** Runs one variant; returns y on the host (f32) and the reference. */
  async function run(variant: QMatmulVariant, x: Float32Array, M: number, w: GpuTensorPacked, wdq: Float32Array, opts = {}) {
    const { N, K } = w;
    const f16 = variant === "tiled_f16";
    const xv = f16 ? f16ArrayToF32(f32ArrayToF16(x)) : x; // the reference sees exactly the stored x
    const xt = f16 ? GpuTensor.fromHost(gpu, f32ArrayToF16(x), [M, K], "f16", "x") : GpuTensor.fromHost(gpu, x, [M, K], "f32", "x");
    const yt = GpuTensor.empty(gpu, [M, N], f16 ? "f16" : "f32", "y");
    const b = new CommandBatch(gpu);
    const used = await qmatmul(ctx, b, xt, w, yt, { variant, ...opts });
    b.submit();
    expect(used).toBe(variant);
    const raw = await yt.toHost();
    const y = f16 ? f16ArrayToF32(raw as Uint16Array) : (raw as Float32Array);
    xt.destroy();
    yt.destroy();
    return { y, ref: matmulRef(xv, wdq, M, N, K) };
  }
  type GpuTensorPacked = ReturnType<typeof uploadPacked>;

  const specs: [number, number | undefined, boolean][] = [[4, 32, false], [4, 64, true], [4, 128, false], [8, undefined, true]];
  for (const [bits, G, sym] of specs) {
    for (const N of [100, 172]) {
      for (const K of [172, 300]) {
        const spec = quantSpec(bits, N, K, G, sym);
        it(`${specName(spec)} N=${N} K=${K}: every variant matches the float64 reference for M in 1, 3, 8, 17, 37`, async () => {
          const base = gpu.stats.liveBytes;
          const wf = randomF32(N * K, N * 7 + K + bits + (G ?? 0));
          const packed = quantizePackRef(wf, spec);
          const wdq = dequantizeRef(packed);
          const w = uploadPacked(gpu, packed, "w");
          const runs = new VariantRuns(`qmatmul ${specName(spec)} N=${N} K=${K}`);
          for (const M of [1, 3, 8, 17, 37]) {
            const x = randomF32(M * K, M * 31 + N + K);
            for (const variant of QMATMUL_VARIANTS) {
              if (!runs.take(variant, variantUnavailable(gpu, variant, spec, M, variant === "tiled_f16" ? "f16" : "f32"))) continue;
              const { y, ref } = await run(variant, x, M, w, wdq);
              const err = relError(y, ref);
              const key = `${variant} ${specName(spec)}`;
              worst.set(key, Math.max(worst.get(key) ?? 0, err));
              expect(err, `${variant} M=${M} N=${N} K=${K} ${specName(spec)}`).toBeLessThanOrEqual(TOL[variant]);
            }
          }
          runs.check();
          destroyPacked(w);
          expect(gpu.stats.liveBytes).toBe(base);
        });
      }
    }
  }

  it("covers the GPU variants this device offers (lavapipe: all four)", () => {
    const spec = quantSpec(4, 100, 172, 32, false);
    const avail = QMATMUL_VARIANTS.filter((v) => !variantUnavailable(gpu, v, spec, 1, v === "tiled_f16" ? "f16" : "f32"));
    console.log(`adapter ${gpu.adapterInfo.description} (${gpu.adapterInfo.kind}): variants ${avail.join(", ")}; auto M=1 -> ${chooseVariant(gpu, spec, 1, "f32")}, M=37 -> ${chooseVariant(gpu, spec, 37, "f32")}`);
    if (/llvmpipe/.test(gpu.adapterInfo.description)) expect(avail).toEqual([...QMATMUL_VARIANTS]);
    expect(avail).toContain("tiled");
    expect(chooseVariant(gpu, spec, 37, "f32")).toBe(gpu.adapterInfo.kind === "cpu" && gpu.has("subgroups") ? "kmajor" : "tiled");
    expect(chooseVariant(gpu, spec, 1, "f32")).not.toMatch(/dp4a/); // exact unless int8 activations are asked for
    expect(chooseVariant(gpu, spec, 1, "f32", { int8Activations: true })).toMatch(/dp4a/);
    if (gpu.adapterInfo.kind === "cpu") expect(chooseVariant(gpu, spec, 1, "f32")).toBe("kmajor");
  });

  it("NaN in x reaches y in every variant (never hidden by int8 rounding)", async () => {
    const base = gpu.stats.liveBytes;
    const spec = quantSpec(4, 40, 172, 32, false);
    const packed = quantizePackRef(randomF32(40 * 172, 3), spec);
    const w = uploadPacked(gpu, packed, "w");
    const wdq = dequantizeRef(packed);
    const runs = new VariantRuns("qmatmul NaN propagation");
    for (const variant of QMATMUL_VARIANTS) {
      if (!runs.take(variant, variantUnavailable(gpu, variant, spec, 2, variant === "tiled_f16" ? "f16" : "f32"))) continue;
      const x = randomF32(2 * 172, 4);
      x[172 + 100] = NaN;
      const { y, ref } = await run(variant, x, 2, w, wdq);
      expect(y.slice(40).every(Number.isNaN), `${variant}: row 1 must be NaN`).toBe(true);
      expect(relError(y.slice(0, 40), ref.slice(0, 40)), `${variant}: row 0 is unaffected`).toBeLessThanOrEqual(TOL[variant]);
      expect(relError(y, ref)).toBe(Infinity); // and the error measure can never pass it
    }
    runs.check();
    destroyPacked(w);
    expect(gpu.stats.liveBytes).toBe(base);
  });

  it("binds the weight in several row windows and gets the same result", async () => {
    const N = 300;
    const K = 300;
    const spec: QuantSpec = quantSpec(4, N, K, 64, false);
    const wt = GpuTensor.fromHost(gpu, randomF32(N * K, 8), [N, K], "f32", "w.windows");
    const w = await quantizeRtn(ctx, wt, { bits: 4, groupSize: 64 }); // the GPU quantizer feeds the kernels directly
    const packed = quantizePackRef((await wt.toHost()) as Float32Array, spec);
    const wdq = dequantizeRef(packed);
    const runs = new VariantRuns("qmatmul in row windows");
    for (const [variant, M] of [["tiled", 17], ["tiled", 3], ["subgroup", 3], ["dp4a", 3], ["tiled_f16", 5]] as const) {
      if (!runs.take(`${variant} M=${M}`, variantUnavailable(gpu, variant, spec, M, variant === "tiled_f16" ? "f16" : "f32"))) continue;
      const x = randomF32(M * K, 9);
      const { y, ref } = await run(variant, x, M, w, wdq, { maxWindowBytes: 4096 }); // 4 KiB: ~27 windows
      expect(relError(y, ref), `${variant} M=${M} in windows`).toBeLessThanOrEqual(TOL[variant]);
    }
    runs.check();
    wt.destroy();
    destroyPacked(w);
  });

  it("reports the worst relative error per variant", () => {
    const rows = [...worst.entries()].sort();
    console.log(rows.map(([k, v]) => `${k.padEnd(28)} ${v.toExponential(2)}`).join("\n"));
    expect(rows.length).toBeGreaterThan(0);
  });
});
