// clip.wgsl — AWQ's weight clip: per (row, group) the shrink of max|w| whose fake-quantized group best keeps the partial dot products over sampled inputs, and the clamp itself
//
// Entry:     clip_search — per (row, group), max|w| shrunk by (20 − i)/20, i < 10; the shrink whose
//            fake-quantized group (fake_quant_group.wgsl) gives the least mean squared partial-dot-product
//            error over x; writes clip_max_out and clip_err
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(N * ng / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation =
//              one (row, group)
// Entry:     clip_apply — w_inout[n, k] = clamp(w_inout[n, k], −m, m), m = clip_max[n, k / G]
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(N * K / WG_SIZE) workgroups folded into (x, y); one invocation = one element
// Bindings (group 0):
//   0 w             storage read        array<f32>        [N, K] weights (the whole weight in one binding)
//   1 x             storage read        array<f32>        [T, K] sampled input activations
//   2 x4            storage read        array<vec4<f32>>  x again, as vec4 words (clip_search, x_vec4 = 1)
//   3 clip_max_out  storage read_write  array<f32>        [N, ng] chosen clip bound
//   4 clip_err      storage read_write  array<f32>        [N * ng, 2] error without shrink, error at the chosen shrink
//   5 clip_max      storage read        array<f32>        [N, ng] clip bound per (row, group) (clip_apply)
//   6 w_inout       storage read_write  array<f32>        [N, K] weights clipped in place (clip_apply)
//   7 params        uniform             FqParams { N, K, G (<= 128), ng, maxq, use_scale, use_clip, T (rows of x),
//                                                  transposed, x_vec4 (clip_search reads x4; K % 4 == 0) }
//                                                  (fake_quant_group.wgsl)
// Override:  SYM: bool = false — symmetric levels (clip_search)
// Reference: src/ref/awq.ts (src/quant/fake_quant.ts clipSearch, applyClip)

#include "common/grid.wgsl"
#include "quant/fake_quant_group.wgsl"

override WG_SIZE: u32 = 64;
override SYM: bool = false;

@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> clip_max_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> clip_err: array<f32>;
@group(0) @binding(5) var<storage, read> clip_max: array<f32>;
@group(0) @binding(6) var<storage, read_write> w_inout: array<f32>;
@group(0) @binding(7) var<uniform> params: FqParams;

@compute @workgroup_size(WG_SIZE)
fn clip_search(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  let P = params;
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
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  let P = params;
  if (i >= P.N * P.K) {
    return;
  }
  let n = i / P.K;
  let k = i % P.K;
  let m = clip_max[n * P.ng + k / P.G];
  w_inout[i] = clamp(w_inout[i], -m, m);
}
