// kmajor_dp4a.wgsl — GEMV y[M, N] = x[M, K] · dequant(W)[N, K]^T on the K-major repacked weight (kmajor.wgsl), x as int8 blocks and dot4I8Packed
//
// x is first quantized to int8 per block of 32 values by quant/matmul_q_dp4a.wgsl:quantize_x (same
// xq / xs layout as there); then each invocation takes 4 adjacent output columns and, per 32-block,
// accumulates integer dot products of the nibbles (or bytes) with the int8 x, applying
// scale_w * scale_x * (dot - z * sum(xq)) once per block. No workgroup memory, no barriers.
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
// Grid:      (ceil(N4P / WG_SIZE) workgroups folded into (x, y), ceil(M / TM), 1); one invocation =
//            output columns 4c .. 4c+3 for TM rows of x starting at TM * workgroup_id.z
// Needs:     WGSL language feature packed_4x8_integer_dot_product (dot4I8Packed); the `subgroups`
//            feature with subgroups of >= 8 invocations
// Bindings (group 0):
//   0 xq       storage read        array<u32>        [M, NB * 8] words of int8 x, NB = ceil(K / 32); values past K are 0.
//                                                    BITS == 4: word 2j = x[8j + 0, 2, 4, 6], word 2j+1 =
//                                                    x[8j + 1, 3, 5, 7]; BITS == 8: word j = x[4j .. 4j+3]
//   1 xs       storage read        array<vec2<f32>>  [M, NB] (scale of the block, sum of its int8 values)
//   2 qkv      storage read        array<vec4<u32>>  K-major words in blocks of CB = 8 column quads (kmajor.wgsl qk):
//                                                    word kw of quad c at ((c / CB) * KWP + kw) * CB + c % CB;
//                                                    KWP = NB * 32 / PER, words past the canonical KW are 0
//   3 szv      storage read        array<vec4<u32>>  (f16 scale | f16 zero << 16) per column, same blocking with ng
//                                                    in place of KWP (kmajor.wgsl sz)
//   4 y        storage read_write  array<f32>        [M, N] row-major
//   5 params   uniform             KMajorParams { M, N, K (elements), KW, KWP, N4P, ng, GW (words per group: G / PER;
//                                                 int8: KW), mode } — as kmajor.wgsl; GW is a multiple of 32 / PER
//                                                 for int4 (G % 32 == 0)
// Overrides: BITS: u32 = 4 (4 or 8), TM: u32 = 1 (rows of x per invocation: 1, 2 or 4; M > 4 takes
//            ceil(M / 4) z slices)
// lavapipe:  lane l of each subgroup loads word l of the block's 8 xq words and the others take them
//            with subgroupShuffle (a load of one address by every invocation is slow on llvmpipe);
//            out-of-range invocations compute a clamped column and skip the store (no early return).
// Packing:   as kmajor.wgsl. Accuracy: x rounded to 8 bits per 32-block, ~4e-3 relative error of y.
// Reference: src/ref/quant.ts dequantizeRef + src/ref/matmul.ts matmulRef (within the stated tolerance)

enable subgroups;

#include "common/grid.wgsl"
#include "quant/kmajor_layout.wgsl"

override WG_SIZE: u32 = 64;
override BITS: u32 = 4;
override TM: u32 = 1;

@group(0) @binding(0) var<storage, read> xq: array<u32>;
@group(0) @binding(1) var<storage, read> xs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> szv: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: KMajorParams;

// Rows of x as plain variables (not arrays, which llvmpipe keeps in memory); TM <= 4 so the
// accumulators (4 SIMD registers per row) do not spill. m_i = the row index, clamped to M - 1.
var<private> m0: u32; var<private> m1: u32; var<private> m2: u32; var<private> m3: u32;
var<private> a0: vec4<f32>; var<private> a1: vec4<f32>; var<private> a2: vec4<f32>; var<private> a3: vec4<f32>;

// dot4I8Packed of each of the 4 column words with the same x word.
fn dot4(w: vec4<u32>, xw: u32) -> vec4<i32> {
  return vec4<i32>(dot4I8Packed(w.x, xw), dot4I8Packed(w.y, xw), dot4I8Packed(w.z, xw), dot4I8Packed(w.w, xw));
}

// Integer dot products of one 32-block of x (this lane holds xq word `lane % 8` of the block in xl;
// word j comes from lane j) with the block's weight words starting at vec4 index wi (successive
// words CB apart). The weight words are reloaded per row (cache hits) rather than held, which keeps
// 8 more vectors out of the registers.
fn block_dot(wi: u32, xl: u32) -> vec4<i32> {
  if (BITS == 4u) {
    // 4 words per column = 32 nibbles: low nibbles pair with the even-k x word, high with the odd.
    let mask = vec4<u32>(0x0f0f0f0fu);
    let s4 = vec4<u32>(4u);
    var d = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
      let v = qkv[wi + j * CB];
      d += dot4(v & mask, subgroupShuffle(xl, 2u * j)) + dot4((v >> s4) & mask, subgroupShuffle(xl, 2u * j + 1u));
    }
    return d;
  }
  var d = vec4<i32>(0);
  for (var j = 0u; j < 8u; j++) {
    d += dot4(qkv[wi + j * CB], subgroupShuffle(xl, j));
  }
  return d;
}

// a += s_w * s_x * (dot - z * sum(xq)) for block b of row m.
fn block_row(a: vec4<f32>, wi: u32, m: u32, b: u32, NB: u32, l: u32, s: vec4<f32>, z: vec4<i32>) -> vec4<f32> {
  let xl = xq[(m * NB + b) * 8u + l];
  let xb = xs[m * NB + b];
  return fma(s * xb.x, vec4<f32>(block_dot(wi, xl) - z * i32(xb.y)), a);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let craw = linear_index(wid, nwg, lid, WG_SIZE);
  let c = min(craw, params.N4P - 1u); // no early return (see the header)
  let mb = wid.z * TM;                // < M by the grid
  let qb = (c / CB) * params.KWP * CB + c % CB; // vec4 index of word 0 of this column quad; word kw at + kw * CB
  let sb = (c / CB) * params.ng * CB + c % CB;
  let PER = 32u / BITS;
  let WPB = 32u / PER;                  // weight words per 32-block: 4 (int4) or 8 (int8)
  let NB = (params.K + 31u) / 32u;
  let BPG = select(params.GW / WPB, NB, BITS == 8u); // blocks per group
  let l = lane % 8u;
  let ml = params.M - 1u;
  m0 = min(mb, ml);
  m1 = min(mb + 1u, ml);
  m2 = min(mb + 2u, ml);
  m3 = min(mb + 3u, ml);
  for (var g = 0u; g < params.ng; g++) {
    let p = szv[sb + g * CB];
    let s = vec4<f32>(unpack2x16float(p.x).x, unpack2x16float(p.y).x, unpack2x16float(p.z).x, unpack2x16float(p.w).x);
    let z = vec4<i32>(vec4<f32>(unpack2x16float(p.x).y, unpack2x16float(p.y).y, unpack2x16float(p.z).y, unpack2x16float(p.w).y));
    let b1 = min((g + 1u) * BPG, NB);
    for (var b = g * BPG; b < b1; b++) {
      let wi = qb + b * WPB * CB;
      a0 = block_row(a0, wi, m0, b, NB, l, s, z);
      if (TM > 1u) { a1 = block_row(a1, wi, m1, b, NB, l, s, z); }
      if (TM > 2u) {
        a2 = block_row(a2, wi, m2, b, NB, l, s, z);
        a3 = block_row(a3, wi, m3, b, NB, l, s, z);
      }
    }
  }
  if (craw < params.N4P) {
    store(mb, c, a0);
    if (TM > 1u) { store(mb + 1u, c, a1); }
    if (TM > 2u) { store(mb + 2u, c, a2); store(mb + 3u, c, a3); }
  }
}
