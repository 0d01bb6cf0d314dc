// attention_bwd.wgsl — causal grouped-query attention backward (flash-attention style, scores recomputed)
//
// Forward (as nn/attention.wgsl with pos0 = 0): query t of head h attends keys j = first(t) ..= t of
// KV head h / (Hq / Hkv), first(t) = floor(t / seq) * seq for packed sequences (seq > 0), else 0;
// s_tj = scale * q_t·k_j, lse_t = log Σ_j exp(s_tj), p_tj = exp(s_tj − lse_t), out_t = Σ_j p_tj v_j.
// Backward given dout: delta_t = dout_t·out_t, dp_tj = dout_t·v_j, ds_tj = p_tj (dp_tj − delta_t),
//   dq_t = scale Σ_j ds_tj k_j,  dk_j = scale Σ_(t,h) ds_tj q_t,  dv_j = Σ_(t,h) p_tj dout_t,
// where (t, h) runs over the queries attending j and the query heads sharing j's KV head. No [T x T]
// matrix is stored: only lse and delta per (token, query head). dk and dv are owned by one invocation
// per (key, KV head) that loops over its queries in a fixed order: no atomics, bit-for-bit
// deterministic.
//
// Entry:     forward_stats — one invocation = one (token, query head): out and lse (online softmax)
// Entry:     stats — one invocation = one (token, query head): delta = dout·out; lse recomputed from
//            q, k when params.recompute = 1 (otherwise lse holds what forward_stats wrote)
// Entry:     bwd_dq — one invocation = one (token, query head): dq
// Entry:     bwd_dkv — one invocation = one (key position, KV head): dk and dv
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 64; override HEAD_DIM: u32 (= D, <= 128)
// Grid:      ceil(T * Hq / WG_SIZE) workgroups (forward_stats, stats, bwd_dq) or ceil(T * Hkv / WG_SIZE)
//            (bwd_dkv), folded into (x, y) when large (host: Kernel.grid1d); no workgroup memory, no barriers
// Bindings (group 0):
//   0 q       storage read        array<f32>  [T, Hq, D] row-major (after RoPE)
//   1 k       storage read        array<f32>  [T, Hkv, D]
//   2 v       storage read        array<f32>  [T, Hkv, D]
//   3 out     storage read_write  array<f32>  [T, Hq, D] forward output (written by forward_stats, read by stats)
//   4 dout    storage read        array<f32>  [T, Hq, D] gradient of the loss with respect to out
//   5 lse     storage read_write  array<f32>  [T, Hq] log-sum-exp of the scaled scores of each query
//   6 delta   storage read_write  array<f32>  [T, Hq] dout·out of each query
//   7 dq      storage read_write  array<f32>  [T, Hq, D]
//   8 dk      storage read_write  array<f32>  [T, Hkv, D]
//   9 dv      storage read_write  array<f32>  [T, Hkv, D]
//   10 params uniform             Params { T, Hq, Hkv, D (<= 128), scale (1/sqrt(D)), seq (0 = one
//                                          sequence), recompute (stats: 1 = recompute lse) }
// Reference: src/ref/train.ts attentionForwardRef64, attentionBackwardRef

#include "common/grid.wgsl"

override WG_SIZE: u32 = 64;
// Fixed trip count for loops over the head dimension (keeps rows in registers); must equal params.D.
override HEAD_DIM: u32 = 64;
const MAX_D: u32 = 128u;

struct Params {
  T: u32,
  Hq: u32,
  Hkv: u32,
  D: u32,
  scale: f32,
  seq: u32,
  recompute: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(8) var<storage, read_write> dk: array<f32>;
@group(0) @binding(9) var<storage, read_write> dv: array<f32>;
@group(0) @binding(10) var<uniform> params: Params;

// First key position query t attends.
fn first_key(t: u32) -> u32 {
  if (params.seq > 0u) {
    return (t / params.seq) * params.seq;
  }
  return 0u;
}

// One past the last query position that attends key j.
fn end_query(j: u32) -> u32 {
  if (params.seq > 0u) {
    return (j / params.seq + 1u) * params.seq;
  }
  return params.T;
}

@compute @workgroup_size(WG_SIZE)
fn forward_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let row = linear_index(wid, nwg, lid, WG_SIZE);
  if (row >= params.T * params.Hq) {
    return;
  }
  let t = row / params.Hq;
  let h = row % params.Hq;
  let D = HEAD_DIM;
  let kvh = h / (params.Hq / params.Hkv);
  let qb = row * D;
  var qv: array<f32, MAX_D>;
  var acc: array<f32, MAX_D>;
  for (var d = 0u; d < D; d++) {
    qv[d] = q[qb + d] * params.scale;
    acc[d] = 0.0;
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var j = first_key(t); j <= t; j++) {
    let kb = (j * params.Hkv + kvh) * D;
    var s = 0.0;
    for (var d = 0u; d < D; d++) {
      s = fma(qv[d], k[kb + d], s);
    }
    let m_new = max(m, s);
    let corr = exp(m - m_new);
    let p = exp(s - m_new);
    l = l * corr + p;
    for (var d = 0u; d < D; d++) {
      acc[d] = fma(p, v[kb + d], acc[d] * corr);
    }
    m = m_new;
  }
  let inv = 1.0 / l;
  for (var d = 0u; d < D; d++) {
    out[qb + d] = acc[d] * inv;
  }
  lse[row] = m + log(l);
}

@compute @workgroup_size(WG_SIZE)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let row = linear_index(wid, nwg, lid, WG_SIZE);
  if (row >= params.T * params.Hq) {
    return;
  }
  let D = HEAD_DIM;
  let qb = row * D;
  var dl = 0.0;
  for (var d = 0u; d < D; d++) {
    dl = fma(dout[qb + d], out[qb + d], dl);
  }
  delta[row] = dl;
  if (params.recompute == 0u) {
    return;
  }
  let t = row / params.Hq;
  let h = row % params.Hq;
  let kvh = h / (params.Hq / params.Hkv);
  var qv: array<f32, MAX_D>;
  for (var d = 0u; d < D; d++) {
    qv[d] = q[qb + d] * params.scale;
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var j = first_key(t); j <= t; j++) {
    let kb = (j * params.Hkv + kvh) * D;
    var s = 0.0;
    for (var d = 0u; d < D; d++) {
      s = fma(qv[d], k[kb + d], s);
    }
    let m_new = max(m, s);
    l = l * exp(m - m_new) + exp(s - m_new);
    m = m_new;
  }
  lse[row] = m + log(l);
}

@compute @workgroup_size(WG_SIZE)
fn bwd_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let row = linear_index(wid, nwg, lid, WG_SIZE);
  if (row >= params.T * params.Hq) {
    return;
  }
  let t = row / params.Hq;
  let h = row % params.Hq;
  let D = HEAD_DIM;
  let kvh = h / (params.Hq / params.Hkv);
  let qb = row * D;
  var qv: array<f32, MAX_D>;
  var ov: array<f32, MAX_D>;
  var kr: array<f32, MAX_D>;
  var acc: array<f32, MAX_D>;
  for (var d = 0u; d < D; d++) {
    qv[d] = q[qb + d] * params.scale;
    ov[d] = dout[qb + d];
    acc[d] = 0.0;
  }
  let L = lse[row];
  let dl = delta[row];
  for (var j = first_key(t); j <= t; j++) {
    let kb = (j * params.Hkv + kvh) * D;
    var s = 0.0;
    var dp = 0.0;
    for (var d = 0u; d < D; d++) {
      let kd = k[kb + d];
      kr[d] = kd;
      s = fma(qv[d], kd, s);
      dp = fma(ov[d], v[kb + d], dp);
    }
    let ds = exp(s - L) * (dp - dl);
    for (var d = 0u; d < D; d++) {
      acc[d] = fma(ds, kr[d], acc[d]);
    }
  }
  for (var d = 0u; d < D; d++) {
    dq[qb + d] = acc[d] * params.scale;
  }
}

@compute @workgroup_size(WG_SIZE)
fn bwd_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let idx = linear_index(wid, nwg, lid, WG_SIZE);
  if (idx >= params.T * params.Hkv) {
    return;
  }
  let j = idx / params.Hkv;
  let kvh = idx % params.Hkv;
  let D = HEAD_DIM;
  let group = params.Hq / params.Hkv;
  let kb = idx * D;
  var kr: array<f32, MAX_D>;
  var vr: array<f32, MAX_D>;
  var qv: array<f32, MAX_D>;
  var ov: array<f32, MAX_D>;
  var dka: array<f32, MAX_D>;
  var dva: array<f32, MAX_D>;
  for (var d = 0u; d < D; d++) {
    kr[d] = k[kb + d] * params.scale;
    vr[d] = v[kb + d];
    dka[d] = 0.0;
    dva[d] = 0.0;
  }
  let end = end_query(j);
  for (var t = j; t < end; t++) {
    for (var g = 0u; g < group; g++) {
      let row = t * params.Hq + kvh * group + g;
      let qb = row * D;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < D; d++) {
        let qd = q[qb + d];
        let od = dout[qb + d];
        qv[d] = qd;
        ov[d] = od;
        s = fma(qd, kr[d], s);
        dp = fma(od, vr[d], dp);
      }
      let p = exp(s - lse[row]);
      let ds = p * (dp - delta[row]);
      for (var d = 0u; d < D; d++) {
        dva[d] = fma(p, ov[d], dva[d]);
        dka[d] = fma(ds, qv[d], dka[d]);
      }
    }
  }
  for (var d = 0u; d < D; d++) {
    dk[kb + d] = dka[d] * params.scale;
    dv[kb + d] = dva[d];
  }
}
