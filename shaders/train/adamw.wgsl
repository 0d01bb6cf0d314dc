// adamw.wgsl — AdamW parameter update and the sum of squared gradients (for gradient-norm clipping)
//
// step, for each element i < n (decoupled weight decay, bias-corrected moments):
//   g  = grad[i] * grad_scale
//   m  = beta1 m + (1 − beta1) g;   v = beta2 v + (1 − beta2) g²
//   p -= lr · ((m / bc1) / (sqrt(v / bc2) + eps) + weight_decay · p),  bc1 = 1 − beta1^t, bc2 = 1 − beta2^t
// sumsq: partials[part0 + j] = Σ_k grad[j + k · nparts]² over the elements of this window, summed in
// blocks of 32 terms whose totals are then added (two levels: the error grows with 32 + count / 32
// terms, not count; compensated sums do not survive the compilers' float simplifications), in a
// fixed order; the host adds the partials in float64. No atomics: deterministic.
//
// Entry:     step — one invocation = one element
// Entry:     sumsq — one invocation = one partial sum (elements j, j + nparts, j + 2 nparts, ...)
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
// Grid:      ceil(n / WG_SIZE) (step) or ceil(nparts / WG_SIZE) (sumsq) workgroups folded into (x, y)
//            (host: Kernel.grid1d); no workgroup memory, no barriers
// Bindings (group 0):
//   0 param     storage read_write  array<f32>  [n] parameters (one binding window of the tensor)
//   1 grad      storage read        array<f32>  [n] gradients (same window)
//   2 m         storage read_write  array<f32>  [n] first moments (same window)
//   3 v         storage read_write  array<f32>  [n] second moments (same window)
//   4 partials  storage read_write  array<f32>  [part0 + nparts] partial sums of squares (sumsq)
//   5 params    uniform             Params { n (elements in the window), nparts, part0, lr, beta1, beta2, eps,
//                                            weight_decay, bc1 (1 − beta1^t), bc2 (1 − beta2^t), grad_scale }
// Reference: src/ref/train.ts adamwRef, sumSquaresRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 256;

struct Params {
  n: u32,
  nparts: u32,
  part0: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weight_decay: f32,
  bc1: f32,
  bc2: f32,
  grad_scale: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i >= params.n) {
    return;
  }
  let g = grad[i] * params.grad_scale;
  let mi = params.beta1 * m[i] + (1.0 - params.beta1) * g;
  let vi = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let p = param[i];
  let upd = (mi / params.bc1) / (sqrt(vi / params.bc2) + params.eps);
  param[i] = p - params.lr * (upd + params.weight_decay * p);
}

@compute @workgroup_size(WG_SIZE)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let j = linear_index(wid, nwg, lid, WG_SIZE);
  if (j >= params.nparts) {
    return;
  }
  var s = 0.0;
  var i = j;
  while (i < params.n) {
    var blk = 0.0;
    for (var b = 0u; b < 32u && i < params.n; b++) {
      let x = grad[i];
      blk = fma(x, x, blk);
      i += params.nparts;
    }
    s += blk;
  }
  partials[params.part0 + j] = s;
}
