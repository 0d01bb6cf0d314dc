// K-major GEMVs (src/quant/kmajor.ts) against the float64 reference matmul on the dequantized weights
// (src/ref/quant.ts + src/ref/matmul.ts): the repacked copy bit for bit against a host repack, both
// variants for every M in 1..8 with ragged N and K, routing through qmatmul, caching, and no leaked
// GPU memory (the copy goes with destroyPacked or releaseKMajor).
//
// Tolerances (relative error ||y - ref|| / ||ref||), as test/quant/matmul.test.ts:
//   kmajor       1e-5 — f32 accumulation-order rounding only
//   kmajor_dp4a  1e-2 — x rounded to int8 per 32-block (≈ 4e-3 for uniform x)
import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { groupsPerRow, type HostPackedWeight, quantSpec, specName, wordsPerRow, zeroWordsPerRow } from "../../src/quant/formats.ts";
import { hasKMajor, KMAJOR_BLOCK, KMAJOR_VARIANTS, kmajorBytes, type KMajorVariant, prepareKMajor, releaseKMajor } from "../../src/quant/kmajor.ts";
import { chooseVariant, qmatmul, QMATMUL_ALL_VARIANTS, variantUnavailable } from "../../src/quant/matmul.ts";
import { destroyPacked, type GpuPackedWeight, uploadPacked } from "../../src/quant/packed.ts";
import { quantizeRtn } from "../../src/quant/rtn.ts";
import { f32ToF16Bits } from "../../src/ref/f16.ts";
import { matmulRef } from "../../src/ref/matmul.ts";
import { dequantizeRef, quantizePackRef } from "../../src/ref/quant.ts";
import { gpuContext, randomF32, relError } from "../helpers/gpu.ts";
import { VariantRuns } from "../helpers/variants.ts";

const TOL: Record<KMajorVariant, number> = { kmajor: 1e-5, kmajor_dp4a: 1e-2 };

/** Host version of the repack (the layout comment of src/quant/kmajor.ts): p -> { qk, sz } words. */
function repackRef(p: HostPackedWeight): { qk: Uint32Array; sz: Uint32Array } {
  const { N, K } = p;
  const PER = p.bits === 8 ? 4 : 8;
  const KW = wordsPerRow(p);
  const ng = groupsPerRow(p);
  const KWP = Math.ceil(K / 32) * (32 / PER);
  const B = KMAJOR_BLOCK;
  const NB32 = Math.ceil(N / B);
  const qk = new Uint32Array(NB32 * KWP * B);
  const sz = new Uint32Array(NB32 * ng * B);
  const halves = new Uint16Array(p.scales.buffer, p.scales.byteOffset, N * ng);
  for (let n = 0; n < N; n++) {
    const [blk, col] = [Math.floor(n / B), n % B];
    for (let kw = 0; kw < KW; kw++) qk[(blk * KWP + kw) * B + col] = p.qweight[n * KW + kw];
    for (let g = 0; g < ng; g++) {
      const z = p.bits === 8 ? 0 : p.zeros ? (p.zeros[n * zeroWordsPerRow(p) + (g >> 3)] >>> (4 * (g & 7))) & 15 : 8;
      sz[(blk * ng + g) * B + col] = (halves[n * ng + g] | (f32ToF16Bits(z) << 16)) >>> 0;
    }
  }
  return { qk, sz };
}

describe("K-major GEMV y = x · dequant(W)ᵀ", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;
  const worst = new Map<string, number>();

  async function run(variant: KMajorVariant | undefined, x: Float32Array, M: number, w: GpuPackedWeight, opts = {}) {
    const xt = GpuTensor.fromHost(gpu, x, [M, w.K], "f32", "x");
    const yt = GpuTensor.empty(gpu, [M, w.N], "f32", "y");
    try {
      const b = new CommandBatch(gpu);
      const used = await qmatmul(ctx, b, xt, w, yt, { variant, ...opts });
      b.submit();
      return { y: (await yt.toHost()) as Float32Array, used };
    } finally {
      xt.destroy();
      yt.destroy();
    }
  }

  const specs: [number, number | undefined, boolean][] = [[4, 32, false], [4, 64, true], [4, 128, false], [8, undefined, true]];
  for (const [bits, G, sym] of specs) {
    for (const [N, K] of [[101, 173], [172, 296]]) { // K % 8 != 0: a ragged 8-value chunk of x; K % 8 == 0: none
      const spec = quantSpec(bits, N, K, G, sym);
      it(`${specName(spec)} N=${N} K=${K}: repack is exact and both variants match the reference for every M in 1..8`, async () => {
        const base = gpu.stats.liveBytes;
        const packed = quantizePackRef(randomF32(N * K, N * 5 + K + bits), spec);
        const wdq = dequantizeRef(packed);
        const w = uploadPacked(gpu, packed, "w");
        const km = await prepareKMajor(ctx, w);
        expect(km.qk.byteSize + km.sz.byteSize).toBe(kmajorBytes(spec).total);
        const want = repackRef(packed);
        expect(Array.from((await km.qk.toHost()) as Uint32Array)).toEqual(Array.from(want.qk));
        expect(Array.from((await km.sz.toHost()) as Uint32Array)).toEqual(Array.from(want.sz));
        const runs = new VariantRuns(`K-major GEMV ${specName(spec)} N=${N} K=${K}`);
        for (let M = 1; M <= 8; M++) {
          const x = randomF32(M * K, M * 13 + N + K);
          const ref = matmulRef(x, wdq, M, N, K);
          for (const variant of KMAJOR_VARIANTS) {
            if (!runs.take(variant, variantUnavailable(gpu, variant, spec, M, "f32"))) continue;
            const { y, used } = await run(variant, x, M, w);
            expect(used).toBe(variant);
            const err = relError(y, ref);
            const key = `${variant} ${specName(spec)}`;
            worst.set(key, Math.max(worst.get(key) ?? 0, err));
            expect(err, `${variant} M=${M} N=${N} K=${K} ${specName(spec)}`).toBeLessThanOrEqual(TOL[variant]);
          }
        }
        runs.check();
        expect(await prepareKMajor(ctx, w)).toBe(km); // cached: repacked once
        destroyPacked(w);
        expect(hasKMajor(w)).toBe(false);
        expect(gpu.stats.liveBytes).toBe(base);
      });
    }
  }

  it("qmatmul routes GEMVs and GEMMs on CPU adapters to kmajor (kmajor_dp4a with int8Activations: true)", async () => {
    const base = gpu.stats.liveBytes;
    const spec = quantSpec(4, 64, 256, 32, false);
    const packed = quantizePackRef(randomF32(64 * 256, 5), spec);
    const w = uploadPacked(gpu, packed, "w.route");
    const x = randomF32(3 * 256, 6);
    const ref = matmulRef(x, dequantizeRef(packed), 3, 64, 256);
    const cpu = gpu.adapterInfo.kind === "cpu";
    expect(chooseVariant(gpu, spec, 9, "f32")).toBe(cpu && gpu.has("subgroups") ? "kmajor" : "tiled");
    expect(chooseVariant(gpu, spec, 3, "f16")).toBe("tiled_f16");
    if (cpu) {
      expect(chooseVariant(gpu, spec, 8, "f32")).toBe("kmajor");
      expect(chooseVariant(gpu, spec, 1, "f32", { int8Activations: true })).toBe("kmajor_dp4a");
    } else {
      expect(KMAJOR_VARIANTS).not.toContain(chooseVariant(gpu, spec, 1, "f32"));
    }
    const auto = await run(undefined, x, 3, w);
    expect(auto.used).toBe(cpu ? "kmajor" : chooseVariant(gpu, spec, 3, "f32"));
    expect(relError(auto.y, ref)).toBeLessThanOrEqual(cpu ? 1e-5 : 1e-2);
    expect(hasKMajor(w)).toBe(cpu);
    const runs = new VariantRuns("K-major M=37");
    for (const variant of KMAJOR_VARIANTS) {
      // Any M runs (ceil(M / 4) slices).
      const M = 37;
      if (!runs.take(variant, variantUnavailable(gpu, variant, spec, M, "f32"))) continue;
      const xs = randomF32(M * 256, 7);
      const big = await run(variant, xs, M, w);
      expect(relError(big.y, matmulRef(xs, dequantizeRef(packed), M, 64, 256)), `${variant} M=37`).toBeLessThanOrEqual(TOL[variant]);
    }
    runs.check();
    expect(variantUnavailable(gpu, "kmajor_dp4a", quantSpec(4, 64, 256, 64, false), 1, "f32") ?? "").not.toMatch(/group size/);
    expect(variantUnavailable(gpu, "kmajor_dp4a", quantSpec(4, 64, 256, 8, false), 1, "f32")).toBeTruthy();
    await expect(run("kmajor", x, 3, w, { maxWindowBytes: 4096 })).rejects.toThrow(/maxWindowBytes/);
    expect(QMATMUL_ALL_VARIANTS).toEqual(expect.arrayContaining(["tiled", "kmajor", "kmajor_dp4a"]));
    releaseKMajor(w);
    releaseKMajor(w); // idempotent
    expect(hasKMajor(w)).toBe(false);
    destroyPacked(w);
    expect(gpu.stats.liveBytes).toBe(base);
  });

  it("works on the GPU quantizer's output, and NaN in x reaches y in both variants", async () => {
    const base = gpu.stats.liveBytes;
    const [N, K] = [40, 172];
    const wt = GpuTensor.fromHost(gpu, randomF32(N * K, 3), [N, K], "f32", "w.nan");
    const w = await quantizeRtn(ctx, wt, { bits: 4, groupSize: 32 });
    const wdq = dequantizeRef(quantizePackRef((await wt.toHost()) as Float32Array, quantSpec(4, N, K, 32, false)));
    const runs = new VariantRuns("K-major NaN propagation");
    for (const variant of KMAJOR_VARIANTS) {
      if (!runs.take(variant, variantUnavailable(gpu, variant, w, 2, "f32"))) continue;
      const x = randomF32(2 * K, 4);
      x[K + 100] = NaN;
      const { y } = await run(variant, x, 2, w);
      expect(y.slice(N).every(Number.isNaN), `${variant}: row 1 must be NaN`).toBe(true);
      expect(relError(y.slice(0, N), matmulRef(x.slice(0, K), wdq, 1, N, K)), `${variant}: row 0 is unaffected`).toBeLessThanOrEqual(TOL[variant]);
    }
    runs.check();
    wt.destroy();
    destroyPacked(w);
    expect(gpu.stats.liveBytes).toBe(base);
  });

  it("reports the worst relative error per variant", () => {
    const rows = [...worst.entries()].sort();
    console.log(rows.map(([k, v]) => `${k.padEnd(28)} ${v.toExponential(2)}`).join("\n"));
    expect(rows.length).toBeGreaterThan(0);
  });
});
