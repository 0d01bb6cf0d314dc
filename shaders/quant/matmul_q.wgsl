// matmul_q.wgsl — y[M, N] = x[M, K] · dequant(W)[N, K]^T, W packed int4 (group-wise) or int8 (per row), f32 x and y
//
// Entry:     main
// Workgroup: @workgroup_size(WG_X, WG_Y), override WG_X: u32 = 8, override WG_Y: u32 = 8
// Grid:      (ceil(nw / (4 * WG_X)), ceil(M / (TM * WG_Y))) with the second count folded into (y, z)
//            (host: Kernel.grid2d): row workgroup wid.z * num_workgroups.y + wid.y; one invocation =
//            a TM x 4 register tile (TM rows of x by 4 rows of W); no workgroup memory, no barriers.
//            The host uses WG_X = 64, WG_Y = 1.
// Bindings (group 0):
//   0 x        storage read        array<f32>  [M, K] row-major
//   1 qweight  storage read        array<u32>  [nw, KW] rows n0 .. n0+nw-1 of W (one binding window);
//                                              KW = ceil(K / PER) words, PER = 32 / BITS values per word
//   2 scales   storage read        array<u32>  [N * ng] f16, element i at bits 16*(i%2) of word i/2 (whole tensor)
//   3 zeros    storage read        array<u32>  [N, ceil(ng/8)] 4-bit zero points (asym int4; whole tensor);
//                                              unread when sym or BITS == 8 (bind any tensor)
//   4 y        storage read_write  array<f32>  [M, N] row-major; this dispatch writes columns n0 .. n0+nw-1
//   5 params   uniform             Params { M, N, K (elements), G (group size; int8: KW*4), ng (groups per row),
//                                           n0 (first W row of the window), nw (rows in window),
//                                           sym (1: int4 symmetric, implicit zero 8) }
// Overrides: BITS: u32 = 4 (4 or 8), TM: u32 = 4 (1..8 rows of x per invocation; rows past M are
//            clamped loads and skipped stores). The host uses TM = 1 for M = 1 and TM = 4 otherwise, so
//            each BITS needs two pipelines (lavapipe JIT-compiles each in ~1 s).
// Packing:   int4: element k at bits 4*(k%8) of word k/8, w = (q - z) * s, z = 8 when SYM;
//            int8: two's-complement byte k%4 of word k/4, w = q * s. G % PER == 0, so no word straddles
//            two groups; pad values past K are never used (x is masked in the ragged last word).
//            Layout: src/quant/formats.ts
// Reference: src/ref/quant.ts dequantizeRef + src/ref/matmul.ts matmulRef

override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override BITS: u32 = 4;
override TM: u32 = 4;

const TN: u32 = 4u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  G: u32,
  ng: u32,
  n0: u32,
  nw: u32,
  sym: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> qweight: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> zeros: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// Scale of group g of global row n.
fn scale_at(n: u32, g: u32) -> f32 {
  let i = n * params.ng + g;
  let pair = unpack2x16float(scales[i >> 1u]);
  return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Zero point of group g of global row n (int4; 8 when sym, 0 for int8).
fn zero_at(n: u32, g: u32) -> f32 {
  if (BITS == 8u) {
    return 0.0;
  }
  if (params.sym != 0u) {
    return 8.0;
  }
  let zw = (params.ng + 7u) / 8u;
  return f32((zeros[n * zw + g / 8u] >> (4u * (g % 8u))) & 15u);
}

// Quantized value e (0 .. PER-1) of each of the 4 words, as f32 levels (before the zero point).
fn levels(wd: vec4<u32>, e: u32) -> vec4<f32> {
  if (BITS == 8u) {
    return vec4<f32>(bitcast<vec4<i32>>(wd << vec4<u32>(24u - 8u * e)) >> vec4<u32>(24u));
  }
  return vec4<f32>((wd >> vec4<u32>(4u * e)) & vec4<u32>(15u));
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let PER = 32u / BITS;
  let nb = gid.x * TN;
  let mb = ((wid.z * nwg.y + wid.y) * WG_Y + lid.y) * TM;
  let K = params.K;
  if (nb >= params.nw || mb >= params.M) {
    return;
  }
  let KW = (K + PER - 1u) / PER;
  let GW = params.G / PER;    // words per group
  var xrow: array<u32, 8>;
  for (var i = 0u; i < TM; i++) {
    xrow[i] = min(mb + i, params.M - 1u) * K;
  }
  var wrow: vec4<u32>;
  var nrow: vec4<u32>;
  for (var j = 0u; j < TN; j++) {
    let r = min(nb + j, params.nw - 1u);
    wrow[j] = r * KW;
    nrow[j] = params.n0 + r;
  }
  var acc: array<vec4<f32>, 8>;
  var s = vec4<f32>(0.0);
  var zs = vec4<f32>(0.0);
  for (var g = 0u; g < params.ng; g++) {
    for (var j = 0u; j < TN; j++) {
      s[j] = scale_at(nrow[j], g);
      zs[j] = zero_at(nrow[j], g) * s[j];
    }
    let w1 = min((g + 1u) * GW, KW);
    for (var kw = g * GW; kw < w1; kw++) {
      let wd = vec4<u32>(qweight[wrow.x + kw], qweight[wrow.y + kw], qweight[wrow.z + kw], qweight[wrow.w + kw]);
      for (var e = 0u; e < PER; e++) {
        let wv = levels(wd, e) * s - zs;
        let k = kw * PER + e;
        for (var i = 0u; i < TM; i++) {
          // Masked past K (the ragged last word): the pad value meets x = 0, never the next row.
          acc[i] = fma(vec4<f32>(select(0.0, x[xrow[i] + k], k < K)), wv, acc[i]);
        }
      }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = mb + i;
    if (m >= params.M) {
      break;
    }
    for (var j = 0u; j < TN; j++) {
      if (nb + j < params.nw) {
        y[m * params.N + params.n0 + nb + j] = acc[i][j];
      }
    }
  }
}
