// backward_pointwise.wgsl — RoPE, SwiGLU and embedding backward
//
// rope_backward: the forward (shaders/nn/rope.wgsl) rotates each pair (i, i + D/2) of a head by
// a = p * inv_freq[i], p = pos0 + t (pos0 + t % seq when seq > 0); its transpose rotates the
// gradient by -a, in place:
//   g[i]       <- g[i] * cos(a) + g[i + D/2] * sin(a)
//   g[i + D/2] <- g[i + D/2] * cos(a) - g[i] * sin(a)
// swiglu_backward: h = silu(gate) * up, s = sigmoid(gate):
//   dgate = dh * up * s * (1 + gate * (1 - s)),  dup = dh * gate * s
// emb_zero / emb_scatter: dE[v, :] (+)= sum over positions t with ids[t] = v of dout[t, :]. The
// host lists the distinct ids in ascending order with their positions (CSR, built from the ids it
// holds); one invocation owns one (distinct id, column) and adds the rows in ascending t: no
// atomics, deterministic. emb_zero clears dE first when the gradient is not accumulated.
//
// Entry:     rope_backward
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
//   Grid:      (ceil(nh * D / 2 / WG_SIZE), T) with T folded into (y, z) (host: Kernel.grid2d) — one
//              invocation = one rotation pair of one head of token t = wid.z * num_workgroups.y + wid.y
// Entry:     swiglu_backward
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(n / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d); one invocation = one element
// Entry:     emb_zero — de[i] = 0 for i < n
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(n / WG_SIZE) workgroups folded into (x, y) (host: Kernel.grid1d)
// Entry:     emb_scatter
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      (ceil(H / WG_SIZE), nu, 1) — one invocation = column h of distinct id u0 + wid.y; the
//              host dispatches the distinct ids in runs of at most maxComputeWorkgroupsPerDimension
// Bindings (group 0):
//   0 g         storage read_write  array<f32>  [T, nh, D] row-major, gradient of the rotated q or k (in place)
//   1 inv_freq  storage read        array<f32>  [D / 2] radians per position (as in the forward)
//   2 rope_params uniform           RopeParams { T, nh (heads), D (head_dim, even), pos0, seq (0 = one sequence) }
//   3 gate      storage read        array<f32>  [n] forward input silu(gate)
//   4 up        storage read        array<f32>  [n] forward input up
//   5 dh        storage read        array<f32>  [n] gradient of h
//   6 dgate     storage read_write  array<f32>  [n] gradient of gate (may not alias the inputs)
//   7 dup       storage read_write  array<f32>  [n] gradient of up (may not alias the inputs)
//   8 ew_params uniform             EwParams { n (elements) }
//   9 dout      storage read        array<f32>  [T, H] row-major, gradient of the embedding output
//  10 csr       storage read        array<u32>  [2U + 1 + T]: csr[u] (u < U) = distinct ids ascending;
//                                              csr[U + u] .. csr[U + u + 1] = range of positions of id u in
//                                              csr[2U + 1 + k] (ascending t)
//  11 de        storage read_write  array<f32>  [rows, H] row-major, window of dE holding ids r0 .. r0+rows-1
//  12 emb_params uniform            EmbParams { n (emb_zero: elements), H, U (distinct ids), u0 (first distinct
//                                              id of this dispatch), nu, r0 (first dE row of the window), acc }
// Reference: src/ref/backward.ts ropeBackwardRef, swigluBackwardRef, embeddingBackwardRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;

struct RopeParams {
  T: u32,
  nh: u32,
  D: u32,
  pos0: u32,
  seq: u32,
}

struct EwParams {
  n: u32,
}

struct EmbParams {
  n: u32,
  H: u32,
  U: u32,
  u0: u32,
  nu: u32,
  r0: u32,
  acc: u32,
}

@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<uniform> rope_params: RopeParams;
@group(0) @binding(3) var<storage, read> gate: array<f32>;
@group(0) @binding(4) var<storage, read> up: array<f32>;
@group(0) @binding(5) var<storage, read> dh: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(7) var<storage, read_write> dup: array<f32>;
@group(0) @binding(8) var<uniform> ew_params: EwParams;
@group(0) @binding(9) var<storage, read> dout: array<f32>;
@group(0) @binding(10) var<storage, read> csr: array<u32>;
@group(0) @binding(11) var<storage, read_write> de: array<f32>;
@group(0) @binding(12) var<uniform> emb_params: EmbParams;

@compute @workgroup_size(WG_SIZE)
fn rope_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let half = rope_params.D / 2u;
  let t = row_workgroup(wid, nwg);
  if (gid.x >= rope_params.nh * half || t >= rope_params.T) {
    return;
  }
  let h = gid.x / half;
  let i = gid.x % half;
  var p = rope_params.pos0 + t;
  if (rope_params.seq > 0u) {
    p = rope_params.pos0 + t % rope_params.seq;
  }
  let a = f32(p) * inv_freq[i];
  let c = cos(a);
  let s = sin(a);
  let base = (t * rope_params.nh + h) * rope_params.D;
  let g1 = g[base + i];
  let g2 = g[base + i + half];
  g[base + i] = g1 * c + g2 * s;
  g[base + i + half] = g2 * c - g1 * s;
}

@compute @workgroup_size(WG_SIZE)
fn swiglu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i >= ew_params.n) {
    return;
  }
  let z = gate[i];
  let s = 1.0 / (1.0 + exp(-z));
  let d = dh[i];
  let u = up[i];
  dgate[i] = d * u * s * (1.0 + z * (1.0 - s));
  dup[i] = d * z * s;
}

@compute @workgroup_size(WG_SIZE)
fn emb_zero(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid, WG_SIZE);
  if (i < emb_params.n) {
    de[i] = 0.0;
  }
}

@compute @workgroup_size(WG_SIZE)
fn emb_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let H = emb_params.H;
  let h = wid.x * WG_SIZE + lid;
  if (h >= H || wid.y >= emb_params.nu) {
    return;
  }
  let U = emb_params.U;
  let u = emb_params.u0 + wid.y;
  let row = csr[u] - emb_params.r0;
  let k0 = csr[U + u];
  let k1 = csr[U + u + 1u];
  let pos = 2u * U + 1u;
  var s = 0.0;
  for (var k = k0; k < k1; k++) {
    s += dout[csr[pos + k] * H + h];
  }
  let o = row * H + h;
  if (emb_params.acc != 0u) {
    de[o] += s;
  } else {
    de[o] = s;
  }
}
