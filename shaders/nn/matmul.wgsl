// matmul.wgsl — y[M, N] = x[M, K] · W[N, K]^T with f32 or f16 weights, f32 activations and accumulation
//
// Entry:     main
// Workgroup: @workgroup_size(WG_X, WG_Y), override WG_X: u32 = 8, override WG_Y: u32 = 8
// Grid:      (ceil(nw / (4 * WG_X)), ceil(M / (4 * WG_Y))) with the second count folded into (y, z)
//            (host: Kernel.grid2d): row workgroup wid.z * num_workgroups.y + wid.y; one invocation =
//            a 4x4 register tile (4 rows of x by 4 rows of W); no workgroup memory, no barriers
// Bindings (group 0):
//   0 x       storage read        array<f32>  [M, K] row-major
//   1 w       storage read        array<u32>  [nw, K] rows n0 .. n0+nw-1 of W, row-major, one binding
//                                             window; W_F16 = false: one f32 per word (bitcast);
//                                             W_F16 = true: f16 element e in bits 16*(e%2) of word e/2
//   2 y       storage read_write  array<f32>  [M, N] row-major; this dispatch writes columns n0 .. n0+nw-1
//   3 params  uniform             Params { M, N, K (elements), n0 (first W row of the window), nw (rows in window) }
// Override:  W_F16: bool = false — weight storage format (f16 needs no shader-f16: unpack2x16float)
// Ragged M, N, K: edge tiles clamp their loads and skip their stores.
// Reference: src/ref/matmul.ts matmulRef

#include "common/grid.wgsl"

override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override W_F16: bool = false;

const TM: u32 = 4u;
const TN: u32 = 4u;

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

// Element e of the weight window as f32.
fn w_at(e: u32) -> f32 {
  if (W_F16) {
    let pair = unpack2x16float(w[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(w[e]);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let nb = gid.x * TN;
  let mb = (row_workgroup(wid, nwg) * WG_Y + lid.y) * TM;
  let K = params.K;
  if (nb >= params.nw || mb >= params.M) {
    return;
  }
  var xrow: array<u32, 4>;
  var wrow: array<u32, 4>;
  for (var i = 0u; i < TM; i++) {
    xrow[i] = min(mb + i, params.M - 1u) * K;
  }
  for (var j = 0u; j < TN; j++) {
    wrow[j] = min(nb + j, params.nw - 1u) * K;
  }
  var acc: array<vec4<f32>, 4>;
  for (var k = 0u; k < K; k++) {
    let wv = vec4<f32>(w_at(wrow[0] + k), w_at(wrow[1] + k), w_at(wrow[2] + k), w_at(wrow[3] + k));
    for (var i = 0u; i < TM; i++) {
      acc[i] = fma(vec4<f32>(x[xrow[i] + k]), wv, acc[i]);
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = mb + i;
    if (m >= params.M) {
      break;
    }
    for (var j = 0u; j < TN; j++) {
      if (nb + j < params.nw) {
        y[m * params.N + params.n0 + nb + j] = acc[i][j];
      }
    }
  }
}
