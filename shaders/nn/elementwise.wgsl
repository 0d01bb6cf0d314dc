// elementwise.wgsl — the small element-wise ops of a Llama block
//
// Entry:     add_inplace — x[i] += y[i]                          (residual add), i < n
// Entry:     silu_mul    — x[i] = silu(y[i]) * u[i]              (SwiGLU: y = gate, u = up), i < n
// Entry:     add_bias    — x[t, c] += y[c]                       (q/k/v biases), i = t * cols + c < n
// Entry:     mul_cols    — x[t, c] *= y[c]                       (scale input channels), i = t * cols + c < n
// Entry:     mul_rows    — x[r, c] *= y[r]                       (scale output rows), i = r * cols + c < n
// Entry:     sub         — x[i] = y[i] - u[i]                    (errors against a reference), i < n
// Entry:     transpose   — x[c, r] = y[r, c]                     (transposed weights), i = r * cols + c < n
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
// Grid:      ceil(n / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation = one element
// Bindings (group 0):
//   0 x       storage read_write  array<f32>  [n] output (and input of add_inplace, add_bias); transpose:
//                                             [cols, n / cols], a buffer other than y
//   1 y       storage read        array<f32>  [n] (add_inplace, silu_mul, sub), [cols] (add_bias, mul_cols)
//                                             or [n / cols] (mul_rows); transpose: [n / cols, cols]
//   2 u       storage read        array<f32>  [n] (silu_mul, sub)
//   3 params  uniform             Params { n (elements), cols (row length for add_bias, mul_cols, mul_rows,
//                                             transpose) }
// Reference: src/ref/llama.ts (siluRef and plain loops)

#include "common/grid.wgsl"

override WG_SIZE: u32 = 256;

struct Params {
  n: u32,
  cols: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn add_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    x[i] += y[i];
  }
}

@compute @workgroup_size(WG_SIZE)
fn silu_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    let g = y[i];
    x[i] = g / (1.0 + exp(-g)) * u[i];
  }
}

@compute @workgroup_size(WG_SIZE)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    x[i] += y[i % params.cols];
  }
}

@compute @workgroup_size(WG_SIZE)
fn mul_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    x[i] *= y[i % params.cols];
  }
}

@compute @workgroup_size(WG_SIZE)
fn mul_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    x[i] *= y[i / params.cols];
  }
}

@compute @workgroup_size(WG_SIZE)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    x[i] = y[i] - u[i];
  }
}

@compute @workgroup_size(WG_SIZE)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < params.n) {
    let r = i / params.cols;
    let c = i % params.cols;
    x[c * (params.n / params.cols) + r] = y[i];
  }
}
