// matmul_sg.wgsl — GEMV y[M, N] = x[M, K] · W[N, K]^T for M = 1..8 with f32 or f16 weights, 8 lanes per
// row of W reduced with subgroup shuffles: the dense counterpart of quant/matmul_q_sg.wgsl
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64 (a multiple of 8)
// Grid:      ceil(nw / (WG_SIZE / 8)) workgroups folded into (x, y) (host: Kernel.grid1d); one row of W
//            per 8 consecutive invocations: lane l reads words l, l+8, l+16 … of the row (neighbouring
//            lanes read neighbouring words), uses each for all TM = M rows of x, and a 3-step
//            subgroupShuffleXor butterfly sums the lanes.
// Needs:     the `subgroups` feature, subgroups of >= 8 consecutive invocations (the host picks this
//            variant only when subgroupMinSize >= 8)
// Bindings (group 0):
//   0 x       storage read        array<f32>  [M, K] row-major
//   1 w       storage read        array<u32>  [nw, K] rows n0 .. n0+nw-1 of W, row-major, one binding
//                                             window; W_F16 = false: one f32 per word (bitcast);
//                                             W_F16 = true: f16 element e in bits 16*(e%2) of word e/2
//                                             (rows of odd K straddle words)
//   2 y       storage read_write  array<f32>  [M, N] row-major; this dispatch writes columns n0 .. n0+nw-1
//   3 params  uniform             Params { M, N, K (elements), n0 (first W row of the window), nw (rows in window) }
// Overrides: W_F16: bool = false, TM: u32 = 1 (= M, 1..8)
// Ragged N, K: rows past the window recompute the last row and store nothing; words past K are skipped.
// Reference: src/ref/matmul.ts matmulRef

enable subgroups;

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
override W_F16: bool = false;
override TM: u32 = 1;

const LANES: u32 = 8u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  n0: u32,
  nw: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = workgroup_index(wid, nwg) * (WG_SIZE / LANES) + lid / LANES;
  let lane = lid % LANES;
  // Rows past the window recompute the last row: every lane stays in the shuffles (uniform flow).
  let r = min(row, params.nw - 1u);
  let K = params.K;
  var acc: array<f32, 8>;
  if (W_F16) {
    // element e of row r is element r*K + e of the window: word (r*K + e) / 2, half (r*K + e) % 2
    let e0 = r * K;
    let first = e0 / 2u;
    let last = (e0 + K - 1u) / 2u;
    for (var wi = first + lane; wi <= last; wi += LANES) {
      let pair = unpack2x16float(w[wi]);
      for (var h = 0u; h < 2u; h++) {
        let e = 2u * wi + h;
        if (e >= e0 && e < e0 + K) {
          let k = e - e0;
          let wv = pair[h];
          for (var i = 0u; i < TM; i++) {
            acc[i] = fma(x[i * K + k], wv, acc[i]);
          }
        }
      }
    }
  } else {
    for (var k = lane; k < K; k += LANES) {
      let wv = bitcast<f32>(w[r * K + k]);
      for (var i = 0u; i < TM; i++) {
        acc[i] = fma(x[i * K + k], wv, acc[i]);
      }
    }
  }
  for (var i = 0u; i < TM; i++) {
    var v = acc[i];
    v += subgroupShuffleXor(v, 4u);
    v += subgroupShuffleXor(v, 2u);
    v += subgroupShuffleXor(v, 1u);
    if (lane == 0u && row < params.nw) {
      y[i * params.N + params.n0 + r] = v;
    }
  }
}
