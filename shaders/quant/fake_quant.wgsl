// fake_quant.wgsl — AWQ's fake quantization in f32: fq = dequant(quant(clip(w·diag(s))))·diag(1/s), by the packed quantizer's rules for any bit width
//
// Entry:     fake_quant — s and 1/s from col_scale (multiplications only: f32 division may be inexact
//            on a device, multiplication is not); α = 0 without a clip reproduces RTN (rtn.wgsl) bit for bit
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
// Grid:      ceil(N * ng / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation =
//            one (row, group)
// Bindings (group 0):
//   0 w          storage read        array<f32>  [N, K] weights (the whole weight in one binding)
//   1 fq         storage read_write  array<f32>  [N, K] fake-quantized weights ([K, N] when transposed = 1,
//                                                the layout of nn/matmul_wt.wgsl)
//   2 col_scale  storage read        array<f32>  [2, K] AWQ input-channel scales s, then f32(1 / s) rounded
//                                                on the host (use_scale = 1; else any)
//   3 clip_max   storage read        array<f32>  [N, ng] clip bound per (row, group) (use_clip = 1; else any)
//   4 params     uniform             FqParams { N, K, G (<= 128), ng, maxq (asym 2^b − 1; sym 2^(b−1) − 1),
//                                               use_scale, use_clip, T, transposed, x_vec4 } (fake_quant_group.wgsl)
// Override:  SYM: bool = false — symmetric levels −maxq−1..maxq, no zero point
// Rules:     as rtn.wgsl (quant/rounding.wgsl: exact round-to-nearest-even of the quotients)
// Reference: src/ref/awq.ts (src/quant/fake_quant.ts fakeQuantize)

#include "common/grid.wgsl"
#include "quant/fake_quant_group.wgsl"

override WG_SIZE: u32 = 64;
override SYM: bool = false;

@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> fq: array<f32>;
@group(0) @binding(2) var<storage, read> col_scale: array<f32>;
@group(0) @binding(3) var<storage, read> clip_max: array<f32>;
@group(0) @binding(4) var<uniform> params: FqParams;

@compute @workgroup_size(WG_SIZE)
fn fake_quant(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid, WG_SIZE);
  let P = params;
  if (t >= P.N * P.ng) {
    return;
  }
  let n = t / P.ng;
  let g = t % P.ng;
  let k0 = g * P.G;
  let k1 = min(k0 + P.G, P.K);
  var m = 0.0;
  if (P.use_clip == 1u) {
    m = clip_max[t];
  }
  var vals: array<f32, MAX_G>;
  var mn = 3.0e38;
  var mx = -3.0e38;
  for (var k = k0; k < k1; k++) {
    var v = w[n * P.K + k];
    if (P.use_scale == 1u) {
      v = v * col_scale[k];
    }
    if (P.use_clip == 1u) {
      v = clamp(v, -m, m);
    }
    vals[k - k0] = v;
    mn = min(mn, v);
    mx = max(mx, v);
  }
  let sz = fq_scale_zero(mn, mx);
  for (var k = k0; k < k1; k++) {
    var d = fq_value(vals[k - k0], sz);
    if (P.use_scale == 1u) {
      d = d * col_scale[P.K + k];
    }
    fq[select(n * P.K + k, k * P.N + n, P.transposed == 1u)] = d;
  }
}
