// rmsnorm.wgsl — y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64 (a power of two)
// Grid:      T workgroups folded into (x, y) (host: Kernel.grid1d) — one workgroup = one row
//            t = wid.y * num_workgroups.x + wid.x (workgroups past T return); strided sum of squares,
//            then a pairwise fold
// Bindings (group 0):
//   0 x       storage read        array<f32>  [T, H] row-major
//   1 w       storage read        array<f32>  [H] gain
//   2 y       storage read_write  array<f32>  [T, H] row-major (may not alias x)
//   3 params  uniform             Params { T, H, eps }
// Reference: src/ref/llama.ts rmsnormRef (Hugging Face LlamaRMSNorm in float32)

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;

struct Params {
  T: u32,
  H: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> part: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = workgroup_index(wid, nwg);
  if (t >= params.T) {
    return; // workgroup-uniform: the barriers below stay in uniform control flow
  }
  let base = t * params.H;
  var ss = 0.0;
  for (var h = lid; h < params.H; h += WG_SIZE) {
    let v = x[base + h];
    ss = fma(v, v, ss);
  }
  part[lid] = ss;
  workgroupBarrier();
  for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      part[lid] += part[lid + half];
    }
    workgroupBarrier();
  }
  let inv = inverseSqrt(part[0] / f32(params.H) + params.eps);
  for (var h = lid; h < params.H; h += WG_SIZE) {
    y[base + h] = x[base + h] * inv * w[h];
  }
}
