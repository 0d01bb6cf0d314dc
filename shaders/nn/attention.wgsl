// attention.wgsl — causal grouped-query attention over a KV cache, online softmax (no [T x S] matrix)
//
// Query t (absolute position p = pos0 + t) of head h attends cache positions 0 ..= p of KV head
// h / (Hq / Hkv): out = softmax(q · k_j * scale) · v_j, accumulated with a running max and sum.
// Prefill (T tokens) and decode (T = 1) are the same kernel; the host writes the new k, v rows
// into the cache before the dispatch.
// Packed sequences (seq > 0, pos0 = 0): the T rows are T / seq independent sequences of seq
// tokens; query t attends rows floor(t / seq) * seq ..= t only.
//
// Entry:     main — one invocation = one (token, query head)
// Entry:     grouped — one invocation = one (token, KV head) and its GROUP query heads: each key and
//            value row is read once for the whole group (GROUP * HEAD_DIM <= 128)
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64; override HEAD_DIM: u32 (= D, <= 128);
//            override GROUP: u32 = Hq / Hkv (grouped only)
// Grid:      (ceil(T * Hq / WG_SIZE), 1, 1) for main, (ceil(T * Hkv / WG_SIZE), 1, 1) for grouped,
//            folded into (x, y) when large (host: Kernel.grid1d); no workgroup memory, no barriers
// Bindings (group 0):
//   0 q       storage read        array<f32>  [T, Hq, D] row-major (after RoPE)
//   1 kc      storage read        array<f32>  [S, Hkv, D] key cache, positions 0 .. pos0+T-1 filled
//   2 vc      storage read        array<f32>  [S, Hkv, D] value cache
//   3 out     storage read_write  array<f32>  [T, Hq, D] row-major
//   4 params  uniform             Params { T, Hq, Hkv, D (<= 128), pos0, scale (1/sqrt(D)), seq (0 = one sequence) }
// Reference: src/ref/llama.ts attentionRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
// The head dimension as a pipeline constant: loops over it get a fixed trip count, so the
// compiler keeps q and the accumulator in registers (must equal params.D).
override HEAD_DIM: u32 = 64;
override GROUP: u32 = 1;
const MAX_D: u32 = 128u;
const MAX_GROUP: u32 = 16u;

struct Params {
  T: u32,
  Hq: u32,
  Hkv: u32,
  D: u32,
  pos0: u32,
  scale: f32,
  seq: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> kc: array<f32>;
@group(0) @binding(2) var<storage, read> vc: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = linear_index(wid, nwg, lid, WG_SIZE);
  if (idx >= params.T * params.Hq) {
    return;
  }
  let t = idx / params.Hq;
  let h = idx % params.Hq;
  let D = HEAD_DIM;
  let kvh = h / (params.Hq / params.Hkv);
  let qb = idx * D;
  var qv: array<f32, MAX_D>;
  var acc: array<f32, MAX_D>;
  for (var d = 0u; d < D; d++) {
    qv[d] = q[qb + d] * params.scale;
    acc[d] = 0.0;
  }
  var m = -3.0e38;
  var l = 0.0;
  let last = params.pos0 + t;
  var first = 0u;
  if (params.seq > 0u) {
    first = (t / params.seq) * params.seq;
  }
  let stride = params.Hkv * D;
  for (var j = first; j <= last; j++) {
    let kb = j * stride + kvh * D;
    var s = 0.0;
    for (var d = 0u; d < D; d++) {
      s = fma(qv[d], kc[kb + d], s);
    }
    let m_new = max(m, s);
    let corr = exp(m - m_new);
    let p = exp(s - m_new);
    l = l * corr + p;
    for (var d = 0u; d < D; d++) {
      acc[d] = fma(p, vc[kb + d], acc[d] * corr);
    }
    m = m_new;
  }
  let inv = 1.0 / l;
  for (var d = 0u; d < D; d++) {
    out[qb + d] = acc[d] * inv;
  }
}

@compute @workgroup_size(WG_SIZE)
fn grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let idx = linear_index(wid, nwg, lid, WG_SIZE);
  if (idx >= params.T * params.Hkv) {
    return;
  }
  let t = idx / params.Hkv;
  let kvh = idx % params.Hkv;
  let D = HEAD_DIM;
  var qv: array<f32, MAX_D>;
  var acc: array<f32, MAX_D>;
  var kr: array<f32, MAX_D>;
  var m: array<f32, MAX_GROUP>;
  var l: array<f32, MAX_GROUP>;
  for (var g = 0u; g < GROUP; g++) {
    let qb = (t * params.Hq + kvh * GROUP + g) * D;
    for (var d = 0u; d < D; d++) {
      qv[g * D + d] = q[qb + d] * params.scale;
      acc[g * D + d] = 0.0;
    }
    m[g] = -3.0e38;
    l[g] = 0.0;
  }
  let last = params.pos0 + t;
  var first = 0u;
  if (params.seq > 0u) {
    first = (t / params.seq) * params.seq;
  }
  let stride = params.Hkv * D;
  for (var j = first; j <= last; j++) {
    let kb = j * stride + kvh * D;
    for (var d = 0u; d < D; d++) {
      kr[d] = kc[kb + d];
    }
    for (var g = 0u; g < GROUP; g++) {
      var s = 0.0;
      for (var d = 0u; d < D; d++) {
        s = fma(qv[g * D + d], kr[d], s);
      }
      let m_new = max(m[g], s);
      let corr = exp(m[g] - m_new);
      let p = exp(s - m_new);
      l[g] = l[g] * corr + p;
      for (var d = 0u; d < D; d++) {
        acc[g * D + d] = fma(p, vc[kb + d], acc[g * D + d] * corr);
      }
      m[g] = m_new;
    }
  }
  for (var g = 0u; g < GROUP; g++) {
    let ob = (t * params.Hq + kvh * GROUP + g) * D;
    let inv = 1.0 / l[g];
    for (var d = 0u; d < D; d++) {
      out[ob + d] = acc[g * D + d] * inv;
    }
  }
}
