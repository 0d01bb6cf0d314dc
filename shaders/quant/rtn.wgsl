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
// Override:  SYM: bool = false — int4 symmetric (levels -8..7 stored as q+8, implicit zero 8, no zeros written)
// Packing:   int4: element k of a row at bits 4*(k%8) of word k/8; int8: two's-complement byte k%4 of
//            word k/4; pad nibbles/bytes past K are 0 (layout: src/quant/formats.ts)
// Rules:     asym: s = f16(max((max-min)/15, 1e-5)), z = clamp(rint(-min/s), 0, 15), q = clamp(rint(w/s)+z, 0, 15)
//            sym:  s = f16(max|w|/7),   q = clamp(rint(w/s), -8, 7) + 8
//            int8: s = f16(max|w|/127), q = clamp(rint(w/s), -127, 127)
//            f16() and rint() round the EXACT quotient to nearest, ties to even: the f32 division is
//            only a first guess, fixed up by comparing against exact midpoints (quant/rounding.wgsl), so any
//            conforming device matches the CPU reference bit for bit.
// A group (int4) or row (int8) holding NaN/Inf, or whose scale overflows f16, writes nothing and is
// counted in flags; the host turns that into a TensorError naming the weight.
// Reference: src/ref/quant.ts quantizeRef + packRef

#include "common/grid.wgsl"
#include "quant/rounding.wgsl"

override WG_SIZE: u32 = 64;
override SYM: bool = false;

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
  let t = linear_index(wid, nwg, lid, WG_SIZE);
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

// ---- int8, one invocation per row ---------------------------------------------------------------

@compute @workgroup_size(WG_SIZE)
fn quantize_int8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid, WG_SIZE);
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
