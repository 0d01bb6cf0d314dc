// common/half.ts — IEEE binary16 (f16) and bfloat16 (bf16) on the host: the one codec module for
// every 16-bit payload (tensors store both as raw 16-bit patterns, f16 two per u32 word), and rint,
// the rounding every quantizer shares. Rounding is to nearest, ties to even, as WGSL's
// pack2x16float does on every device we test; overflow goes to ±Inf, NaN stays NaN (quiet).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round to nearest integer, ties to even (numpy rint, WGSL round). */
export function rint(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

// --- f16 -----------------------------------------------------------------------------------------

/** f32 value -> f16 bit pattern (round to nearest even). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    // subnormal f16 (or zero): shift the implicit-one mantissa right, round to nearest even
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent: correct
  return sign | h;
}

/**
 * Any float64 value -> f16 bits, rounded once (to nearest, ties to even); ±Inf on overflow. For an
 * exact quotient such as a scale max|w| / 7, where rounding to f32 first could round twice.
 */
export function f64ToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65504 + half an ulp (a tie rounds to even = Inf)
  if (a < 2 ** -14) return sign | rint(a * 2 ** 24); // subnormal (1024 carries into the exponent: correct)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  let m = rint(a / 2 ** (e - 10)); // 1024 .. 2048, exact scaling
  if (m === 2048) {
    m = 1024;
    e++;
  }
  if (e + 15 >= 31) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | (m - 1024);
}

/** f16 bit pattern -> f32 value (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Float32Array [n] -> f16 bit patterns [n]. */
export function f32ArrayToF16(a: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16Bits(a[i]);
  return out;
}

/** f16 bit patterns [n] -> Float32Array [n]. */
export function f16ArrayToF32(a: Uint16Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f16BitsToF32(a[i]);
  return out;
}

// --- bf16 ----------------------------------------------------------------------------------------

/** f32 value -> bf16 bits (round to nearest even; NaN stays a quiet NaN; overflow -> ±Inf). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits -> f32 value (exact: bf16 is the top half of an f32). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** bf16 bits [n] -> f32 [n] (exact). */
export function bf16ArrayToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const d32 = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) d32[i] = src[i] << 16;
  return dst;
}

/** f32 [n] -> bf16 bits [n], round to nearest even; NaN stays a quiet NaN. */
export function f32ArrayToBf16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const s32 = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const b = s32[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) dst[i] = (b >>> 16) | 0x40;
    else dst[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return dst;
}
