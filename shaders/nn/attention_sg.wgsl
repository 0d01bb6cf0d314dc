// attention_sg.wgsl — causal grouped-query attention, the shape for CPU-SIMD adapters (lavapipe):
// same contract and parameters as attention.wgsl (packed sequences, KV cache, online softmax), but
// one subgroup of 8 invocations serves 8 consecutive query tokens of one KV head and its GROUP
// query heads. Keys and values are read cooperatively, 8 rows at a time: invocation l loads row
// jb + l and the others take it with subgroupShuffle, so each K/V word is loaded once per
// subgroup instead of once per invocation. The softmax is updated once per block of 8 keys.
//
// Entry:     main — one workgroup = one subgroup = 8 query tokens x 1 KV head
// Workgroup: @workgroup_size(8); override HEAD_DIM: u32 (= D, multiple of 4), GROUP: u32 = Hq / Hkv,
//            GROUP * HEAD_DIM <= 128; needs `subgroups` with a subgroup size >= 8
// Grid:      (ceil(T / 8) * Hkv workgroups, folded into (x, y) when large: host Kernel.grid1d)
// Bindings (group 0):
//   0 q       storage read        array<vec4<f32>>  [T, Hq, D] row-major (after RoPE)
//   1 kc      storage read        array<vec4<f32>>  [S, Hkv, D] key cache, positions 0 .. pos0+T-1 filled
//   2 vc      storage read        array<vec4<f32>>  [S, Hkv, D] value cache
//   3 out     storage read_write  array<vec4<f32>>  [T, Hq, D] row-major
//   4 params  uniform             Params { T, Hq, Hkv, D, pos0, scale (1/sqrt(D)), seq (0 = one sequence) }
// Ragged T (not a multiple of 8): the spare invocations compute on clamped rows and store nothing.
// Reference: src/ref/llama.ts attentionRef

enable subgroups;

#include "common/grid.wgsl"

override HEAD_DIM: u32 = 64;
override GROUP: u32 = 1;
const SG: u32 = 8u;
const MAX_W: u32 = 32u; // GROUP * HEAD_DIM / 4 vec4 words per invocation, at most

struct Params {
  T: u32,
  Hq: u32,
  Hkv: u32,
  D: u32,
  pos0: u32,
  scale: f32,
  seq: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kc: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let wg = workgroup_index(wid, nwg);
  let tiles = (params.T + SG - 1u) / SG;
  if (wg >= tiles * params.Hkv) {
    return; // whole workgroup: uniform
  }
  let kvh = wg % params.Hkv;
  let t0 = (wg / params.Hkv) * SG;
  let t = min(t0 + lane, params.T - 1u);
  let D4 = HEAD_DIM / 4u;
  var qv: array<vec4<f32>, MAX_W>;
  var acc: array<vec4<f32>, MAX_W>;
  var m: array<f32, 32>;
  var l: array<f32, 32>;
  for (var g = 0u; g < GROUP; g++) {
    let qb = (t * params.Hq + kvh * GROUP + g) * D4;
    for (var d = 0u; d < D4; d++) {
      qv[g * D4 + d] = q[qb + d] * params.scale;
      acc[g * D4 + d] = vec4<f32>(0.0);
    }
    m[g] = -3.0e38;
    l[g] = 0.0;
  }
  // keys this invocation may see: first ..= last; the subgroup walks the union jlo ..= jhi
  var first = 0u;
  var jlo = 0u;
  if (params.seq > 0u) {
    first = (t / params.seq) * params.seq;
    jlo = (t0 / params.seq) * params.seq;
  }
  let last = params.pos0 + t;
  let jhi = params.pos0 + min(t0 + SG - 1u, params.T - 1u);
  let stride = params.Hkv * D4;
  var kr: array<vec4<f32>, 32>;
  var vr: array<vec4<f32>, 32>;
  var s: array<f32, 256>;
  for (var jb = jlo; jb <= jhi; jb += SG) {
    let row = min(jb + lane, jhi) * stride + kvh * D4;
    for (var d = 0u; d < D4; d++) {
      kr[d] = kc[row + d];
      vr[d] = vc[row + d];
    }
    // scores of the block's 8 keys for every query head of the group, and their max
    var mb: array<f32, 32>;
    for (var g = 0u; g < GROUP; g++) {
      mb[g] = m[g];
    }
    for (var jj = 0u; jj < SG; jj++) {
      let j = jb + jj;
      let ok = j >= first && j <= last;
      var kj: array<vec4<f32>, 32>;
      for (var d = 0u; d < D4; d++) {
        kj[d] = subgroupShuffle(kr[d], jj);
      }
      for (var g = 0u; g < GROUP; g++) {
        var dot4 = vec4<f32>(0.0);
        for (var d = 0u; d < D4; d++) {
          dot4 = fma(qv[g * D4 + d], kj[d], dot4);
        }
        let sc = dot4.x + dot4.y + dot4.z + dot4.w;
        s[jj * GROUP + g] = select(-3.0e38, sc, ok);
        mb[g] = select(mb[g], max(mb[g], sc), ok);
      }
    }
    for (var g = 0u; g < GROUP; g++) {
      let corr = exp(m[g] - mb[g]);
      l[g] *= corr;
      for (var d = 0u; d < D4; d++) {
        acc[g * D4 + d] *= corr;
      }
      m[g] = mb[g];
    }
    for (var jj = 0u; jj < SG; jj++) {
      var vj: array<vec4<f32>, 32>;
      for (var d = 0u; d < D4; d++) {
        vj[d] = subgroupShuffle(vr[d], jj);
      }
      // Keys outside [first, last] are skipped, not weighted by 0: 0 * NaN would carry a NaN of a later
      // position (or of another packed sequence) into this row.
      let ok = jb + jj >= first && jb + jj <= last;
      if (ok) {
        for (var g = 0u; g < GROUP; g++) {
          let p = exp(s[jj * GROUP + g] - m[g]);
          l[g] += p;
          for (var d = 0u; d < D4; d++) {
            acc[g * D4 + d] = fma(vec4<f32>(p), vj[d], acc[g * D4 + d]);
          }
        }
      }
    }
  }
  if (t0 + lane < params.T) {
    for (var g = 0u; g < GROUP; g++) {
      let ob = (t * params.Hq + kvh * GROUP + g) * D4;
      let inv = 1.0 / l[g];
      for (var d = 0u; d < D4; d++) {
        out[ob + d] = acc[g * D4 + d] * inv;
      }
    }
  }
}
