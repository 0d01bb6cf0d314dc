// convert.wgsl — dst = src converted between f32 and 16-bit floats stored two per u32 word (f16 exact widening; f16 or bf16 rounding to nearest even)
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
// Grid:      ceil(ceil(n / 2) / WG_SIZE) workgroups, folded into (x, y) when over the per-dimension
//            limit (host: Kernel.grid1d); one invocation = one 16-bit word pair = two elements
// Parameters: CONVERSION = f32_to_f16 | f32_to_bf16 | f16_to_f32
//   f32_to_f16   dst = f16(src): IEEE binary16, round to nearest even (pack2x16float)
//   f32_to_bf16  dst = bf16(src): the top 16 bits of an f32, round to nearest even on the bits; NaN stays
//                a quiet NaN (0x7fc0 with its sign), overflow rounds to ±Inf
//   f16_to_f32   dst = f32(src): exact widening (unpack2x16float)
// Bindings (group 0):
//   0 src     storage read        array<f32> [n] elements (f16_to_f32: array<u32>, [ceil(n / 2)] words)
//   1 dst     storage read_write  array<u32> [ceil(n / 2)] words (f16_to_f32: array<f32>, [n] elements)
//   2 params  uniform             Params { n: elements }
// Words: element 2i in bits 0..15 of word i, element 2i+1 in bits 16..31 (0 when 2i+1 == n).
// Needs no shader-f16 (pack2x16float and unpack2x16float are core WGSL).
// Reference: src/ref/f16.ts f32ArrayToF16, f16ArrayToF32; src/ref/quant.ts f32ToBf16Bits

#define CONVERSION f32_to_f16

#include "common/grid.wgsl"

override WG_SIZE: u32 = 256;

struct Params {
  n: u32,
}

@group(0) @binding(2) var<uniform> params: Params;

#if CONVERSION == f16_to_f32
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

// Elements i and i + 1 (when < n) from source word `word`.
fn convert_word(word: u32, i: u32) {
  let v = unpack2x16float(src[word]);
  dst[i] = v.x;
  if (i + 1u < params.n) {
    dst[i + 1u] = v.y;
  }
}
#else
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

#if CONVERSION == f32_to_f16
fn pack_pair(lo: f32, hi: f32) -> u32 {
  return pack2x16float(vec2<f32>(lo, hi));
}
#elif CONVERSION == f32_to_bf16
fn bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) {
    return ((b >> 16u) & 0x8000u) | 0x7fc0u;
  }
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

fn pack_pair(lo: f32, hi: f32) -> u32 {
  return bf16_bits(lo) | (bf16_bits(hi) << 16u);
}
#else
#error CONVERSION must be f32_to_f16, f32_to_bf16 or f16_to_f32 (got '{{CONVERSION}}')
#endif

// Destination word `word` from elements i and i + 1 (0 past n).
fn convert_word(word: u32, i: u32) {
  var hi = 0.0;
  if (i + 1u < params.n) {
    hi = src[i + 1u];
  }
  dst[word] = pack_pair(src[i], hi);
}
#endif

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let word = linear_index(wid, nwg, lid, WG_SIZE);
  let i = 2u * word;
  if (i >= params.n) {
    return;
  }
  convert_word(word, i);
}
