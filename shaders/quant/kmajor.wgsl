// kmajor.wgsl — K-major repack of packed int4/int8 weights, and the float-dequant GEMV y[M, N] = x[M, K] · dequant(W)[N, K]^T on it (M <= 8)
//
// A load-time copy of a canonical packed weight (src/quant/formats.ts) in a layout for CPU-like
// adapters (lavapipe, SwiftShader). Columns go in blocks of CB = 8 column quads (32 columns, one
// llvmpipe SIMD batch of 8 invocations); within a block, word kw of the 4 adjacent columns
// 4c .. 4c+3 is one vec4<u32>, and the block's words for kw and kw+1 are adjacent:
//   qkv[((c / CB) * KWP + kw) * CB + c % CB]      (c = column quad, 0 .. N4P-1)
// so neighbouring invocations read neighbouring 16-byte words and each SIMD batch streams one
// contiguous range; no workgroup memory, no barriers.
// Entry:     repack_q — canonical qweight [N, KW] -> qk [N4P / CB, KWP, 4 * CB]
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(KWP * 4 * N4P / WG_SIZE) workgroups folded into (x, y); one invocation = one qk word
// Entry:     repack_s — canonical scales (+ zeros) [N, ng] -> sz [N4P / CB, ng, 4 * CB]
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(ng * 4 * N4P / WG_SIZE) workgroups folded into (x, y); one invocation = one sz word
// Entry:     main — the GEMV on the repacked weight
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      (ceil(N4P / WG_SIZE) workgroups folded into (x, y), ceil(M / TM), 1); one invocation =
//              4 adjacent output columns 4c .. 4c+3 for TM rows of x starting at TM * workgroup_id.z
// Bindings (group 0):
//   0 qweight  storage read        array<u32>        [N, KW] canonical words, KW = ceil(K / PER), PER = 32 / BITS
//   1 scales   storage read        array<u32>        [N * ng] canonical f16 scales, element i at bits 16*(i%2) of word i/2
//   2 zeros    storage read        array<u32>        [N, ceil(ng/8)] canonical 4-bit zero points (mode 1 only;
//                                                    bind any tensor otherwise)
//   3 qk       storage read_write  array<u32>        [N4P / CB, KWP, 4 * CB] K-major words: qk[((n / 32) * KWP + kw)
//                                                    * 32 + n % 32] = word kw of row n; words kw >= KW and
//                                                    columns n >= N are 0
//   4 sz       storage read_write  array<u32>        [N4P / CB, ng, 4 * CB] per (group, column): f16 scale in bits
//                                                    0..15, f16 zero point (0 int8, 8 sym, z asym) in bits 16..31;
//                                                    columns n >= N are 0
//   5 x        storage read        array<f32>        [M, K] row-major
//   6 qkv      storage read        array<vec4<u32>>  the qk tensor as vec4 words (4 columns each)
//   7 szv      storage read        array<vec4<u32>>  the sz tensor as vec4 words (4 columns each)
//   8 y        storage read_write  array<f32>        [M, N] row-major
//   9 params   uniform             KMajorParams { M, N, K (elements), KW (canonical words per row), KWP (words per
//                                                 column in qk: ceil(K / 32) * 32 / PER), N4P (column quads: ceil(N / 32)
//                                                 * 8), ng (groups per row), GW (words per group: G / PER; int8: KW),
//                                                 mode (0 int8, 1 int4 asym, 2 int4 sym) }
// Overrides: BITS: u32 = 4 (4 or 8), TM: u32 = 1 (rows of x per invocation: 1, 2 or 4; M > 4 takes
//            ceil(M / 4) z slices; rows past M are clamped loads and skipped stores)
// Needs:     the `subgroups` feature (`enable subgroups`: the whole file), subgroups of >= 8 invocations
//            (main; the host checks subgroupMinSize). x is read 8 values
//            at a time, lane l of each subgroup loading x[m, 8t + l] and the others taking it with
//            subgroupShuffle: on llvmpipe a load of one address by every invocation costs about as much
//            as dequantizing a word, a per-lane load and a shuffle far less. Out-of-range invocations
//            compute a clamped column and skip the store (no early return: the shuffles need every lane).
// Packing:   int4 element k at bits 4*(k%8) of word k/8, w = (q - z) * s; int8 two's-complement byte k%4
//            of word k/4, w = q * s. The GEMV dequantizes each weight once, exactly, as fma(q, s, -z*s),
//            and reuses it for the TM rows. x past K is taken as 0, so pad values never count.
// Reference: src/ref/quant.ts dequantizeRef + src/ref/matmul.ts matmulRef

enable subgroups;

#include "common/grid.wgsl"
#include "quant/kmajor_layout.wgsl"
#include "common/packed_levels.wgsl"

override WG_SIZE: u32 = 64;
override BITS: u32 = 4;
override TM: u32 = 1;

@group(0) @binding(0) var<storage, read> qweight: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> zeros: array<u32>;
@group(0) @binding(3) var<storage, read_write> qk: array<u32>;
@group(0) @binding(4) var<storage, read_write> sz: array<u32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read> qkv: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> szv: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<uniform> params: KMajorParams;


// ---------------------------------------------------------------------------------------------
// Repack (load time)
// ---------------------------------------------------------------------------------------------

@compute @workgroup_size(WG_SIZE)
fn repack_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  if (t >= params.KWP * 4u * params.N4P) {
    return;
  }
  let rest = t / (4u * CB);
  let kw = rest % params.KWP;
  let n = (rest / params.KWP) * 4u * CB + t % (4u * CB);
  var v = 0u;
  if (n < params.N && kw < params.KW) {
    v = qweight[n * params.KW + kw];
  }
  qk[t] = v;
}

@compute @workgroup_size(WG_SIZE)
fn repack_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  if (t >= params.ng * 4u * params.N4P) {
    return;
  }
  let rest = t / (4u * CB);
  let g = rest % params.ng;
  let n = (rest / params.ng) * 4u * CB + t % (4u * CB);
  var v = 0u;
  if (n < params.N) {
    let i = n * params.ng + g;
    let s = (scales[i >> 1u] >> (16u * (i & 1u))) & 0xffffu;
    var z = 0u;
    if (params.mode == 2u) {
      z = 8u;
    } else if (params.mode == 1u) {
      let zw = (params.ng + 7u) / 8u;
      z = (zeros[n * zw + g / 8u] >> (4u * (g % 8u))) & 15u;
    }
    v = s | (pack2x16float(vec2<f32>(f32(z), 0.0)) << 16u); // 0..15 are exact in f16
  }
  sz[t] = v;
}

// ---------------------------------------------------------------------------------------------
// GEMV
// ---------------------------------------------------------------------------------------------

// Accumulators of up to 4 rows of x as plain variables, not an array: llvmpipe keeps these in
// registers. Every row costs 4 SIMD registers (one per column), so TM stops at 4.
var<private> r0: u32; var<private> r1: u32; var<private> r2: u32; var<private> r3: u32;
var<private> a0: vec4<f32>; var<private> a1: vec4<f32>; var<private> a2: vec4<f32>; var<private> a3: vec4<f32>;
// This lane's value of the current 8-value chunk of x, per row.
var<private> x0: f32; var<private> x1: f32; var<private> x2: f32; var<private> x3: f32;

// x_i = x[row i, k] for this lane's k = 8t + l (0 past K).
fn load_x(k: u32) {
  let K = params.K;
  let kk = min(k, K - 1u);
  x0 = select(0.0, x[r0 + kk], k < K);
  if (TM > 1u) { x1 = select(0.0, x[r1 + kk], k < K); }
  if (TM > 2u) {
    x2 = select(0.0, x[r2 + kk], k < K);
    x3 = select(0.0, x[r3 + kk], k < K);
  }
}

// a_i += x[row i, 8t + e] * w (w: the 4 columns' dequantized weights at that k).
fn apply(e: u32, w: vec4<f32>) {
  a0 = fma(vec4<f32>(subgroupShuffle(x0, e)), w, a0);
  if (TM > 1u) { a1 = fma(vec4<f32>(subgroupShuffle(x1, e)), w, a1); }
  if (TM > 2u) {
    a2 = fma(vec4<f32>(subgroupShuffle(x2, e)), w, a2);
    a3 = fma(vec4<f32>(subgroupShuffle(x3, e)), w, a3);
  }
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let craw = linear_index(wid, nwg, lid, WG_SIZE);
  let c = min(craw, params.N4P - 1u); // no early return (see the header)
  let mb = wid.z * TM;                // < M by the grid
  let l = lane % 8u;
  let K = params.K;
  let NT = (K + 7u) / 8u;             // 8-value chunks of K
  let CPG = select(params.GW, NT, BITS == 8u); // chunks per group (int4: words per group)
  let qb = (c / CB) * params.KWP * CB + c % CB; // vec4 index of word 0 of this column quad; word kw at + kw * CB
  let sb = (c / CB) * params.ng * CB + c % CB;
  let ml = params.M - 1u;             // rows past M repeat the last row (clamped loads, skipped stores)
  r0 = min(mb, ml) * K;
  r1 = min(mb + 1u, ml) * K;
  r2 = min(mb + 2u, ml) * K;
  r3 = min(mb + 3u, ml) * K;
  for (var g = 0u; g < params.ng; g++) {
    let p = szv[sb + g * CB];
    let s = vec4<f32>(unpack2x16float(p.x).x, unpack2x16float(p.y).x, unpack2x16float(p.z).x, unpack2x16float(p.w).x);
    let z = vec4<f32>(unpack2x16float(p.x).y, unpack2x16float(p.y).y, unpack2x16float(p.z).y, unpack2x16float(p.w).y);
    let zs = z * s; // exact in f32 (4-bit z times an f16 s), so fma(q, s, -zs) = (q - z) * s exactly
    let t1 = min((g + 1u) * CPG, NT);
    for (var t = g * CPG; t < t1; t++) {
      load_x(8u * t + l);
      if (BITS == 4u) {
        let wd = qkv[qb + t * CB];
        for (var e = 0u; e < 8u; e++) {
          apply(e, fma(levels(wd, e), s, -zs));
        }
      } else {
        let wa = qkv[qb + 2u * t * CB];      // words 2t, 2t+1 (< KWP: qk pads whole 32-blocks)
        let wb = qkv[qb + (2u * t + 1u) * CB];
        for (var e = 0u; e < 4u; e++) {
          apply(e, fma(levels(wa, e), s, -zs));
          apply(e + 4u, fma(levels(wb, e), s, -zs));
        }
      }
    }
  }
  if (craw < params.N4P) {
    store(mb, c, a0);
    if (TM > 1u) { store(mb + 1u, c, a1); }
    if (TM > 2u) { store(mb + 2u, c, a2); store(mb + 3u, c, a3); }
  }
}
