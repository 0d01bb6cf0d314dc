// rope.wgsl — rotary position embedding, in place, as Hugging Face applies it (rotate_half)
//
// For token t at position p = pos0 + t (pos0 + t % seq for packed sequences, seq > 0), head h and
// i < D/2, with a = p * inv_freq[i]:
//   x[i]       <- x[i] * cos(a) - x[i + D/2] * sin(a)
//   x[i + D/2] <- x[i + D/2] * cos(a) + x[i] * sin(a)
// inv_freq (theta^(-2i/D), with llama3 scaling already applied) comes from the host.
//
// Entry:     main — cos and sin computed per pair
// Entry:     make_table — tab_out[p, 0, i] = cos(p * inv_freq[i]), tab_out[p, 1, i] = sin(...), p < T
// Entry:     apply_table — main with cos / sin read from that table, 4 pairs per invocation
//            (D / 2 a multiple of 4; the same values as main, without a cos / sin per pair)
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64
// Grid:      main (ceil(nh * D / 2 / WG_SIZE), T, 1) — one invocation = one rotation pair of one head;
//            make_table (ceil(D / 2 / WG_SIZE), P, 1); apply_table (ceil(nh * D / 8 / WG_SIZE), T, 1)
// Bindings (group 0):
//   0 x         storage read_write  array<f32>  [T, nh, D] row-major (q or k after projection)
//   1 inv_freq  storage read        array<f32>  [D / 2] radians per position
//   2 params    uniform             Params { T, nh (heads), D (head_dim, even), pos0, seq (0 = one sequence) }
//   3 tab_out   storage read_write  array<f32>  [P, 2, D / 2] cos / sin table (make_table)
//   4 tab       storage read        array<vec4<f32>>  the same table, read by apply_table (positions
//                                   pos0 .. pos0 + (seq or T) - 1 must be in it)
//   5 xv        storage read_write  array<vec4<f32>>  x again, as vec4 words (apply_table)
// Reference: src/ref/llama.ts ropeRef

override WG_SIZE: u32 = 64;

struct Params {
  T: u32,
  nh: u32,
  D: u32,
  pos0: u32,
  seq: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@group(0) @binding(3) var<storage, read_write> tab_out: array<f32>;
@group(0) @binding(4) var<storage, read> tab: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> xv: array<vec4<f32>>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = params.D / 2u;
  let t = gid.y;
  if (gid.x >= params.nh * half || t >= params.T) {
    return;
  }
  let h = gid.x / half;
  let i = gid.x % half;
  var p = params.pos0 + t;
  if (params.seq > 0u) {
    p = params.pos0 + t % params.seq;
  }
  let a = f32(p) * inv_freq[i];
  let c = cos(a);
  let s = sin(a);
  let base = (t * params.nh + h) * params.D;
  let x1 = x[base + i];
  let x2 = x[base + i + half];
  x[base + i] = x1 * c - x2 * s;
  x[base + i + half] = x2 * c + x1 * s;
}

@compute @workgroup_size(WG_SIZE)
fn make_table(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = params.D / 2u;
  let i = gid.x;
  let p = gid.y;
  if (i >= half || p >= params.T) {
    return;
  }
  let a = f32(p) * inv_freq[i];
  tab_out[(2u * p) * half + i] = cos(a);
  tab_out[(2u * p + 1u) * half + i] = sin(a);
}

@compute @workgroup_size(WG_SIZE)
fn apply_table(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h4 = params.D / 8u; // vec4 words per half head
  let t = gid.y;
  if (gid.x >= params.nh * h4 || t >= params.T) {
    return;
  }
  let h = gid.x / h4;
  let i = gid.x % h4;
  var p = params.pos0 + t;
  if (params.seq > 0u) {
    p = params.pos0 + t % params.seq;
  }
  let c = tab[(2u * p) * h4 + i];
  let s = tab[(2u * p + 1u) * h4 + i];
  let base = (t * params.nh + h) * (params.D / 4u) + i;
  let x1 = xv[base];
  let x2 = xv[base + h4];
  xv[base] = x1 * c - x2 * s;
  xv[base + h4] = x2 * c + x1 * s;
}
