// fake_quant_group.wgsl — one group's fake quantization in f32 by the packed quantizer's rules (scale, zero point, dequantized value)
//
// Provides:  FqParams                      the uniform struct of the AWQ kernels (fake_quant.wgsl,
//                                          clip.wgsl): N, K, G (<= MAX_G), ng, maxq (asym 2^b − 1;
//                                          sym 2^(b−1) − 1), use_scale, use_clip, T (rows of x),
//                                          transposed, x_vec4
//            MAX_G                         largest group held in registers (128)
//            fq_scale_zero(mn, mx) -> vec2<f32>
//                                          (scale, zero) of a group with extremes mn <= mx for levels
//                                          0..maxq (asym) or −maxq−1..maxq (sym); scale 0 = a symmetric
//                                          all-zero group
//            fq_value(v, sz) -> f32        v quantized with (scale, zero) sz and dequantized
//            and everything quant/rounding.wgsl provides (included here)
// Needs:     override SYM: bool; var<uniform> params: FqParams

#include "quant/rounding.wgsl"

struct FqParams {
  N: u32,
  K: u32,
  G: u32,
  ng: u32,
  maxq: u32,
  use_scale: u32,
  use_clip: u32,
  T: u32,
  transposed: u32,
  x_vec4: u32,
}

const MAX_G: u32 = 128u;

fn fq_scale_zero(mn: f32, mx: f32) -> vec2<f32> {
  let maxq = f32(params.maxq);
  if (SYM) {
    return vec2<f32>(f16_value(div_to_f16(max(abs(mn), abs(mx)), maxq)), 0.0);
  }
  let s = f16_value(max(div_to_f16(mx - mn, maxq), F16_1EM5));
  return vec2<f32>(s, clamp(rne_div(-mn, s), 0.0, maxq));
}

fn fq_value(v: f32, sz: vec2<f32>) -> f32 {
  let maxq = f32(params.maxq);
  if (SYM) {
    if (sz.x == 0.0) {
      return 0.0;
    }
    return clamp(rne_div(v, sz.x), -maxq - 1.0, maxq) * sz.x;
  }
  return (clamp(rne_div(v, sz.x) + sz.y, 0.0, maxq) - sz.y) * sz.x;
}
