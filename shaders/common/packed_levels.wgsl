// packed_levels.wgsl — quantized levels of packed int4/int8 words, as f32 (before the zero point)
//
// Provides:  level(wd, e) -> f32               value e (0 .. 32 / BITS − 1) of word wd: int4 nibble e
//                                              (0..15), int8 two's-complement byte e (−128..127)
//            levels(wd: vec4<u32>, e) -> vec4<f32>
//                                              the same for 4 words at once
// Needs:     override BITS: u32 (4 or 8)

fn level(wd: u32, e: u32) -> f32 {
  if (BITS == 8u) {
    return f32(bitcast<i32>(wd << (24u - 8u * e)) >> 24u);
  }
  return f32((wd >> (4u * e)) & 15u);
}

fn levels(wd: vec4<u32>, e: u32) -> vec4<f32> {
  if (BITS == 8u) {
    return vec4<f32>(bitcast<vec4<i32>>(wd << vec4<u32>(24u - 8u * e)) >> vec4<u32>(24u));
  }
  return vec4<f32>((wd >> vec4<u32>(4u * e)) & vec4<u32>(15u));
}
