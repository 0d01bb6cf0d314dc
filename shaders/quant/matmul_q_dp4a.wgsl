// matmul_q_dp4a.wgsl — GEMV y[M, N] = x[M, K] · dequant(W)[N, K]^T with x quantized to int8 per 32-block and dot4I8Packed
//
// Two passes. quantize_x turns x into int8 blocks of 32 (scale = max|x| / 127, round to nearest even)
// laid out to match the weight words; main accumulates integer dot products per block and applies
// scale_w * scale_x * (dot - z * sum(xq)) once per block.
// Entry:     quantize_x
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(M * NB / WG_SIZE) workgroups folded into (x, y); one invocation = one 32-block of one x row
// Entry:     main
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      (ceil(nw / WG_SIZE) workgroups folded into (x, y), ceil(M / TM), 1); one invocation = one
//              row of W for TM rows of x starting at TM * workgroup_id.z (no barriers, no subgroups)
// Needs:     WGSL language feature packed_4x8_integer_dot_product (dot4I8Packed, pack4xI8)
// Bindings (group 0):
//   0 x        storage read        array<f32>        [M, K] row-major
//   1 xq       storage read_write  array<u32>        [M, NB * 8] int8 x, NB = ceil(K / 32); values past K are 0.
//                                                    BITS == 4: word 2j = x[8j + 0, 2, 4, 6], word 2j+1 =
//                                                    x[8j + 1, 3, 5, 7] (matches the low / high nibbles of
//                                                    weight word j); BITS == 8: word j = x[4j .. 4j+3]
//   2 xs       storage read_write  array<vec2<f32>>  [M, NB] (scale of the block, sum of its int8 values);
//                                                    the scale is NaN when the block holds NaN/Inf
//   3 qweight  storage read        array<u32>        [nw, KW] rows n0 .. n0+nw-1 of W (one binding window)
//   4 scales   storage read        array<u32>        [N * ng] f16, element i at bits 16*(i%2) of word i/2
//   5 zeros    storage read        array<u32>        [N, ceil(ng/8)] 4-bit zero points (asym int4); unread
//                                                    when sym or BITS == 8 (bind any tensor)
//   6 y        storage read_write  array<f32>        [M, N]; this dispatch writes columns n0 .. n0+nw-1
//   7 params   uniform             PackedParams { M, N, K, G (group size, a multiple of 32; int8: KW*4), ng, n0, nw,
//                                                        sym (1: int4 symmetric, implicit zero 8) }
// Overrides: BITS: u32 = 4 (4 or 8), TM: u32 = 1 (rows of x per invocation, 1..8; quantize_x ignores it)
// Packing:   as matmul_q.wgsl (src/quant/formats.ts). Weight words past KW in a row's last block are
//            read (from the next row) but meet xq = 0, so they add nothing.
// Accuracy:  x rounding to 8 bits per block: relative error ≈ 1/(2·127) of each block's max, ~4e-3 of ||y||.
// Reference: src/ref/quant.ts dequantizeRef + src/ref/matmul.ts matmulRef (within the stated tolerance)

#include "common/grid.wgsl"
#include "common/packed.wgsl"

override WG_SIZE: u32 = 64;
override BITS: u32 = 4;
override TM: u32 = 1;

const QB: u32 = 32u; // x block (values)

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> xq: array<u32>;
@group(0) @binding(2) var<storage, read_write> xs: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> qweight: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<u32>;
@group(0) @binding(5) var<storage, read> zeros: array<u32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<uniform> params: PackedParams;

@compute @workgroup_size(WG_SIZE)
fn quantize_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let K = params.K;
  let NB = (K + QB - 1u) / QB;
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  if (t >= params.M * NB) {
    return;
  }
  let m = t / NB;
  let b = t % NB;
  let k0 = b * QB;
  var amax = 0.0;
  var bad = false;
  for (var j = 0u; j < QB; j++) {
    let k = k0 + j;
    if (k < K) {
      let v = x[m * K + k];
      bad = bad || (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
      amax = max(amax, abs(v));
    }
  }
  let inv = select(0.0, 127.0 / amax, amax > 0.0);
  var sum = 0i;
  for (var c = 0u; c < QB / 8u; c++) {
    var q: array<i32, 8>;
    for (var j = 0u; j < 8u; j++) {
      let k = k0 + c * 8u + j;
      let v = select(0.0, x[m * K + k], k < K);
      q[j] = i32(clamp(round(v * inv), -127.0, 127.0));
      sum += q[j];
    }
    var a: u32;
    var h: u32;
    if (BITS == 4u) {
      a = pack4xI8(vec4<i32>(q[0], q[2], q[4], q[6]));
      h = pack4xI8(vec4<i32>(q[1], q[3], q[5], q[7]));
    } else {
      a = pack4xI8(vec4<i32>(q[0], q[1], q[2], q[3]));
      h = pack4xI8(vec4<i32>(q[4], q[5], q[6], q[7]));
    }
    let o = m * NB * 8u + b * 8u + 2u * c;
    xq[o] = a;
    xq[o + 1u] = h;
  }
  // A NaN/Inf in the block makes its scale NaN, so y turns NaN instead of silently finite (the bits
  // depend on `bad` so that no constant NaN is ever formed, which WGSL forbids).
  xs[m * NB + b] = vec2<f32>(select(amax / 127.0, bitcast<f32>(0x7fc00000u | u32(!bad)), bad), f32(sum));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid, WG_SIZE);
  let mb = wid.z * TM;
  if (r >= params.nw) {
    return;
  }
  let PER = 32u / BITS;
  let WPB = QB / PER; // weight words per x block: 4 (int4) or 8 (int8)
  let n = params.n0 + r;
  let K = params.K;
  let KW = (K + PER - 1u) / PER;
  let NB = (K + QB - 1u) / QB;
  let XW = NB * 8u;
  var acc: array<f32, 8>;
  for (var b = 0u; b < NB; b++) {
    let g = (b * QB) / params.G;
    let s = scale_at(n, g);
    let z = i32(zero_code(n, g));
    var wd: array<u32, 8>;
    for (var c = 0u; c < WPB; c++) {
      wd[c] = qweight[r * KW + b * WPB + c];
    }
    for (var i = 0u; i < TM; i++) {
      let m = min(mb + i, params.M - 1u);
      let xo = m * XW + b * 8u;
      var d = 0i;
      if (BITS == 4u) {
        for (var c = 0u; c < 4u; c++) {
          d += dot4I8Packed(wd[c] & 0x0f0f0f0fu, xq[xo + 2u * c]);
          d += dot4I8Packed((wd[c] >> 4u) & 0x0f0f0f0fu, xq[xo + 2u * c + 1u]);
        }
      } else {
        for (var c = 0u; c < 8u; c++) {
          d += dot4I8Packed(wd[c], xq[xo + c]);
        }
      }
      let xb = xs[m * NB + b];
      acc[i] = fma(s * xb.x, f32(d - z * i32(xb.y)), acc[i]);
    }
  }
  for (var i = 0u; i < TM; i++) {
    if (mb + i < params.M) {
      y[(mb + i) * params.N + n] = acc[i];
    }
  }
}
