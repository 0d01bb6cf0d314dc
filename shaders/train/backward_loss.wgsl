// backward_loss.wgsl — cross-entropy and MSE losses with their gradients, and a pair-sum reduction
//
// Cross-entropy over logits[T, V] with targets[T] (IGNORE = 0xffffffff, or any id >= V: row not scored):
//   ce_rows:  lse[t] = log sum_v exp(logits[t, v]) (one online pass);
//             pairs[t] = (lse[t] - logits[t, target], 1) for a scored row, (0, 0) otherwise
//   sum_pairs (repeated by the host until one pair is left) -> loss[0] = (NLL sum, scored rows)
//   ce_grad:  dlogits[t, v] = (exp(logits[t, v] - lse[t]) - [v == target]) * s, 0 on unscored rows,
//             s = scale when use_scale != 0, else 1 / scored rows (0 when no row is scored)
//   ce_grad_inplace: the same with logits read from dlogits and overwritten
// MSE over n elements: mse_grad writes dy[i] = 2 (y[i] - y_ref[i]) * scale and one partial pair
//   (sum of squares, elements) per invocation; sum_pairs folds them into loss[0] = (sum (y - y_ref)^2, n).
//
// Entry:     ce_rows
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(T / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation = one
//              row of V logits
// Entry:     ce_grad, ce_grad_inplace
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(T * V / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation = one element
// Entry:     mse_grad
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(n / (WG_SIZE * CHUNK)) workgroups folded into (x, y) (host: Kernel.grid1d); workgroup w
//              owns elements w * WG_SIZE * CHUNK + j * WG_SIZE + lid (j < CHUNK) and writes pairs[w * WG_SIZE + lid]
// Entry:     sum_pairs — pair_out[i] = sum of pair_in[i * chunk .. min(len, (i + 1) * chunk)) in order
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(ceil(len / chunk) / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d)
// Bindings (group 0):
//   0 logits   storage read        array<f32>        [T, V] row-major (ce_rows, ce_grad)
//   1 targets  storage read        array<u32>        [T] target ids; IGNORE (or >= V) = row not scored
//   2 lse      storage read_write  array<f32>        [T] log-sum-exp per row, scratch written by ce_rows
//   3 pairs    storage read_write  array<vec2<f32>>  [T] (ce_rows) or [ceil(n / CHUNK)] (mse_grad) partial pairs
//   4 dlogits  storage read_write  array<f32>        [T, V] gradient of the logits (ce_grad: may not alias logits;
//                                                    ce_grad_inplace: holds the logits on entry)
//   5 loss     storage read_write  array<vec2<f32>>  [1] (NLL sum, scored rows), read by ce_grad for the count
//   6 y        storage read        array<f32>        [n] prediction (mse_grad)
//   7 y_ref    storage read        array<f32>        [n] reference (mse_grad)
//   8 dy       storage read_write  array<f32>        [n] gradient of y (may not alias y or y_ref)
//   9 pair_in  storage read        array<vec2<f32>>  [len] pairs to fold
//  10 pair_out storage read_write  array<vec2<f32>>  [ceil(len / chunk)] folded pairs (the last fold: the loss buffer)
//  11 params   uniform             Params { T, V, n (MSE elements), use_scale (0 = mean, 1 = scale),
//                                           scale, len, chunk (sum_pairs) }
// Override:  CHUNK: u32 = 16 (mse_grad elements per invocation)
// Reference: src/ref/backward.ts crossEntropyBackwardRef, mseBackwardRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
override CHUNK: u32 = 16;

const IGNORE: u32 = 0xffffffffu;

struct Params {
  T: u32,
  V: u32,
  n: u32,
  use_scale: u32,
  scale: f32,
  len: u32,
  chunk: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> pairs: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read> y: array<f32>;
@group(0) @binding(7) var<storage, read> y_ref: array<f32>;
@group(0) @binding(8) var<storage, read_write> dy: array<f32>;
@group(0) @binding(9) var<storage, read> pair_in: array<vec2<f32>>;
@group(0) @binding(10) var<storage, read_write> pair_out: array<vec2<f32>>;
@group(0) @binding(11) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  if (t >= params.T) {
    return;
  }
  let V = params.V;
  let base = t * V;
  var m = logits[base];
  var s = 1.0;
  for (var v = 1u; v < V; v++) {
    let l = logits[base + v];
    if (l > m) {
      s = s * exp(m - l) + 1.0;
      m = l;
    } else {
      s += exp(l - m);
    }
  }
  let z = m + log(s);
  lse[t] = z;
  let tgt = targets[t];
  if (tgt != IGNORE && tgt < V) {
    pairs[t] = vec2<f32>(z - logits[base + tgt], 1.0);
  } else {
    pairs[t] = vec2<f32>(0.0);
  }
}

// Gradient of element i = t * V + v given its logit l.
fn ce_grad_at(i: u32, l: f32) -> f32 {
  let V = params.V;
  let t = i / V;
  let v = i - t * V;
  let tgt = targets[t];
  if (tgt == IGNORE || tgt >= V) {
    return 0.0;
  }
  var s = params.scale;
  if (params.use_scale == 0u) {
    let count = loss[0].y;
    s = select(0.0, 1.0 / count, count > 0.0);
  }
  let p = exp(l - lse[t]);
  return (p - select(0.0, 1.0, v == tgt)) * s;
}

@compute @workgroup_size(WG_SIZE)
fn ce_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.T * params.V) {
    dlogits[i] = ce_grad_at(i, logits[i]);
  }
}

@compute @workgroup_size(WG_SIZE)
fn ce_grad_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.T * params.V) {
    dlogits[i] = ce_grad_at(i, dlogits[i]);
  }
}

@compute @workgroup_size(WG_SIZE)
fn mse_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let w = workgroup_index(wid, nwg);
  let n = params.n;
  if (w * WG_SIZE * CHUNK >= n) {
    return;
  }
  let base = w * WG_SIZE * CHUNK + lid;
  let k = 2.0 * params.scale;
  var acc = vec2<f32>(0.0);
  for (var j = 0u; j < CHUNK; j++) {
    let i = base + j * WG_SIZE;
    if (i < n) {
      let d = y[i] - y_ref[i];
      dy[i] = k * d;
      acc += vec2<f32>(d * d, 1.0);
    }
  }
  pairs[w * WG_SIZE + lid] = acc;
}

@compute @workgroup_size(WG_SIZE)
fn sum_pairs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  let first = i * params.chunk;
  if (first >= params.len) {
    return;
  }
  let last = min(params.len, first + params.chunk);
  var s = vec2<f32>(0.0);
  for (var k = first; k < last; k++) {
    s += pair_in[k];
  }
  pair_out[i] = s;
}
