// rounding.wgsl — exact round-to-nearest-even of quotients to f16 scales and integer levels, matching the CPU reference bit for bit
//
// Provides:  F16_1EM5                  f16 bits of f32(1e-5) (a subnormal, 168 * 2^-24): the asymmetric
//                                      scale floor
//            f16_bits(v) -> u32        positive finite f32 -> binary16 bits, round to nearest even on the
//                                      bits (no reliance on the device's f32 -> f16 conversion, which may
//                                      flush subnormals); 0x7c00 on overflow
//            f16_value(h) -> f32       value of positive binary16 bits, exactly (0x7c00 reads as 65536)
//            div_to_f16(a, d) -> u32   binary16 bits of the EXACT quotient a / d (a >= 0 finite, d the
//                                      largest level) rounded to nearest, ties to even; 0x7c00 on overflow
//            is_odd(q) -> bool         q (an integer-valued f32) is odd
//            rne_div(a, s) -> f32      rint(a / s) of the EXACT quotient, ties to even, for s > 0 an f16 value
// Needs:     nothing. The f32 division is only a first guess, fixed up by comparing against exact
//            midpoints, so any conforming device rounds as the CPU reference (src/ref/quant.ts) does.

// f16 bits of f32(1e-5) (a subnormal, 168 * 2^-24): the asymmetric scale floor.
const F16_1EM5: u32 = 0x00a8u;

// Positive finite f32 -> binary16 bits, round to nearest even, done on the bits (no reliance on
// the device's f32->f16 conversion, which may flush subnormals). 0x7c00 on overflow.
fn f16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let e = i32((b >> 23u) & 0xffu) - 112;
  var mant = b & 0x7fffffu;
  if (e >= 31) {
    return 0x7c00u;
  }
  if (e <= 0) {
    if (e < -10) {
      return 0u;
    }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    let rest = mant & ((1u << shift) - 1u);
    var h = mant >> shift;
    if (rest > half || (rest == half && (h & 1u) == 1u)) {
      h += 1u;
    }
    return h;
  }
  var h = (u32(e) << 10u) | (mant >> 13u);
  let rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) {
    h += 1u;
  }
  return min(h, 0x7c00u);
}

// Value of positive binary16 bits, exactly; 0x7c00 reads as 65536 (the step after 65504).
fn f16_value(h: u32) -> f32 {
  let e = h >> 10u;
  let m = h & 0x3ffu;
  if (e == 0u) {
    return f32(m) * 5.9604644775390625e-8; // m * 2^-24
  }
  return bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
}

// binary16 bits of the exact quotient a / d (a >= 0 finite, d in {7, 15, 127}) rounded to nearest,
// ties to even; 0x7c00 when it overflows. The midpoints between neighbouring f16 values have at most
// 12 significant bits, so midpoint * d (<= 19 bits) is exact in f32 and the comparisons are exact.
fn div_to_f16(a: f32, d: f32) -> u32 {
  let h = f16_bits(a / d);
  if (h < 0x7c00u) {
    let up = (f16_value(h) + f16_value(h + 1u)) * 0.5 * d;
    if (a > up || (a == up && (h & 1u) == 1u)) {
      return h + 1u;
    }
  }
  if (h > 0u) {
    let dn = (f16_value(h - 1u) + f16_value(h)) * 0.5 * d;
    if (a < dn || (a == dn && (h & 1u) == 1u)) {
      return h - 1u;
    }
  }
  return h;
}

fn is_odd(q: f32) -> bool {
  return (i32(q) & 1) != 0;
}

// rint(a / s) of the exact quotient, ties to even, for s > 0 an f16 value: (q ± 0.5) * s has at most
// 11 + 13 significant bits for |q| <= 4096, so the boundary tests are exact. Quotients beyond ±4096
// come back approximate, which no caller can see: they all clamp to within ±127.
fn rne_div(a: f32, s: f32) -> f32 {
  let q = round(a / s);
  if (abs(q) > 4096.0) {
    return q;
  }
  let hi = (q + 0.5) * s;
  if (a > hi || (a == hi && is_odd(q))) {
    return q + 1.0;
  }
  let lo = (q - 0.5) * s;
  if (a < lo || (a == lo && is_odd(q))) {
    return q - 1.0;
  }
  return q;
}
