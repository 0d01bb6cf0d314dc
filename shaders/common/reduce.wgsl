// reduce.wgsl — per-row or per-column statistics of x[R, C] (f32): (sum, sum |x|, max |x|, sum x^2)
//
// Two passes. Pass 1 (partial_rows or partial_cols) writes one vec4 partial per (part, segment);
// pass 2 (combine) folds the parts of each segment. A segment is a row (partial_rows) or a column
// (partial_cols). Sums are compensated (Kahan) per invocation and folded pairwise across the
// workgroup, so results stay within a few f32 ulps of the exact sum on long rows.
//
// Entry:     partial_rows
//   Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
//   Grid:      (ceil(C / params.chunk), rows_in_window, 1) — one workgroup = `chunk` elements of one row
//   Writes:    partials[(part0 + wid.x) * nseg + seg0 + wid.y]
// Entry:     partial_cols
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      (ceil(C / WG_SIZE), ceil(rows_in_window / params.chunk), 1) — one invocation = one
//              column over `chunk` rows
//   Writes:    partials[(part0 + wid.y) * nseg + column]
// Entry:     combine
//   Workgroup: @workgroup_size(WG_SIZE)
//   Grid:      ceil(nseg / WG_SIZE) workgroups, folded into (x, y) (host: Kernel.grid1d)
//   Writes:    out[s] = fold over p < nparts of partials[p * nseg + s]; with ACCUMULATE the fold
//              starts from out[s] (running statistics over many calls: sums add, max takes the max)
// Bindings (group 0):
//   0 x         storage read        array<f32>        [rows_in_window, C] row-major, one binding window
//   1 partials  storage read_write  array<vec4<f32>>  [nparts, nseg] (sum, sum|x|, max|x|, sum x^2)
//   2 out       storage read_write  array<vec4<f32>>  [nseg] same four statistics
//   3 params    uniform             Params { rows (in window), cols, chunk (elements or rows),
//                                            seg0, part0, nseg, nparts }
// Override:  ACCUMULATE: bool = false (combine only)
// Reference: src/ref/reduce.ts reduceRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 256;
override ACCUMULATE: bool = false;

struct Params {
  rows: u32,
  cols: u32,
  chunk: u32,
  seg0: u32,
  part0: u32,
  nseg: u32,
  nparts: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;

// Kahan-compensated accumulator for the three sums; max kept apart.
struct Acc {
  s: vec3<f32>,
  c: vec3<f32>,
  m: f32,
}

fn acc_new() -> Acc {
  return Acc(vec3<f32>(0.0), vec3<f32>(0.0), 0.0);
}

fn acc_add(a: ptr<function, Acc>, v: vec3<f32>, m: f32) {
  let y = v - (*a).c;
  let t = (*a).s + y;
  (*a).c = (t - (*a).s) - y;
  (*a).s = t;
  (*a).m = max((*a).m, m);
}

fn acc_add_x(a: ptr<function, Acc>, v: f32) {
  acc_add(a, vec3<f32>(v, abs(v), v * v), abs(v));
}

var<workgroup> tree: array<vec4<f32>, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn partial_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y;
  let start = wid.x * params.chunk;
  let end = min(start + params.chunk, params.cols);
  var a = acc_new();
  if (row < params.rows) {
    let base = row * params.cols;
    for (var k = start + lid; k < end; k += WG_SIZE) {
      acc_add_x(&a, x[base + k]);
    }
  }
  tree[lid] = vec4<f32>(a.s.x, a.s.y, a.m, a.s.z);
  workgroupBarrier();
  // Pairwise fold of the workgroup's partials.
  for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
    if (lid < half) {
      let p = tree[lid];
      let q = tree[lid + half];
      tree[lid] = vec4<f32>(p.x + q.x, p.y + q.y, max(p.z, q.z), p.w + q.w);
    }
    workgroupBarrier();
  }
  if (lid == 0u && row < params.rows) {
    partials[(params.part0 + wid.x) * params.nseg + params.seg0 + row] = tree[0];
  }
}

@compute @workgroup_size(WG_SIZE)
fn partial_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let col = gid.x;
  if (col >= params.cols) {
    return;
  }
  let r0 = wid.y * params.chunk;
  let r1 = min(r0 + params.chunk, params.rows);
  var a = acc_new();
  for (var r = r0; r < r1; r++) {
    acc_add_x(&a, x[r * params.cols + col]);
  }
  partials[(params.part0 + wid.y) * params.nseg + col] = vec4<f32>(a.s.x, a.s.y, a.m, a.s.z);
}

@compute @workgroup_size(WG_SIZE)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let s = linear_index(wid, nwg, lid, WG_SIZE);
  if (s >= params.nseg) {
    return;
  }
  var a = acc_new();
  if (ACCUMULATE) {
    let o = out[s];
    acc_add(&a, vec3<f32>(o.x, o.y, o.w), o.z);
  }
  for (var p = 0u; p < params.nparts; p++) {
    let v = partials[p * params.nseg + s];
    acc_add(&a, vec3<f32>(v.x, v.y, v.w), v.z);
  }
  out[s] = vec4<f32>(a.s.x, a.s.y, a.m, a.s.z);
}
