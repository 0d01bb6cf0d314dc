// rope.wgsl — rotary position embedding, in place, as Hugging Face applies it (rotate_half)
//
// For token t at position p = pos0 + t (pos0 + t % seq for packed sequences, seq > 0), head h and
// i < D/2, with a = p * inv_freq[i]:
//   x[i]       <- x[i] * cos(a) - x[i + D/2] * sin(a)
//   x[i + D/2] <- x[i + D/2] * cos(a) + x[i] * sin(a)
// inv_freq (theta^(-2i/D), with llama3 scaling already applied) comes from the host.
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
// Grid:      (ceil(nh * D / 2 / WG_SIZE), T) with T folded into (y, z) (host: Kernel.grid2d) — one
//            invocation = one rotation pair of one head of token t = wid.z * num_workgroups.y + wid.y
//            (rows past T return)
// Bindings (group 0):
//   0 x         storage read_write  array<f32>  [T, nh, D] row-major (q or k after projection)
//   1 inv_freq  storage read        array<f32>  [D / 2] radians per position
//   2 params    uniform             Params { T, nh (heads), D (head_dim, even), pos0, seq (0 = one sequence) }
// Reference: src/ref/llama.ts ropeRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;

struct Params {
  T: u32,
  nh: u32,
  D: u32,
  pos0: u32,
  seq: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let half = params.D / 2u;
  let t = row_workgroup(wid, nwg);
  if (gid.x >= params.nh * half || t >= params.T) {
    return;
  }
  let h = gid.x / half;
  let i = gid.x % half;
  var p = params.pos0 + t;
  if (params.seq > 0u) {
    p = params.pos0 + t % params.seq;
  }
  let a = f32(p) * inv_freq[i];
  let c = cos(a);
  let s = sin(a);
  let base = (t * params.nh + h) * params.D;
  let x1 = x[base + i];
  let x2 = x[base + i + half];
  x[base + i] = x1 * c - x2 * s;
  x[base + i + half] = x2 * c + x1 * s;
}
