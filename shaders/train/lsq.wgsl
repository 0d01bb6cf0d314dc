// lsq.wgsl — LSQ fake quantization with learnable step (and zero point), straight-through gradients
//
// W[N, K] in groups of G along K (the last group of a row may be shorter), one scale s and zero z per
// (row, group). With u = w / s:
//   asymmetric: q = clamp(round(u) + z, 0, maxq),          w' = (q − z) · s
//   symmetric:  q = clamp(round(u), −maxq − 1, maxq), z = 0, w' = q · s
// round() is WGSL round: to nearest, ties to even. z may be any real (a learned zero point).
// Gradients for the upstream gradient g = dL/dw' (straight-through estimator for round()), with
// [lo, hi] = [0, maxq] (asym) or [−maxq − 1, maxq] (sym) and v = u + z:
//   lo <= v <= hi:  dw = g,  ds += g · (round(u) − u),  dz += 0
//   v < lo:         dw = 0,  ds += g · (lo − z),        dz += −g · s
//   v > hi:         dw = 0,  ds += g · (hi − z),        dz += −g · s
// ds and dz of a group are optionally multiplied by LSQ's gradient scale 1 / sqrt(n · maxq), n the
// group's element count.
//
// Entry:     forward — one invocation = one element: wq = w'
// Entry:     backward — one invocation = one (row, group): dw for its elements, dscale (and dzero when
//            learn_z = 1) summed over the group in element order (deterministic, no atomics)
// Entry:     init — one invocation = one (row, group): min/max rules, asym s = max((max − min) / maxq,
//            1e-5), z = clamp(round(−min / s), 0, maxq); sym s = max(max|w| / maxq, 1e-5)
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64; override SYM: bool = false
// Grid:      ceil(N * K / WG_SIZE) workgroups (forward) or ceil(N * ng / WG_SIZE) (backward, init), folded
//            into (x, y) (host: Kernel.grid1d); no workgroup memory, no barriers
// Bindings (group 0):
//   0 w          storage read        array<f32>  [N, K] latent weights
//   1 scale      storage read        array<f32>  [N, ng] step sizes s (> 0)
//   2 zero       storage read        array<f32>  [N, ng] zero points z (read when not SYM; else any)
//   3 dwq        storage read        array<f32>  [N, K] upstream gradient dL/dw'
//   4 wq         storage read_write  array<f32>  [N, K] fake-quantized weights w'
//   5 dw         storage read_write  array<f32>  [N, K] gradient for w (written, or added to when accumulate = 1)
//   6 dscale     storage read_write  array<f32>  [N, ng] gradient for s (written or added to)
//   7 dzero      storage read_write  array<f32>  [N, ng] gradient for z (learn_z = 1; else any)
//   8 scale_out  storage read_write  array<f32>  [N, ng] initial s (init)
//   9 zero_out   storage read_write  array<f32>  [N, ng] initial z (init, not SYM; else any)
//   10 params    uniform             Params { N, K, G, ng (= ceil(K / G)), maxq (asym 2^b − 1, sym 2^(b−1) − 1),
//                                             learn_z, accumulate, grad_scale (1: LSQ gradient scale) }
// Reference: src/ref/train.ts lsqForwardRef, lsqBackwardRef, lsqInitRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
override SYM: bool = false;

struct Params {
  N: u32,
  K: u32,
  G: u32,
  ng: u32,
  maxq: u32,
  learn_z: u32,
  accumulate: u32,
  grad_scale: u32,
}

@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> zero: array<f32>;
@group(0) @binding(3) var<storage, read> dwq: array<f32>;
@group(0) @binding(4) var<storage, read_write> wq: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw: array<f32>;
@group(0) @binding(6) var<storage, read_write> dscale: array<f32>;
@group(0) @binding(7) var<storage, read_write> dzero: array<f32>;
@group(0) @binding(8) var<storage, read_write> scale_out: array<f32>;
@group(0) @binding(9) var<storage, read_write> zero_out: array<f32>;
@group(0) @binding(10) var<uniform> params: Params;

fn level_lo() -> f32 {
  if (SYM) {
    return -f32(params.maxq) - 1.0;
  }
  return 0.0;
}

fn zero_of(gi: u32) -> f32 {
  if (SYM) {
    return 0.0;
  }
  return zero[gi];
}

@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i >= params.N * params.K) {
    return;
  }
  let n = i / params.K;
  let gi = n * params.ng + (i % params.K) / params.G;
  let s = scale[gi];
  let z = zero_of(gi);
  let q = clamp(round(w[i] / s) + z, level_lo(), f32(params.maxq));
  wq[i] = (q - z) * s;
}

@compute @workgroup_size(WG_SIZE)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let gi = linear_index(wid, nwg, lid, WG_SIZE);
  if (gi >= params.N * params.ng) {
    return;
  }
  let n = gi / params.ng;
  let k0 = (gi % params.ng) * params.G;
  let k1 = min(k0 + params.G, params.K);
  let s = scale[gi];
  let z = zero_of(gi);
  let lo = level_lo();
  let hi = f32(params.maxq);
  var ds = 0.0;
  var clipped = 0.0;
  for (var kk = k0; kk < k1; kk++) {
    let i = n * params.K + kk;
    let g = dwq[i];
    let u = w[i] / s;
    let v = u + z;
    var gw = 0.0;
    if (v < lo) {
      ds = fma(g, lo - z, ds);
      clipped += g;
    } else if (v > hi) {
      ds = fma(g, hi - z, ds);
      clipped += g;
    } else {
      gw = g;
      ds = fma(g, round(u) - u, ds);
    }
    if (params.accumulate != 0u) {
      gw += dw[i];
    }
    dw[i] = gw;
  }
  var gs = 1.0;
  if (params.grad_scale != 0u) {
    gs = inverseSqrt(f32(k1 - k0) * f32(params.maxq));
  }
  var ds_out = ds * gs;
  if (params.accumulate != 0u) {
    ds_out += dscale[gi];
  }
  dscale[gi] = ds_out;
  if (params.learn_z != 0u) {
    var dz_out = -s * clipped * gs;
    if (params.accumulate != 0u) {
      dz_out += dzero[gi];
    }
    dzero[gi] = dz_out;
  }
}

@compute @workgroup_size(WG_SIZE)
fn init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let gi = linear_index(wid, nwg, lid, WG_SIZE);
  if (gi >= params.N * params.ng) {
    return;
  }
  let n = gi / params.ng;
  let k0 = (gi % params.ng) * params.G;
  let k1 = min(k0 + params.G, params.K);
  var mn = 3.0e38;
  var mx = -3.0e38;
  for (var kk = k0; kk < k1; kk++) {
    let x = w[n * params.K + kk];
    mn = min(mn, x);
    mx = max(mx, x);
  }
  let maxq = f32(params.maxq);
  if (SYM) {
    scale_out[gi] = max(max(abs(mn), abs(mx)) / maxq, 1e-5);
  } else {
    let s = max((mx - mn) / maxq, 1e-5);
    scale_out[gi] = s;
    zero_out[gi] = clamp(round(-mn / s), 0.0, maxq);
  }
}
