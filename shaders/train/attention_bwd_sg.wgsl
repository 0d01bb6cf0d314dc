// attention_bwd_sg.wgsl — causal GQA attention backward in the shape for CPU-SIMD adapters
// (lavapipe): same maths, layouts and parameters as attention_bwd.wgsl, but one subgroup of 8
// invocations serves 8 consecutive positions of one KV head (and its GROUP query heads), and the rows
// it walks over (keys for stats_sg and dq_sg, queries for dkv_sg) are loaded 8 at a time, one per
// invocation, and shared with subgroupShuffle instead of being loaded by every invocation.
//
// Entry:     stats_sg — 8 queries x 1 KV head: delta = dout·out, and lse recomputed from q, k
// Entry:     dq_sg — 8 queries x 1 KV head: dq = scale Σ_j p_tj (dp_tj − delta_t) k_j
// Entry:     dkv_sg — 8 keys x 1 KV head: dk = scale Σ_(t,h) ds_tj q_t, dv = Σ_(t,h) p_tj dout_t, summed
//            in a fixed order (no atomics, deterministic)
// Workgroup: @workgroup_size(8); override HEAD_DIM: u32 (= D, a multiple of 4), GROUP: u32 = Hq / Hkv,
//            GROUP * HEAD_DIM <= 128; needs `subgroups` with a subgroup size >= 8
// Grid:      ceil(T / 8) * Hkv workgroups, folded into (x, y) when large (host: Kernel.grid1d)
// Bindings (group 0):
//   0 q       storage read        array<vec4<f32>>  [T, Hq, D] (after RoPE)
//   1 k       storage read        array<vec4<f32>>  [T, Hkv, D]
//   2 v       storage read        array<vec4<f32>>  [T, Hkv, D]
//   3 out     storage read        array<vec4<f32>>  [T, Hq, D] forward output (stats_sg)
//   4 dout    storage read        array<vec4<f32>>  [T, Hq, D]
//   5 lse     storage read_write  array<f32>        [T, Hq] written by stats_sg, read by dq_sg and dkv_sg
//   6 delta   storage read_write  array<f32>        [T, Hq] written by stats_sg
//   7 dq      storage read_write  array<vec4<f32>>  [T, Hq, D]
//   8 dk      storage read_write  array<vec4<f32>>  [T, Hkv, D]
//   9 dv      storage read_write  array<vec4<f32>>  [T, Hkv, D]
//   10 params uniform             Params { T, Hq, Hkv, D, scale (1/sqrt(D)), seq (0 = one sequence), recompute }
// Ragged T: spare invocations work on clamped rows and store nothing.
// Reference: src/ref/train.ts attentionBackwardRef

enable subgroups;

#include "common/grid.wgsl"

override HEAD_DIM: u32 = 64;
override GROUP: u32 = 1;
const SG: u32 = 8u;
const MAX_W: u32 = 32u;
const MAX_G: u32 = 32u;

struct Params {
  T: u32,
  Hq: u32,
  Hkv: u32,
  D: u32,
  scale: f32,
  seq: u32,
  recompute: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> dv: array<vec4<f32>>;
@group(0) @binding(10) var<uniform> params: Params;

fn first_key(t: u32) -> u32 {
  if (params.seq > 0u) {
    return (t / params.seq) * params.seq;
  }
  return 0u;
}

fn end_query(j: u32) -> u32 {
  if (params.seq > 0u) {
    return min((j / params.seq + 1u) * params.seq, params.T);
  }
  return params.T;
}

fn dot4(a: vec4<f32>, b: vec4<f32>) -> f32 {
  let p = a * b;
  return p.x + p.y + p.z + p.w;
}

@compute @workgroup_size(8, 1, 1)
fn stats_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lane: u32) {
  let wg = workgroup_index(wid, nwg);
  if (wg >= ((params.T + SG - 1u) / SG) * params.Hkv) {
    return;
  }
  let kvh = wg % params.Hkv;
  let t0 = (wg / params.Hkv) * SG;
  let t = min(t0 + lane, params.T - 1u);
  let D4 = HEAD_DIM / 4u;
  var qv: array<vec4<f32>, MAX_W>;
  var m: array<f32, MAX_G>;
  var l: array<f32, MAX_G>;
  var dl: array<f32, MAX_G>;
  for (var g = 0u; g < GROUP; g++) {
    let rb = (t * params.Hq + kvh * GROUP + g) * D4;
    var d0 = 0.0;
    for (var d = 0u; d < D4; d++) {
      qv[g * D4 + d] = q[rb + d] * params.scale;
      d0 += dot4(dout[rb + d], out[rb + d]);
    }
    dl[g] = d0;
    m[g] = -3.0e38;
    l[g] = 0.0;
  }
  let first = first_key(t);
  let jhi = min(t0 + SG - 1u, params.T - 1u);
  var kr: array<vec4<f32>, MAX_W>;
  for (var jb = first_key(t0); jb <= jhi; jb += SG) {
    let row = (min(jb + lane, jhi) * params.Hkv + kvh) * D4;
    for (var d = 0u; d < D4; d++) {
      kr[d] = k[row + d];
    }
    for (var jj = 0u; jj < SG; jj++) {
      let j = jb + jj;
      let ok = j >= first && j <= t;
      var kj: array<vec4<f32>, MAX_W>;
      for (var d = 0u; d < D4; d++) {
        kj[d] = subgroupShuffle(kr[d], jj);
      }
      for (var g = 0u; g < GROUP; g++) {
        var s = 0.0;
        for (var d = 0u; d < D4; d++) {
          s += dot4(qv[g * D4 + d], kj[d]);
        }
        let mn = select(m[g], max(m[g], s), ok);
        l[g] = l[g] * exp(m[g] - mn) + select(0.0, exp(s - mn), ok);
        m[g] = mn;
      }
    }
  }
  if (t0 + lane < params.T) {
    for (var g = 0u; g < GROUP; g++) {
      let r = t * params.Hq + kvh * GROUP + g;
      delta[r] = dl[g];
      if (params.recompute == 1u) {
        lse[r] = m[g] + log(l[g]);
      }
    }
  }
}

@compute @workgroup_size(8, 1, 1)
fn dq_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lane: u32) {
  let wg = workgroup_index(wid, nwg);
  if (wg >= ((params.T + SG - 1u) / SG) * params.Hkv) {
    return;
  }
  let kvh = wg % params.Hkv;
  let t0 = (wg / params.Hkv) * SG;
  let t = min(t0 + lane, params.T - 1u);
  let D4 = HEAD_DIM / 4u;
  var qv: array<vec4<f32>, MAX_W>;
  var ov: array<vec4<f32>, MAX_W>;
  var acc: array<vec4<f32>, MAX_W>;
  var L: array<f32, MAX_G>;
  var dl: array<f32, MAX_G>;
  for (var g = 0u; g < GROUP; g++) {
    let r = t * params.Hq + kvh * GROUP + g;
    for (var d = 0u; d < D4; d++) {
      qv[g * D4 + d] = q[r * D4 + d] * params.scale;
      ov[g * D4 + d] = dout[r * D4 + d];
      acc[g * D4 + d] = vec4<f32>(0.0);
    }
    L[g] = lse[r];
    dl[g] = delta[r];
  }
  let first = first_key(t);
  let jhi = min(t0 + SG - 1u, params.T - 1u);
  var kr: array<vec4<f32>, MAX_W>;
  var vr: array<vec4<f32>, MAX_W>;
  for (var jb = first_key(t0); jb <= jhi; jb += SG) {
    let row = (min(jb + lane, jhi) * params.Hkv + kvh) * D4;
    for (var d = 0u; d < D4; d++) {
      kr[d] = k[row + d];
      vr[d] = v[row + d];
    }
    for (var jj = 0u; jj < SG; jj++) {
      let j = jb + jj;
      let ok = j >= first && j <= t;
      var kj: array<vec4<f32>, MAX_W>;
      var vj: array<vec4<f32>, MAX_W>;
      for (var d = 0u; d < D4; d++) {
        kj[d] = subgroupShuffle(kr[d], jj);
        vj[d] = subgroupShuffle(vr[d], jj);
      }
      for (var g = 0u; g < GROUP; g++) {
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D4; d++) {
          s += dot4(qv[g * D4 + d], kj[d]);
          dp += dot4(ov[g * D4 + d], vj[d]);
        }
        let ds = select(0.0, exp(s - L[g]) * (dp - dl[g]), ok);
        for (var d = 0u; d < D4; d++) {
          acc[g * D4 + d] += ds * kj[d];
        }
      }
    }
  }
  if (t0 + lane < params.T) {
    for (var g = 0u; g < GROUP; g++) {
      let r = t * params.Hq + kvh * GROUP + g;
      for (var d = 0u; d < D4; d++) {
        dq[r * D4 + d] = acc[g * D4 + d] * params.scale;
      }
    }
  }
}

@compute @workgroup_size(8, 1, 1)
fn dkv_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lane: u32) {
  let wg = workgroup_index(wid, nwg);
  if (wg >= ((params.T + SG - 1u) / SG) * params.Hkv) {
    return;
  }
  let kvh = wg % params.Hkv;
  let j0 = (wg / params.Hkv) * SG;
  let j = min(j0 + lane, params.T - 1u);
  let D4 = HEAD_DIM / 4u;
  var kr: array<vec4<f32>, MAX_W>;
  var vr: array<vec4<f32>, MAX_W>;
  var dka: array<vec4<f32>, MAX_W>;
  var dva: array<vec4<f32>, MAX_W>;
  let kb = (j * params.Hkv + kvh) * D4;
  for (var d = 0u; d < D4; d++) {
    kr[d] = k[kb + d] * params.scale;
    vr[d] = v[kb + d];
    dka[d] = vec4<f32>(0.0);
    dva[d] = vec4<f32>(0.0);
  }
  let tend = end_query(j);
  let jmax = min(j0 + SG - 1u, params.T - 1u);
  let thi = end_query(jmax) - 1u; // last query any of these keys sees
  var qv: array<vec4<f32>, MAX_W>;
  var ov: array<vec4<f32>, MAX_W>;
  var L: array<f32, MAX_G>;
  var dl: array<f32, MAX_G>;
  for (var tb = j0; tb <= thi; tb += SG) {
    let tq = min(tb + lane, thi);
    for (var g = 0u; g < GROUP; g++) {
      let r = tq * params.Hq + kvh * GROUP + g;
      for (var d = 0u; d < D4; d++) {
        qv[g * D4 + d] = q[r * D4 + d];
        ov[g * D4 + d] = dout[r * D4 + d];
      }
      L[g] = lse[r];
      dl[g] = delta[r];
    }
    for (var tt = 0u; tt < SG; tt++) {
      let t = tb + tt;
      let ok = t >= j && t < tend && t <= thi;
      for (var g = 0u; g < GROUP; g++) {
        var s = 0.0;
        var dp = 0.0;
        var qt: array<vec4<f32>, MAX_W>;
        var ot: array<vec4<f32>, MAX_W>;
        for (var d = 0u; d < D4; d++) {
          qt[d] = subgroupShuffle(qv[g * D4 + d], tt);
          ot[d] = subgroupShuffle(ov[g * D4 + d], tt);
          s += dot4(qt[d], kr[d]);
          dp += dot4(ot[d], vr[d]);
        }
        let Lt = subgroupShuffle(L[g], tt);
        let dlt = subgroupShuffle(dl[g], tt);
        let p = select(0.0, exp(s - Lt), ok);
        let ds = p * (dp - dlt);
        for (var d = 0u; d < D4; d++) {
          dva[d] += p * ot[d];
          dka[d] += ds * qt[d];
        }
      }
    }
  }
  if (j0 + lane < params.T) {
    for (var d = 0u; d < D4; d++) {
      dk[kb + d] = dka[d] * params.scale;
      dv[kb + d] = dva[d];
    }
  }
}
