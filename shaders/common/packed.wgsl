// packed.wgsl — the packed-weight matmuls' uniform, and group scales and zero points of a canonical packed weight (src/quant/formats.ts)
//
// Provides:  PackedParams             the uniform struct of matmul_q, matmul_q_sg and matmul_q_dp4a
//                                     (src/quant/matmul.ts): M, N, K (elements), G (group size; int8:
//                                     KW * 4), ng (groups per row), n0 (first W row of the window),
//                                     nw (rows in the window), sym (1: int4 symmetric, implicit zero 8)
//            scale_at(n, g) -> f32    f16 scale of group g of row n: element n * ng + g of `scales`,
//                                     at bits 16 * (i % 2) of word i / 2
//            zero_code(n, g) -> u32   zero point of group g of row n: 0 for int8 (BITS == 8), 8 for
//                                     symmetric int4 (params.sym != 0), else nibble g % 8 of word
//                                     g / 8 of row n's ceil(ng / 8) words of `zeros`
//            zero_at(n, g) -> f32     zero_code(n, g) as f32
// Needs:     override BITS: u32; var<uniform> params: PackedParams; storage arrays
//            scales: array<u32> and zeros: array<u32>

struct PackedParams {
  M: u32,
  N: u32,
  K: u32,
  G: u32,
  ng: u32,
  n0: u32,
  nw: u32,
  sym: u32,
}

fn scale_at(n: u32, g: u32) -> f32 {
  let i = n * params.ng + g;
  let pair = unpack2x16float(scales[i >> 1u]);
  return select(pair.x, pair.y, (i & 1u) == 1u);
}

fn zero_code(n: u32, g: u32) -> u32 {
  if (BITS == 8u) {
    return 0u;
  }
  if (params.sym != 0u) {
    return 8u;
  }
  let zw = (params.ng + 7u) / 8u;
  return (zeros[n * zw + g / 8u] >> (4u * (g % 8u))) & 15u;
}

fn zero_at(n: u32, g: u32) -> f32 {
  return f32(zero_code(n, g));
}
