// convert_f32_to_f16.wgsl — dst = f16(src): IEEE binary16, round to nearest even, two per u32 word
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
// Grid:      ceil(ceil(n / 2) / WG_SIZE) workgroups, folded into (x, y) when over the per-dimension
//            limit (host: Kernel.grid1d); one invocation = one output word = two elements
// Bindings (group 0):
//   0 src     storage read        array<f32>  [n] elements
//   1 dst     storage read_write  array<u32>  [ceil(n / 2)] words; element 2i in bits 0..15 of word i,
//                                             element 2i+1 in bits 16..31 (0 when 2i+1 == n)
//   2 params  uniform             Params { n: elements }
// Needs no shader-f16 (pack2x16float is core WGSL).
// Reference: src/ref/f16.ts f32ArrayToF16

override WG_SIZE: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let word = (wid.y * nwg.x + wid.x) * WG_SIZE + lid;
  let i = 2u * word;
  if (i >= params.n) {
    return;
  }
  var hi = 0.0;
  if (i + 1u < params.n) {
    hi = src[i + 1u];
  }
  dst[word] = pack2x16float(vec2<f32>(src[i], hi));
}
