// loss.wgsl — per-token next-token loss from logits, optionally against reference logits
//
// Row t < T - 1 predicts ids[t + 1]. With lse(z) = max z + log(sum exp(z - max z)):
//   nll   = lse(l) - l[ids[t+1]]
//   kl    = sum_v p_ref(v) (log p_ref(v) - log p(v))       (WITH_REF; else 0)
//   top1  = argmax l == argmax ref (WITH_REF) | argmax l == ids[t+1] (else)
// out[t] = (nll, kl, top1, 1); rows t >= T - 1 get (0, 0, 0, 0). The host sums rows on the GPU.
// Packed sequences (seq > 0): the last row of every sequence of seq rows is not scored either.
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64 (a power of two)
// Grid:      T workgroups folded into (x, y) (host: Kernel.grid1d) — one workgroup = one row
//            t = wid.y * num_workgroups.x + wid.x (workgroups past T return); two strided passes
//            over V with pairwise folds
// Bindings (group 0):
//   0 logits  storage read        array<f32>        [T, V] row-major
//   1 ref_logits storage read     array<f32>        [T, V] reference logits (WITH_REF; else bind logits)
//   2 ids     storage read        array<u32>        [T] the window's tokens
//   3 out     storage read_write  array<vec4<f32>>  [T] (nll, kl, top1, scored)
//   4 params  uniform             Params { T, V, seq (0 = one sequence) }
// Override:  WITH_REF: bool = false
// Reference: src/ref/llama.ts lossRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
override WITH_REF: bool = false;

struct Params {
  T: u32,
  V: u32,
  seq: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> ref_logits: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

// (max l, argmax l, max r, argmax r) and (Z_l, Z_r, A = sum e^(r - mr) (r - l), unused)
var<workgroup> red_max: array<vec4<f32>, WG_SIZE>;
var<workgroup> red_sum: array<vec4<f32>, WG_SIZE>;

fn better(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  // larger value wins; ties go to the lower index, as argmax does
  if (b.x > a.x || (b.x == a.x && b.y < a.y)) {
    return b;
  }
  return a;
}

fn row_loss(t: u32, lid: u32) {
  let use_ref = WITH_REF;
  let V = params.V;
  let base = t * V;
  var bl = vec2<f32>(-3.0e38, 0.0);
  var br = vec2<f32>(-3.0e38, 0.0);
  for (var v = lid; v < V; v += WG_SIZE) {
    bl = better(bl, vec2<f32>(logits[base + v], f32(v)));
    if (use_ref) {
      br = better(br, vec2<f32>(ref_logits[base + v], f32(v)));
    }
  }
  red_max[lid] = vec4<f32>(bl, br);
  workgroupBarrier();
  for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      let a = red_max[lid];
      let b = red_max[lid + half];
      red_max[lid] = vec4<f32>(better(a.xy, b.xy), better(a.zw, b.zw));
    }
    workgroupBarrier();
  }
  let mx = red_max[0];
  var s = vec4<f32>(0.0);
  for (var v = lid; v < V; v += WG_SIZE) {
    let l = logits[base + v];
    s.x += exp(l - mx.x);
    if (use_ref) {
      let r = ref_logits[base + v];
      let e = exp(r - mx.z);
      s.y += e;
      s.z += e * (r - l);
    }
  }
  red_sum[lid] = s;
  workgroupBarrier();
  for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      red_sum[lid] += red_sum[lid + half];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let target_id = ids[t + 1u];
    let lse_l = mx.x + log(red_sum[0].x);
    let nll = lse_l - logits[base + target_id];
    var kl = 0.0;
    var top1 = select(0.0, 1.0, u32(mx.y) == target_id);
    if (use_ref) {
      let lse_r = mx.z + log(red_sum[0].y);
      kl = max(red_sum[0].z / red_sum[0].y - lse_r + lse_l, 0.0);
      top1 = select(0.0, 1.0, mx.y == mx.w);
    }
    out[t] = vec4<f32>(nll, kl, top1, 1.0);
  }
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = workgroup_index(wid, nwg); // workgroup-uniform, so every early return below is too
  let seq_end = params.seq > 0u && (t % params.seq) == params.seq - 1u;
  if (t + 1u >= params.T || seq_end) {
    if (lid == 0u && t < params.T) {
      out[t] = vec4<f32>(0.0);
    }
    return;
  }
  row_loss(t, lid);
}
