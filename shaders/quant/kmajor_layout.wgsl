// kmajor_layout.wgsl — the K-major repacked weight's blocking, uniform and output store, shared by kmajor.wgsl and kmajor_dp4a.wgsl
//
// Provides:  CB                        column quads per block (8: 32 columns, one llvmpipe SIMD batch)
//            KMajorParams              the uniform struct (src/quant/kmajor.ts): M, N, K (elements), KW
//                                      (canonical words per row), KWP (words per column in qk), N4P
//                                      (column quads), ng (groups per row), GW (words per group: G / PER;
//                                      int8: KW), mode (0 int8, 1 int4 asym, 2 int4 sym)
//            store(m, c, v)            y[m, 4c .. 4c+3] = v where m < M and the column < N
// Needs:     var<uniform> params: KMajorParams; storage y: array<f32> [M, N] row-major

const CB: u32 = 8u;

struct KMajorParams {
  M: u32,
  N: u32,
  K: u32,
  KW: u32,
  KWP: u32,
  N4P: u32,
  ng: u32,
  GW: u32,
  mode: u32,
}

fn store(m: u32, c: u32, v: vec4<f32>) {
  if (m >= params.M) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.N) {
      y[m * params.N + 4u * c + j] = v[j];
    }
  }
}
