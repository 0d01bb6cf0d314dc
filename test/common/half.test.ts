// The host codecs (src/common/half.ts). The two f16 encoders are independent implementations (bit
// manipulation of an f32; exact float64 arithmetic) and are checked against each other and against
// every f16 value; bf16's scalar and array forms against each other. No GPU.

import { describe, expect, it } from "vitest";
import {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
  f32ToF16Bits,
  f64ToF16Bits,
  rint,
} from "../../src/common/half.ts";
import { randomF32, rng } from "../../src/common/random.ts";

describe("rint", () => {
  it("rounds to nearest, ties to even", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001, -7.5, 7].map(rint)).toEqual([0, 2, 2, 0, -2, -2, 2, 3, -8, 7]);
  });
});

describe("f16", () => {
  it("round-trips every f16 value through both encoders", () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) {
        expect((f32ToF16Bits(v) & 0x7c00) === 0x7c00 && (f32ToF16Bits(v) & 0x3ff) !== 0).toBe(true);
        expect(f64ToF16Bits(v)).toBe(0x7e00);
        continue;
      }
      expect(f32ToF16Bits(v)).toBe(h);
      expect(f64ToF16Bits(v)).toBe(h);
    }
  });

  it("rounds f32 values the same way in both encoders (nearest, ties to even; subnormals; overflow to Inf)", () => {
    const r = rng(11);
    const bits = new Uint32Array(1);
    const f = new Float32Array(bits.buffer);
    for (let i = 0; i < 200_000; i++) {
      // exponents around f16's range (2^-27 .. 2^17), every mantissa pattern, both signs
      bits[0] = ((r() < 0.5 ? 0x80000000 : 0) | ((100 + Math.floor(45 * r())) << 23) | Math.floor(r() * 0x800000)) >>> 0;
      expect(f64ToF16Bits(f[0])).toBe(f32ToF16Bits(f[0]));
    }
    // exact midpoints between neighbouring f16 values go to the even one
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // half the smallest subnormal: to even (zero)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(2);
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f64ToF16Bits(65519.99)).toBe(0x7bff);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f64ToF16Bits(-0)).toBe(0x8000);
  });

  it("converts arrays element by element", () => {
    const x = randomF32(1000, 3, -70000, 70000);
    const h = f32ArrayToF16(x);
    expect([...h]).toEqual([...x].map(f32ToF16Bits));
    expect([...f16ArrayToF32(h)]).toEqual([...h].map(f16BitsToF32));
  });
});

describe("bf16", () => {
  it("scalar and array forms agree on every kind of f32 (NaN stays NaN, ties to even, overflow to Inf)", () => {
    const r = rng(5);
    const u = new Uint32Array(4096);
    for (let i = 0; i < u.length; i++) u[i] = Math.floor(r() * 2 ** 32) >>> 0;
    u.set([0x7f800001, 0xffc00000, 0x7f7fffff, 0x3f808000, 0x3f818000, 0x80000000, 0x00008000], 0);
    const x = new Float32Array(u.buffer);
    const b = f32ArrayToBf16(x);
    expect([...b]).toEqual([...x].map(f32ToBf16Bits));
    expect(b[0] & 0x7f).not.toBe(0); // a NaN keeps a non-zero mantissa
    expect(b[2]).toBe(0x7f80); // the largest f32 rounds to Inf
    expect(b[3]).toBe(0x3f80); // tie -> even
    expect(b[4]).toBe(0x3f82); // tie -> even (up)
    const back = bf16ArrayToF32(b);
    const want = [...b].map(bf16BitsToF32);
    for (let i = 0; i < b.length; i++) expect(Object.is(back[i], want[i]) || (Number.isNaN(back[i]) && Number.isNaN(want[i]))).toBe(true);
  });
});
