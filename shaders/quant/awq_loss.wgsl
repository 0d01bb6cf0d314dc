// awq_loss.wgsl — the losses of AWQ's scale search, reduced to per-invocation partial sums that the
// host adds in float64 (a few thousand values; no barriers, no second pass).
//
// Entry:     sq_err — partial[i] = sum over this invocation's words of |a - b|^2 (vec4 words
//            i*chunk .. (i+1)*chunk - 1 of n4): the squared error of a module's output a against
//            its fp output b
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(ceil(n4 / chunk) / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d)
// Entry:     sq_err_f32 — the same over scalars (n4 = elements), for sizes that are not whole vec4 words
// Entry:     gram_dot — partial[n * K + i] = d[n, i] * sum_j G[i, j] d[n, j] with d = fq - w: summed,
//            the squared output error of a linear layer over all calibration tokens,
//            sum_t |x_t (fq - w)ᵀ|^2 = sum_n d_n G d_nᵀ with G = XᵀX
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(N * K / WG_SIZE) workgroups folded into (x, y); one invocation = one (n, i)
// Bindings (group 0):
//   0 a        storage read        array<vec4<f32>>  [n4] module output (sq_err)
//   1 b        storage read        array<vec4<f32>>  [n4] fp output (sq_err)
//   2 partial  storage read_write  array<f32>        [ceil(n4 / chunk)] (sq_err) or [N * K] (gram_dot)
//   3 params   uniform             Params { n4 (vec4 words), chunk (words per invocation), N, K,
//                                           transposed (gram_dot: fq and w stored [K, N]) }
//   4 fq       storage read        array<f32>        [N, K] (or [K, N]) fake-quantized weight (gram_dot)
//   5 w        storage read        array<f32>        [N, K] (or [K, N]) weight it approximates (gram_dot)
//   6 gram     storage read        array<f32>        [K, K] XᵀX over the calibration tokens (gram_dot)
//   7 a1       storage read        array<f32>        [n4] module output (sq_err_f32)
//   8 b1       storage read        array<f32>        [n4] fp output (sq_err_f32)
// Reference: src/ptq/awq.ts (direct re-run of the layer: the same loss up to rounding)

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;

struct Params {
  n4: u32,
  chunk: u32,
  N: u32,
  K: u32,
  transposed: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read> fq: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> gram: array<f32>;
@group(0) @binding(7) var<storage, read> a1: array<f32>;
@group(0) @binding(8) var<storage, read> b1: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn sq_err(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  let start = i * params.chunk;
  if (start >= params.n4) {
    return;
  }
  let end = min(start + params.chunk, params.n4);
  var s = vec4<f32>(0.0);
  for (var j = start; j < end; j++) {
    let d = a[j] - b[j];
    s += d * d;
  }
  partial[i] = s.x + s.y + s.z + s.w;
}

@compute @workgroup_size(WG_SIZE)
fn sq_err_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  let start = i * params.chunk;
  if (start >= params.n4) {
    return;
  }
  let end = min(start + params.chunk, params.n4);
  var s = 0.0;
  for (var j = start; j < end; j++) {
    let d = a1[j] - b1[j];
    s += d * d;
  }
  partial[i] = s;
}

fn wi(n: u32, k: u32) -> u32 {
  return select(n * params.K + k, k * params.N + n, params.transposed == 1u);
}

@compute @workgroup_size(WG_SIZE)
fn gram_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  let K = params.K;
  if (t >= params.N * K) {
    return;
  }
  let n = t / K;
  let i = t % K;
  var s = 0.0;
  for (var j = 0u; j < K; j++) {
    s += gram[i * K + j] * (fq[wi(n, j)] - w[wi(n, j)]);
  }
  partial[t] = (fq[wi(n, i)] - w[wi(n, i)]) * s;
}
