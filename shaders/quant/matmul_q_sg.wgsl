// matmul_q_sg.wgsl — GEMV y[M, N] = x[M, K] · dequant(W)[N, K]^T for M = 1..8, 8 lanes per row reduced with subgroup shuffles
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64 (a multiple of 8)
// Grid:      ceil(nw / (WG_SIZE / 8)) workgroups folded into (x, y) (host: Kernel.grid1d); one row of W
//            per 8 consecutive invocations: lane l takes words l, l+8, l+16 … of the row, dequantizes
//            them once for all TM = M rows of x, and a 3-step subgroupShuffleXor butterfly sums the lanes.
// Needs:     the `subgroups` feature, subgroups of >= 8 consecutive invocations (true of every
//            implementation we know; the host only picks this variant when subgroupMinSize >= 8)
// Bindings (group 0):
//   0 x        storage read        array<f32>  [M, K] row-major
//   1 qweight  storage read        array<u32>  [nw, KW] rows n0 .. n0+nw-1 of W (one binding window);
//                                              KW = ceil(K / PER) words, PER = 32 / BITS values per word
//   2 scales   storage read        array<u32>  [N * ng] f16, element i at bits 16*(i%2) of word i/2 (whole tensor)
//   3 zeros    storage read        array<u32>  [N, ceil(ng/8)] 4-bit zero points (asym int4; whole tensor);
//                                              unread when sym or BITS == 8 (bind any tensor)
//   4 y        storage read_write  array<f32>  [M, N] row-major; this dispatch writes columns n0 .. n0+nw-1
//   5 params   uniform             PackedParams { M, N, K (elements), G (group size; int8: KW*4), ng (groups per row),
//                                                 n0 (first W row of the window), nw (rows in window),
//                                                 sym (1: int4 symmetric, implicit zero 8) }
// Overrides: BITS: u32 = 4 (4 or 8), TM: u32 = 1 (= M, 1..8)
// Packing:   as matmul_q.wgsl (src/quant/formats.ts)
// Reference: src/ref/quant.ts dequantizeRef + src/ref/matmul.ts matmulRef

enable subgroups;

#include "common/grid.wgsl"
#include "common/packed.wgsl"
#include "common/packed_levels.wgsl"

override WG_SIZE: u32 = 64;
override BITS: u32 = 4;
override TM: u32 = 1;

const LANES: u32 = 8u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> qweight: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> zeros: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: PackedParams;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let PER = 32u / BITS;
  let row = workgroup_index(wid, nwg) * (WG_SIZE / LANES) + lid / LANES;
  let lane = lid % LANES;
  // Rows past the window recompute the last row: every lane stays in the shuffles (uniform flow).
  let r = min(row, params.nw - 1u);
  let n = params.n0 + r;
  let K = params.K;
  let KW = (K + PER - 1u) / PER;
  let KWF = K / PER;
  let GW = params.G / PER;
  var acc: array<f32, 8>;
  let steps = (KW + LANES - 1u) / LANES;
  for (var t = 0u; t < steps; t++) {
    let kw = t * LANES + lane;
    if (kw < KW) {
      let g = kw / GW;
      let s = scale_at(n, g);
      let zs = zero_at(n, g) * s;
      let wd = qweight[r * KW + kw];
      let cnt = select(PER, K - kw * PER, kw == KWF); // the ragged last word holds K % PER values
      for (var e = 0u; e < cnt; e++) {
        let wv = level(wd, e) * s - zs;
        let k = kw * PER + e;
        for (var i = 0u; i < TM; i++) {
          acc[i] = fma(x[i * K + k], wv, acc[i]);
        }
      }
    }
  }
  for (var i = 0u; i < TM; i++) {
    var v = acc[i];
    v += subgroupShuffleXor(v, 4u);
    v += subgroupShuffleXor(v, 2u);
    v += subgroupShuffleXor(v, 1u);
    if (lane == 0u && row < params.nw) {
      y[i * params.N + n] = v;
    }
  }
}
