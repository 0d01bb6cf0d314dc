// backward_linear.wgsl — gradients of a linear layer y[T, N] = x[T, K] · W[N, K]^T as one GEMM kernel
//
// c[M, P] (+)= A[M, R] · b[R, P], where A is read through strides from the binding a:
//   A(m, r) = a[a_off + m * a_rs + r * a_cs]
// The host uses it twice (src/train/backward.ts linearBackward), per window of W rows n0 .. n0+nw-1:
//   dx[T, K]       (+)= dy[:, n0..] · W[n0.., :]     M = T,  R = nw, P = K, a = dy (a_off = n0, a_rs = N, a_cs = 1), b = W window
//   dW[n0.., K]    (+)= dy[:, n0..]^T · x           M = nw, R = T,  P = K, a = dy (a_off = n0, a_rs = 1, a_cs = N), b = x
// acc != 0 adds to what c holds; acc == 0 overwrites it.
//
// Entry:     gemm
// Workgroup: @workgroup_size(WG_X, WG_Y), override WG_X: u32 = 8, override WG_Y: u32 = 8
// Grid:      (ceil(P / (4 * WG_X)), ceil(M / (4 * WG_Y))) with the second count folded into (y, z)
//            (host: Kernel.grid2d): row workgroup wid.z * num_workgroups.y + wid.y; one invocation =
//            a 4x4 register tile of c (4 rows of A by 4 columns of b); no workgroup memory, no barriers
// Bindings (group 0):
//   0 a       storage read        array<f32>  A(m, r) at a_off + m * a_rs + r * a_cs (dy [T, N] row-major)
//   1 b       storage read        array<f32>  [R, P] row-major (a window of W, or x)
//   2 c       storage read_write  array<f32>  [M, P] row-major (dx, or a window of dW); may not alias a or b
//   3 params  uniform             Params { M, P, R (elements), a_off, a_rs, a_cs (A's offset and strides),
//                                            acc (0 = overwrite, 1 = add) }
// Ragged M, P, R: edge tiles clamp their loads and skip their stores.
// Reference: src/ref/backward.ts linearBackwardRef

#include "common/grid.wgsl"

override WG_X: u32 = 8;
override WG_Y: u32 = 8;

const TM: u32 = 4u;
const TP: u32 = 4u;

struct Params {
  M: u32,
  P: u32,
  R: u32,
  a_off: u32,
  a_rs: u32,
  a_cs: u32,
  acc: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn gemm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let pb = gid.x * TP;
  let mb = (row_workgroup(wid, nwg) * WG_Y + lid.y) * TM;
  let P = params.P;
  if (pb >= P || mb >= params.M) {
    return;
  }
  var arow: array<u32, 4>;
  for (var i = 0u; i < TM; i++) {
    arow[i] = params.a_off + min(mb + i, params.M - 1u) * params.a_rs;
  }
  let p1 = min(pb + 1u, P - 1u);
  let p2 = min(pb + 2u, P - 1u);
  let p3 = min(pb + 3u, P - 1u);
  var acc: array<vec4<f32>, 4>;
  var ac = 0u;
  var brow = 0u;
  for (var r = 0u; r < params.R; r++) {
    let bv = vec4<f32>(b[brow + pb], b[brow + p1], b[brow + p2], b[brow + p3]);
    for (var i = 0u; i < TM; i++) {
      acc[i] = fma(vec4<f32>(a[arow[i] + ac]), bv, acc[i]);
    }
    ac += params.a_cs;
    brow += P;
  }
  for (var i = 0u; i < TM; i++) {
    let m = mb + i;
    if (m >= params.M) {
      break;
    }
    for (var j = 0u; j < TP; j++) {
      if (pb + j < P) {
        let o = m * P + pb + j;
        if (params.acc != 0u) {
          c[o] += acc[i][j];
        } else {
          c[o] = acc[i][j];
        }
      }
    }
  }
}
