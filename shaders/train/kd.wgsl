// kd.wgsl — knowledge-distillation loss for QAT: KL(teacher || student) per token over the
// vocabulary, and its gradient with respect to the student logits, written over the logits.
//
// Entry:     kd_grad — one invocation = one row t: with p = softmax(teacher[t]), q = softmax(logits[t]),
//            row_kl[t] = sum_v p (log p - log q), logits[t] <- (q - p) * scale
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(T / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d)
// Entry:     sum_rows — loss[0] = sum_t row_kl[t], loss[1] = T (one invocation)
//   Workgroup: @workgroup_size(WG_SIZE); Grid: (1, 1, 1)
// Bindings (group 0):
//   0 logits   storage read_write  array<f32>  [T, V] student logits in, gradient out
//   1 teacher  storage read        array<f32>  [T, V] teacher (fp model) logits
//   2 row_kl   storage read_write  array<f32>  [T] per-row KL (nats)
//   3 loss     storage read_write  array<f32>  [2] (sum of row_kl, T)
//   4 params   uniform             Params { T, V, scale (gradient factor, e.g. 1 / T) }
// Reference: test/train/kd.test.ts (float64 softmax and KL)

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;

struct Params {
  T: u32,
  V: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> teacher: array<f32>;
@group(0) @binding(2) var<storage, read_write> row_kl: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn kd_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  if (t >= params.T) {
    return;
  }
  let V = params.V;
  let b = t * V;
  var ms = -3.0e38;
  var mt = -3.0e38;
  for (var v = 0u; v < V; v++) {
    ms = max(ms, logits[b + v]);
    mt = max(mt, teacher[b + v]);
  }
  var zs = 0.0;
  var zt = 0.0;
  for (var v = 0u; v < V; v++) {
    zs += exp(logits[b + v] - ms);
    zt += exp(teacher[b + v] - mt);
  }
  let ls = ms + log(zs);
  let lt = mt + log(zt);
  var kl = 0.0;
  for (var v = 0u; v < V; v++) {
    let s = logits[b + v] - ls;
    let p = teacher[b + v] - lt;
    let pt = exp(p);
    kl += pt * (p - s);
    logits[b + v] = (exp(s) - pt) * params.scale;
  }
  row_kl[t] = kl;
}

@compute @workgroup_size(WG_SIZE)
fn sum_rows(@builtin(local_invocation_index) lid: u32) {
  if (lid != 0u) {
    return;
  }
  var s = 0.0;
  for (var t = 0u; t < params.T; t++) {
    s += row_kl[t];
  }
  loss[0] = s;
  loss[1] = f32(params.T);
}
