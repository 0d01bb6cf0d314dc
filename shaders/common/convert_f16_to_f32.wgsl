// convert_f16_to_f32.wgsl — dst = f32(src): exact widening of IEEE binary16 stored two per u32 word
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
// Grid:      ceil(ceil(n / 2) / WG_SIZE) workgroups, folded into (x, y) when over the per-dimension
//            limit (host: Kernel.grid1d); one invocation = one input word = two elements
// Bindings (group 0):
//   0 src     storage read        array<u32>  [ceil(n / 2)] words; element 2i in bits 0..15 of word i
//   1 dst     storage read_write  array<f32>  [n] elements
//   2 params  uniform             Params { n: elements }
// Needs no shader-f16 (unpack2x16float is core WGSL).
// Reference: src/ref/f16.ts f16ArrayToF32

override WG_SIZE: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let word = (wid.y * nwg.x + wid.x) * WG_SIZE + lid;
  let i = 2u * word;
  if (i >= params.n) {
    return;
  }
  let v = unpack2x16float(src[word]);
  dst[i] = v.x;
  if (i + 1u < params.n) {
    dst[i + 1u] = v.y;
  }
}
