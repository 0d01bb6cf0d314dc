// embedding.wgsl — out[t, :] = E[ids[t], :] for the ids whose row lies in this binding window of E
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
// Grid:      (ceil(H / WG_SIZE), T) with T folded into (y, z) (host: Kernel.grid2d) — one invocation
//            = one element of token t = wid.z * num_workgroups.y + wid.y (rows past T return);
//            dispatched once per window of E (E may exceed one storage binding)
// Bindings (group 0):
//   0 ids     storage read        array<u32>  [T] token ids (validated < vocab by the host)
//   1 emb     storage read        array<u32>  [rows, H] rows r0 .. r0+rows-1 of E; E_F16 = false: one f32
//                                             per word; E_F16 = true: f16 element e in bits 16*(e%2) of word e/2
//   2 out     storage read_write  array<f32>  [T, H] row-major
//   3 params  uniform             Params { T, H, r0 (first row of the window), rows (rows in the window) }
// Override:  E_F16: bool = false
// Reference: src/ref/llama.ts embedRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
override E_F16: bool = false;

struct Params {
  T: u32,
  H: u32,
  r0: u32,
  rows: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> emb: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn emb_at(e: u32) -> f32 {
  if (E_F16) {
    let pair = unpack2x16float(emb[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(emb[e]);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let h = gid.x;
  let t = row_workgroup(wid, nwg);
  if (h >= params.H || t >= params.T) {
    return;
  }
  let id = ids[t];
  if (id < params.r0 || id >= params.r0 + params.rows) {
    return;
  }
  out[t * params.H + h] = emb_at((id - params.r0) * params.H + h);
}
