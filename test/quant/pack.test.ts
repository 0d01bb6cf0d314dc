// The host quantizer and packer (src/quant/pack.ts) against the float64 references of
// src/ref/quant.ts, bit for bit: every bit width, symmetric and asymmetric, ragged K (a short last
// group, a short last word), zero rows, exact ties, subnormal and near-overflow scales, and the
// errors on NaN/Inf and f16 overflow. No GPU.

import { describe, expect, it } from "vitest";
import { f64ToF16Bits } from "../../src/common/half.ts";
import { quantSpec, type QuantBits, type QuantSpec, specName } from "../../src/quant/formats.ts";
import { dequantizePacked, packCodes, quantizeCodes, unpackCodes } from "../../src/quant/pack.ts";
import { dequantizeRef, packRef, quantizeRef, unpackRef } from "../../src/ref/quant.ts";
import { rng } from "../../src/ref/random.ts";

/** [N, K] values: per row a magnitude 2^-20 .. 2^12, some rows zero, some groups on a half-step grid (ties). */
function weights(N: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    const kind = n % 5;
    const mag = 2 ** Math.floor(-20 + 32 * r());
    for (let k = 0; k < K; k++) {
      const i = n * K + k;
      if (kind === 0) w[i] = 0; // a zero row: scale 0 (sym, int8) or the asym floor
      else if (kind === 1) w[i] = (Math.floor(31 * r()) - 15) / 2; // half-integers: ties at scale 1
      else if (kind === 2) w[i] = k % 3 === 0 ? -0 : mag; // constant groups with -0
      else w[i] = (2 * r() - 1) * mag;
    }
  }
  return w;
}

const SHAPES: [number, number][] = [
  [1, 1],
  [3, 7],
  [5, 8],
  [7, 33],
  [10, 172], // stories260K's FFN width: G = 32 ends in a group of 12
  [6, 200],
  [4, 257],
];

const SPECS: { bits: QuantBits; G: number | undefined; sym: boolean }[] = [
  ...([3, 4] as const).flatMap((bits) => [8, 32, 128].flatMap((G) => [false, true].map((sym) => ({ bits, G, sym })))),
  { bits: 8, G: undefined, sym: true },
];

function expectSame<T extends { [k: string]: unknown }>(got: T, want: T): void {
  for (const key of Object.keys(want)) {
    const [g, w] = [got[key], want[key]];
    if (ArrayBuffer.isView(w)) expect([...(g as Uint32Array)], key).toEqual([...(w as Uint32Array)]);
    else expect(g, key).toEqual(w);
  }
}

describe("quant/pack.ts against ref/quant.ts", () => {
  it("uses the asymmetric scale floor of rtn.wgsl (f16 of f32(1e-5))", () => {
    expect(f64ToF16Bits(Math.fround(1e-5))).toBe(0x00a8);
  });

  let cases = 0;
  for (const { bits, G, sym } of SPECS) {
    for (const [N, K] of SHAPES) {
      const spec: QuantSpec = quantSpec(bits, N, K, G, sym);
      it(`${specName(spec)} [${N}, ${K}]: codes, scales, zeros, packed words, unpacked codes and dequantized weights`, () => {
        for (const seed of [1, 2, 3]) {
          const w = weights(N, K, 1000 * seed + 17 * K + bits);
          const want = quantizeRef(w, spec);
          const got = quantizeCodes(w, spec);
          expectSame({ ...got }, { ...want });
          const packed = packCodes(got);
          const packedRef = packRef(want);
          expectSame({ ...packed }, { ...packedRef });
          expectSame({ ...unpackCodes(packed) }, { ...unpackRef(packedRef) });
          const dq = dequantizePacked(packed);
          const dqRef = dequantizeRef(packedRef);
          expect(Buffer.from(dq.buffer).equals(Buffer.from(dqRef.buffer))).toBe(true);
        }
      });
      cases++;
    }
  }

  it("packs any valid codes as packRef does (codes that no quantizer chose, e.g. QAT's)", () => {
    const r = rng(7);
    for (const { bits, G, sym } of SPECS) {
      const spec = quantSpec(bits, 9, 75, G, sym);
      const { codes, scales, zeros } = quantizeRef(weights(9, 75, 5), spec);
      for (let i = 0; i < codes.length; i++) codes[i] = bits === 8 ? Math.floor(255 * r()) - 127 : Math.floor(16 * r());
      for (let i = 0; i < scales.length; i++) scales[i] = Math.floor(0x7c00 * r());
      if (zeros) for (let i = 0; i < zeros.length; i++) zeros[i] = Math.floor(16 * r());
      const c = { spec, codes, scales, zeros };
      expectSame({ ...packCodes(c) }, { ...packRef(c) });
    }
  });

  it("refuses NaN/Inf and f16-overflowing scales with the reference's errors", () => {
    const spec = quantSpec(4, 2, 40, 32, false);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const w = weights(2, 40, 9);
      w[45] = bad;
      expect(() => quantizeCodes(w, spec, "x")).toThrow(captureError(() => quantizeRef(w, spec, "x")));
    }
    for (const s of SPECS) {
      const spec2 = quantSpec(s.bits, 2, 40, s.G, s.sym);
      const w = weights(2, 40, 9);
      w[50] = 3e38;
      expect(() => quantizeCodes(w, spec2, "y")).toThrow(captureError(() => quantizeRef(w, spec2, "y")));
    }
    expect(() => quantizeCodes(new Float32Array(3), spec)).toThrow(/has 3 values/);
  });

  it("covers every shape and spec", () => {
    expect(cases).toBe(SPECS.length * SHAPES.length);
  });
});

function captureError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("the reference did not throw");
}
