// rtn.wgsl — round-to-nearest quantizers: W[N, K] f32 -> packed int4 (group-wise) or int8 (per row)
//
// Entry:     quantize_int4
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(rows * ng / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d);
//              one invocation = one (row, group): min/max, scale, zero, and the group's G/8 words
// Entry:     quantize_int8
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(rows / WG_SIZE) workgroups folded into (x, y); one invocation = one row
// Bindings (group 0):
//   0 w        storage read        array<f32>          [rows, K] rows n0 .. n0+rows-1 of W (one binding window)
//   1 qweight  storage read_write  array<u32>          [rows, KW] the same rows; KW = ceil(K/8) (int4) or
//                                                      ceil(K/4) (int8) words
//   2 scales   storage read_write  array<atomic<u32>>  [ceil(N*ng/2)] f16 scale i = n*ng+g at bits 16*(i%2) of
//                                                      word i/2 (whole tensor; must start zeroed: OR-ed in)
//   3 zeros    storage read_write  array<atomic<u32>>  [N, ceil(ng/8)] int4 asym zero points, nibble g%8 of word
//                                                      g/8 (whole tensor, zeroed); a 4-byte dummy when SYM
//   4 flags    storage read_write  array<atomic<u32>, 4>  (groups with NaN/Inf, first such row n,
//                                                      groups whose scale overflows f16, first such row n);
//                                                      host initialises to (0, 0xffffffff, 0, 0xffffffff)
//   5 params   uniform             Params { rows (in window), K, G (int8: K), ng (int8: 1), n0 (first row), KW,
//                                           maxq (largest code: int4 asym 15, sym 7; int3 asym 7, sym 3; int8 127) }
// AWQ entries (fake quantization in f32, same rules for any bit width, src/quant/fake_quant.ts):
// Entry:     fake_quant — fq = dequant(quant(clip(w·diag(s))))·diag(1/s), s and 1/s from col_scale
//            (multiplications only: f32 division may be inexact on a device, multiplication is not)
//   Grid:      ceil(N * ng / WG_SIZE) workgroups folded into (x, y); one invocation = one (row, group)
// Entry:     clip_search — per (row, group), max|w| shrunk by (20 − i)/20, i < 10; the shrink whose
//            fake-quantized group gives the least mean squared partial-dot-product error over x
//   Grid:      as fake_quant; writes clip_max_out and clip_err
// Entry:     clip_apply — w_inout[n, k] = clamp(w_inout[n, k], −m, m), m = clip_max[n, k / G]
//   Grid:      ceil(N * K / WG_SIZE) workgroups folded into (x, y); one invocation = one element
//   6 fq_params     uniform             FqParams { N, K, G (<= 128), ng, maxq (asym 2^b − 1; sym 2^(b−1) − 1),
//                                                 use_scale, use_clip, T (rows of x), transposed,
//                                                 x_vec4 (clip_search reads x4; K % 4 == 0) }
//   7 fq            storage read_write  array<f32>  [N, K] fake-quantized weights ([K, N] when transposed = 1,
//                                                   the layout of nn/matmul_kn.wgsl)
//   8 col_scale     storage read        array<f32>  [2, K] AWQ input-channel scales s, then f32(1 / s)
//                                                   rounded on the host (use_scale = 1; else any)
//   9 clip_max      storage read        array<f32>  [N, ng] clip bound per (row, group) (use_clip = 1 / clip_apply)
//   10 clip_max_out storage read_write  array<f32>  [N, ng] chosen clip bound
//   11 clip_err     storage read_write  array<f32>  [N * ng, 2] error without shrink, error at the chosen shrink
//   12 x            storage read        array<f32>  [T, K] sampled input activations
//   13 w_inout      storage read_write  array<f32>  [N, K] weights clipped in place
//   14 x4           storage read        array<vec4<f32>>  x again, as vec4 words (clip_search, x_vec4 = 1)
//   (fake_quant and clip_search read w as [N, K], the whole weight in one binding)
// Override:  SYM: bool = false — int4 symmetric (levels -8..7 stored as q+8, implicit zero 8, no zeros written)
// Packing:   int4: element k of a row at bits 4*(k%8) of word k/8; int8: two's-complement byte k%4 of
//            word k/4; pad nibbles/bytes past K are 0 (layout: src/quant/formats.ts)
// Rules:     asym: s = f16(max((max-min)/15, 1e-5)), z = clamp(rint(-min/s), 0, 15), q = clamp(rint(w/s)+z, 0, 15)
//            sym:  s = f16(max|w|/7),   q = clamp(rint(w/s), -8, 7) + 8
//            int8: s = f16(max|w|/127), q = clamp(rint(w/s), -127, 127)
//            f16() and rint() round the EXACT quotient to nearest, ties to even: the f32 division is
//            only a first guess, fixed up by comparing against exact midpoints (see rne_div), so any
//            conforming device matches the CPU reference bit for bit.
// A group (int4) or row (int8) holding NaN/Inf, or whose scale overflows f16, writes nothing and is
// counted in flags; the host turns that into a TensorError naming the weight.
// Reference: src/ref/quant.ts quantizeRef + packRef

override WG_SIZE: u32 = 64;
override SYM: bool = false;

// f16 bits of f32(1e-5) (a subnormal, 168 * 2^-24): the asymmetric scale floor.
const F16_1EM5: u32 = 0x00a8u;

struct Params {
  rows: u32,
  K: u32,
  G: u32,
  ng: u32,
  n0: u32,
  KW: u32,
  maxq: u32,
}

@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> qweight: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> zeros: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> flags: array<atomic<u32>, 4>;
@group(0) @binding(5) var<uniform> params: Params;

// ---- exact rounding helpers -------------------------------------------------------------------

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

fn is_bad(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; // Inf or NaN, read from the bits
}

fn flag(slot: u32, n: u32) {
  atomicAdd(&flags[slot], 1u);
  atomicMin(&flags[slot + 1u], n);
}

// ---- int4, one invocation per (row, group) -----------------------------------------------------

@compute @workgroup_size(WG_SIZE)
fn quantize_int4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * WG_SIZE + lid;
  let ng = params.ng;
  if (t >= params.rows * ng) {
    return;
  }
  let r = t / ng;
  let g = t % ng;
  let K = params.K;
  let k0 = g * params.G;
  let k1 = min(k0 + params.G, K);
  let base = r * K;
  let n = params.n0 + r;

  var mn = w[base + k0];
  var mx = mn;
  var bad = false;
  for (var k = k0; k < k1; k++) {
    let v = w[base + k];
    bad = bad || is_bad(v);
    mn = min(mn, v);
    mx = max(mx, v);
  }
  if (bad) {
    flag(0u, n);
    return;
  }
  var sb: u32;
  if (SYM) {
    sb = div_to_f16(max(abs(mn), abs(mx)), f32(params.maxq));
  } else {
    sb = max(div_to_f16(mx - mn, f32(params.maxq)), F16_1EM5);
  }
  if (sb >= 0x7c00u) {
    flag(2u, n);
    return;
  }
  let s = f16_value(sb);
  var z = 8.0;
  if (!SYM) {
    z = clamp(rne_div(-mn, s), 0.0, f32(params.maxq));
  }

  let KW = params.KW;
  for (var kw = k0 / 8u; kw < (k1 + 7u) / 8u; kw++) {
    var word = 0u;
    for (var j = 0u; j < 8u; j++) {
      let k = kw * 8u + j;
      if (k < k1) {
        var q = 8.0;
        if (SYM) {
          if (s > 0.0) {
            q = clamp(rne_div(w[base + k], s), -f32(params.maxq) - 1.0, f32(params.maxq)) + 8.0;
          }
        } else {
          q = clamp(rne_div(w[base + k], s) + z, 0.0, f32(params.maxq));
        }
        word = word | (u32(q) << (4u * j));
      }
    }
    qweight[r * KW + kw] = word;
  }
  let i = n * ng + g;
  atomicOr(&scales[i >> 1u], sb << (16u * (i & 1u)));
  if (!SYM) {
    atomicOr(&zeros[n * ((ng + 7u) / 8u) + g / 8u], u32(z) << (4u * (g & 7u)));
  }
}

// ---- AWQ: fake quantization, clip search, clip --------------------------------------------------

struct FqParams {
  N: u32,
  K: u32,
  G: u32,
  ng: u32,
  maxq: u32,
  use_scale: u32,
  use_clip: u32,
  T: u32,
  transposed: u32,
  x_vec4: u32,
}

const MAX_G: u32 = 128u;

@group(0) @binding(6) var<uniform> fq_params: FqParams;
@group(0) @binding(7) var<storage, read_write> fq: array<f32>;
@group(0) @binding(8) var<storage, read> col_scale: array<f32>;
@group(0) @binding(9) var<storage, read> clip_max: array<f32>;
@group(0) @binding(10) var<storage, read_write> clip_max_out: array<f32>;
@group(0) @binding(11) var<storage, read_write> clip_err: array<f32>;
@group(0) @binding(12) var<storage, read> x: array<f32>;
@group(0) @binding(13) var<storage, read_write> w_inout: array<f32>;
@group(0) @binding(14) var<storage, read> x4: array<vec4<f32>>;

// (scale, zero) of a group with extremes mn <= mx, by the quantizer's rules for levels 0..maxq
// (asym) or -maxq-1..maxq (sym); scale 0 = a symmetric all-zero group.
fn fq_scale_zero(mn: f32, mx: f32) -> vec2<f32> {
  let maxq = f32(fq_params.maxq);
  if (SYM) {
    return vec2<f32>(f16_value(div_to_f16(max(abs(mn), abs(mx)), maxq)), 0.0);
  }
  let s = f16_value(max(div_to_f16(mx - mn, maxq), F16_1EM5));
  return vec2<f32>(s, clamp(rne_div(-mn, s), 0.0, maxq));
}

fn fq_value(v: f32, sz: vec2<f32>) -> f32 {
  let maxq = f32(fq_params.maxq);
  if (SYM) {
    if (sz.x == 0.0) {
      return 0.0;
    }
    return clamp(rne_div(v, sz.x), -maxq - 1.0, maxq) * sz.x;
  }
  return (clamp(rne_div(v, sz.x) + sz.y, 0.0, maxq) - sz.y) * sz.x;
}

fn fq_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG_SIZE + lid;
}

@compute @workgroup_size(WG_SIZE)
fn fake_quant(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let t = fq_index(wid, nwg, lid);
  let P = fq_params;
  if (t >= P.N * P.ng) {
    return;
  }
  let n = t / P.ng;
  let g = t % P.ng;
  let k0 = g * P.G;
  let k1 = min(k0 + P.G, P.K);
  var m = 0.0;
  if (P.use_clip == 1u) {
    m = clip_max[t];
  }
  var vals: array<f32, MAX_G>;
  var mn = 3.0e38;
  var mx = -3.0e38;
  for (var k = k0; k < k1; k++) {
    var v = w[n * P.K + k];
    if (P.use_scale == 1u) {
      v = v * col_scale[k];
    }
    if (P.use_clip == 1u) {
      v = clamp(v, -m, m);
    }
    vals[k - k0] = v;
    mn = min(mn, v);
    mx = max(mx, v);
  }
  let sz = fq_scale_zero(mn, mx);
  for (var k = k0; k < k1; k++) {
    var d = fq_value(vals[k - k0], sz);
    if (P.use_scale == 1u) {
      d = d * col_scale[P.K + k];
    }
    fq[select(n * P.K + k, k * P.N + n, P.transposed == 1u)] = d;
  }
}

@compute @workgroup_size(WG_SIZE)
fn clip_search(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let t = fq_index(wid, nwg, lid);
  let P = fq_params;
  if (t >= P.N * P.ng) {
    return;
  }
  let n = t / P.ng;
  let g = t % P.ng;
  let k0 = g * P.G;
  let k1 = min(k0 + P.G, P.K);
  var wv: array<f32, MAX_G>;
  var dq: array<f32, MAX_G>;
  var amax = 0.0;
  var mn = 3.0e38;
  var mx = -3.0e38;
  for (var k = k0; k < k1; k++) {
    let v = w[n * P.K + k];
    wv[k - k0] = v;
    amax = max(amax, abs(v));
    mn = min(mn, v);
    mx = max(mx, v);
  }
  var best = 3.0e38;
  var best_m = amax;
  var first = 0.0;
  // (20 − i) / 20 as f32 literals: a device's f32 division may be off by an ulp
  let shrink = array<f32, 10>(1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55);
  for (var i = 0u; i < 10u; i++) {
    let m = amax * shrink[i];
    let sz = fq_scale_zero(max(mn, -m), min(mx, m));
    for (var k = 0u; k < k1 - k0; k++) {
      dq[k] = fq_value(clamp(wv[k], -m, m), sz) - wv[k];
    }
    var err = 0.0;
    for (var r = 0u; r < P.T; r++) {
      var d = 0.0;
      let xb = r * P.K + k0;
      if (P.x_vec4 == 1u) {
        // the same sums from vec4 words (K and G multiples of 4): a quarter of the loads
        for (var k = 0u; k < k1 - k0; k += 4u) {
          let xv = x4[(xb + k) / 4u];
          d = fma(xv.x, dq[k], d);
          d = fma(xv.y, dq[k + 1u], d);
          d = fma(xv.z, dq[k + 2u], d);
          d = fma(xv.w, dq[k + 3u], d);
        }
      } else {
        for (var k = 0u; k < k1 - k0; k++) {
          d = fma(x[xb + k], dq[k], d);
        }
      }
      err = fma(d, d, err);
    }
    err = err / f32(P.T);
    if (i == 0u) {
      first = err;
    }
    if (err < best) {
      best = err;
      best_m = m;
    }
  }
  clip_max_out[t] = best_m;
  clip_err[2u * t] = first;
  clip_err[2u * t + 1u] = best;
}

@compute @workgroup_size(WG_SIZE)
fn clip_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = fq_index(wid, nwg, lid);
  let P = fq_params;
  if (i >= P.N * P.K) {
    return;
  }
  let n = i / P.K;
  let k = i % P.K;
  let m = clip_max[n * P.ng + k / P.G];
  w_inout[i] = clamp(w_inout[i], -m, m);
}

// ---- int8, one invocation per row ---------------------------------------------------------------

@compute @workgroup_size(WG_SIZE)
fn quantize_int8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let r = (wid.y * nwg.x + wid.x) * WG_SIZE + lid;
  if (r >= params.rows) {
    return;
  }
  let K = params.K;
  let base = r * K;
  let n = params.n0 + r;
  var amax = 0.0;
  var bad = false;
  for (var k = 0u; k < K; k++) {
    let v = w[base + k];
    bad = bad || is_bad(v);
    amax = max(amax, abs(v));
  }
  if (bad) {
    flag(0u, n);
    return;
  }
  let sb = div_to_f16(amax, 127.0);
  if (sb >= 0x7c00u) {
    flag(2u, n);
    return;
  }
  let s = f16_value(sb);
  let KW = params.KW;
  for (var kw = 0u; kw < KW; kw++) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let k = kw * 4u + j;
      if (k < K && s > 0.0) {
        let q = i32(clamp(rne_div(w[base + k], s), -127.0, 127.0));
        word = word | ((bitcast<u32>(q) & 0xffu) << (8u * j));
      }
    }
    qweight[r * KW + kw] = word;
  }
  atomicOr(&scales[n >> 1u], sb << (16u * (n & 1u)));
}
