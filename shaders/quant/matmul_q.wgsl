// matmul_q.wgsl — y[M, N] = x[M, K] · dequant(W)[N, K]^T, W packed int4 (group-wise) or int8 (per row), f32 or f16 x and y
//
// Entry:     main
// Workgroup: @workgroup_size(WG_X, WG_Y), override WG_X: u32 = 8, override WG_Y: u32 = 8
// Grid:      (ceil(nw / (4 * WG_X)), ceil(M / (TM * WG_Y))) with the second count folded into (y, z)
//            (host: Kernel.grid2d): row workgroup wid.z * num_workgroups.y + wid.y; one invocation =
//            a TM x 4 register tile (TM rows of x by 4 rows of W); no workgroup memory, no barriers.
//            The host uses WG_X = 64, WG_Y = 1.
// Parameters: X_TYPE = f32 | f16
//            the element type of x and y; f16 needs shader-f16 (`enable f16`): dequantization and
//            accumulation stay f32 and y is rounded to f16 once at the end
// Bindings (group 0):
//   0 x        storage read        array<X_TYPE>  [M, K] row-major
//   1 qweight  storage read        array<u32>  [nw, KW] rows n0 .. n0+nw-1 of W (one binding window);
//                                              KW = ceil(K / PER) words, PER = 32 / BITS values per word
//   2 scales   storage read        array<u32>  [N * ng] f16, element i at bits 16*(i%2) of word i/2 (whole tensor)
//   3 zeros    storage read        array<u32>  [N, ceil(ng/8)] 4-bit zero points (asym int4; whole tensor);
//                                              unread when sym or BITS == 8 (bind any tensor)
//   4 y        storage read_write  array<X_TYPE>  [M, N] row-major; this dispatch writes columns n0 .. n0+nw-1
//   5 params   uniform             PackedParams { M, N, K (elements), G (group size; int8: KW*4), ng (groups per row),
//                                                 n0 (first W row of the window), nw (rows in window),
//                                                 sym (1: int4 symmetric, implicit zero 8) }
// Overrides: BITS: u32 = 4 (4 or 8), TM: u32 = 4 (1..8 rows of x per invocation; rows past M are
//            clamped loads and skipped stores). The host uses TM = 1 for M = 1 and TM = 4 otherwise, so
//            each BITS needs two pipelines (lavapipe JIT-compiles each in ~1 s).
// Packing:   int4: element k at bits 4*(k%8) of word k/8, w = (q - z) * s, z = 8 when SYM;
//            int8: two's-complement byte k%4 of word k/4, w = q * s. G % PER == 0, so no word straddles
//            two groups; pad values past K are never used (x is masked in the ragged last word).
//            Layout: src/quant/formats.ts
// Reference: src/ref/quant.ts dequantizeRef + src/ref/matmul.ts matmulRef

#define X_TYPE f32
#if X_TYPE == f16
enable f16;
#endif

#include "common/grid.wgsl"
#include "common/packed.wgsl"
#include "common/packed_levels.wgsl"

override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override BITS: u32 = 4;
override TM: u32 = 4;

const TN: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<{{X_TYPE}}>;
@group(0) @binding(1) var<storage, read> qweight: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> zeros: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<{{X_TYPE}}>;
@group(0) @binding(5) var<uniform> params: PackedParams;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let PER = 32u / BITS;
  let nb = gid.x * TN;
  let mb = (row_workgroup(wid, nwg) * WG_Y + lid.y) * TM;
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
          acc[i] = fma(vec4<f32>(select(0.0, f32(x[xrow[i] + k]), k < K)), wv, acc[i]);
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
        y[m * params.N + params.n0 + nb + j] = {{X_TYPE}}(acc[i][j]);
      }
    }
  }
}
