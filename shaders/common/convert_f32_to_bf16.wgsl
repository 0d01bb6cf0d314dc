// convert_f32_to_bf16.wgsl — dst = bf16(src): bfloat16 (the top 16 bits of an f32), round to nearest even
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
// Rounding on the bits: NaN stays a quiet NaN (0x7fc0 with its sign), overflow rounds to ±Inf.
// Reference: src/ref/quant.ts f32ToBf16Bits

override WG_SIZE: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

fn bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) {
    return ((b >> 16u) & 0x8000u) | 0x7fc0u;
  }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let word = (wid.y * nwg.x + wid.x) * WG_SIZE + lid;
  let i = 2u * word;
  if (i >= params.n) {
    return;
  }
  var hi = 0u;
  if (i + 1u < params.n) {
    hi = bf16_bits(src[i + 1u]);
  }
  dst[word] = bf16_bits(src[i]) | (hi << 16u);
}
