// backward_norm.wgsl — RMSNorm backward: dx and dw of y[t, :] = x[t, :] * r_t * w, r_t = 1 / sqrt(mean(x[t, :]^2) + eps)
//
// With c_t = sum_i w[i] dy[t, i] x[t, i]:
//   dx[t, j] = r_t * w[j] * dy[t, j] - r_t^3 * c_t / H * x[t, j]
//   dw[j]    = sum_t dy[t, j] * x[t, j] * r_t
// Three passes, no barriers: rms_rows writes (r_t, c_t) per row, then rms_dx (one invocation per
// element) and rms_dw (one invocation per column) read them. acc != 0 adds into dx (rms_dx) or dw
// (rms_dw) instead of overwriting.
//
// Entry:     rms_rows — stats[t] = (r_t, c_t)
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      ceil(T / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation = one
//              row (one pass over H)
// Entry:     rms_dx — dx[t, j]
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(T * H / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation = one element
// Entry:     rms_dw — dw[j]
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      (ceil(H / WG_SIZE), 1, 1) — one invocation = one column, summed over the T rows in order
// Bindings (group 0):
//   0 x       storage read        array<f32>        [T, H] row-major, the forward input
//   1 w       storage read        array<f32>        [H] gain
//   2 dy      storage read        array<f32>        [T, H] row-major, gradient of y
//   3 stats   storage read_write  array<vec2<f32>>  [T] (r_t, c_t), scratch written by rms_rows
//   4 dx      storage read_write  array<f32>        [T, H] row-major, gradient of x (may not alias x or dy)
//   5 dw      storage read_write  array<f32>        [H] gradient of w
//   6 params  uniform             Params { T, H, eps, acc (0 = overwrite, 1 = add) }
// Reference: src/ref/backward.ts rmsnormBackwardRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;

struct Params {
  T: u32,
  H: u32,
  eps: f32,
  acc: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn rms_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  if (t >= params.T) {
    return;
  }
  let H = params.H;
  let base = t * H;
  var ss = 0.0;
  var c = 0.0;
  for (var h = 0u; h < H; h++) {
    let v = x[base + h];
    ss = fma(v, v, ss);
    c = fma(w[h] * dy[base + h], v, c);
  }
  stats[t] = vec2<f32>(inverseSqrt(ss / f32(H) + params.eps), c);
}

@compute @workgroup_size(WG_SIZE)
fn rms_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  let H = params.H;
  if (i >= params.T * H) {
    return;
  }
  let t = i / H;
  let j = i - t * H;
  let s = stats[t];
  let r = s.x;
  let g = r * w[j] * dy[i] - r * r * r * s.y / f32(H) * x[i];
  if (params.acc != 0u) {
    dx[i] += g;
  } else {
    dx[i] = g;
  }
}

@compute @workgroup_size(WG_SIZE)
fn rms_dw(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let H = params.H;
  if (j >= H) {
    return;
  }
  var g = 0.0;
  for (var t = 0u; t < params.T; t++) {
    let i = t * H + j;
    g = fma(dy[i] * x[i], stats[t].x, g);
  }
  if (params.acc != 0u) {
    dw[j] += g;
  } else {
    dw[j] = g;
  }
}
