// matmul_wt.wgsl — y[M, N] = x[M, K] · Wt[K, N], the weight stored transposed (Wt = Wᵀ), f32
// throughout; the GEMM shape for CPU-SIMD adapters (lavapipe), where every per-invocation storage
// load costs about as much as a SIMD-width of arithmetic and a workgroup barrier more still.
//
// One workgroup = one subgroup of SG = 8 invocations (needs `subgroups` with a subgroup size >= 8).
// Invocation l owns 4 neighbouring output columns (one vec4 of Wt per k: the subgroup's loads are
// one contiguous 128-byte run) for TM rows of x. The rows of x are read cooperatively: in each step
// of 8 vec4 words along K, invocation l loads word l of every row and the others take it with
// subgroupShuffle, so no invocation loads an x word another one also loads.
//
// Entry:     main
// Override:  SWIGLU: bool = false — y = silu(x · Wt) * (x · Wu) instead (Llama MLP gate and up in one
//            pass: each shuffled x word feeds both weights; wu is up_proj transposed, [K, N]; without
//            SWIGLU wu is not read, bind any tensor)
// Workgroup: @workgroup_size(8); override TM: u32 = 16 rows of x per workgroup (<= 16; the host
//            uses 16, and 12 with SWIGLU, past which lavapipe spills its two register tiles)
// Grid:      (ceil(N / 32), ceil(M / TM), 1) — one invocation = a TM x 4 register tile (two with SWIGLU)
// Bindings (group 0):
//   0 x       storage read        array<vec4<f32>>  [M, K / 4] row-major
//   1 wt      storage read        array<vec4<f32>>  [K, N / 4] row-major (W transposed)
//   2 y       storage read_write  array<vec4<f32>>  [M, N / 4] row-major
//   3 params  uniform             Params { M, N, K } (elements; N and K multiples of 4)
//   4 wu      storage read        array<vec4<f32>>  [K, N / 4] second weight, transposed (SWIGLU)
// Ragged M, N / 4, K / 4 (not multiples of TM, 8, 8): edge tiles clamp their loads, zero the x
// words past K and skip their stores.
// Reference: src/ref/matmul.ts matmulRef (with W = Wtᵀ)

enable subgroups;

override TM: u32 = 16;
override SWIGLU: bool = false;
const SG: u32 = 8u;
const MAX_TM: u32 = 16u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read> wu: array<vec4<f32>>;

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let M = params.M;
  let N4 = params.N / 4u;
  let K4 = params.K / 4u;
  let mb = wid.y * TM;
  let col = wid.x * SG + lane;
  let n = min(col, N4 - 1u);
  var xrow: array<u32, MAX_TM>;
  var acc: array<vec4<f32>, MAX_TM>;
  var acu: array<vec4<f32>, MAX_TM>; // SWIGLU: the up projection's tile
  for (var i = 0u; i < TM; i++) {
    xrow[i] = min(mb + i, M - 1u) * K4;
    acc[i] = vec4<f32>(0.0);
    acu[i] = vec4<f32>(0.0);
  }
  var xv: array<vec4<f32>, MAX_TM>;
  for (var kb = 0u; kb < K4; kb += SG) {
    // this invocation's x word of each row: word kb + lane (zero past the end of K)
    let kl = min(kb + lane, K4 - 1u);
    let inside = kb + lane < K4;
    for (var i = 0u; i < TM; i++) {
      xv[i] = select(vec4<f32>(0.0), x[xrow[i] + kl], inside);
    }
    for (var j = 0u; j < SG; j++) {
      let k = 4u * min(kb + j, K4 - 1u);
      let w0 = wt[k * N4 + n];
      let w1 = wt[(k + 1u) * N4 + n];
      let w2 = wt[(k + 2u) * N4 + n];
      let w3 = wt[(k + 3u) * N4 + n];
      if (SWIGLU) {
        let u0 = wu[k * N4 + n];
        let u1 = wu[(k + 1u) * N4 + n];
        let u2 = wu[(k + 2u) * N4 + n];
        let u3 = wu[(k + 3u) * N4 + n];
        for (var i = 0u; i < TM; i++) {
          let b = subgroupShuffle(xv[i], j);
          acc[i] = fma(vec4<f32>(b.x), w0, fma(vec4<f32>(b.y), w1, fma(vec4<f32>(b.z), w2, fma(vec4<f32>(b.w), w3, acc[i]))));
          acu[i] = fma(vec4<f32>(b.x), u0, fma(vec4<f32>(b.y), u1, fma(vec4<f32>(b.z), u2, fma(vec4<f32>(b.w), u3, acu[i]))));
        }
      } else {
        for (var i = 0u; i < TM; i++) {
          let b = subgroupShuffle(xv[i], j);
          acc[i] = fma(vec4<f32>(b.x), w0, fma(vec4<f32>(b.y), w1, fma(vec4<f32>(b.z), w2, fma(vec4<f32>(b.w), w3, acc[i]))));
        }
      }
    }
  }
  if (col < N4) {
    for (var i = 0u; i < TM; i++) {
      if (mb + i < M) {
        var v = acc[i];
        if (SWIGLU) {
          v = v / (vec4<f32>(1.0) + exp(-v)) * acu[i];
        }
        y[(mb + i) * N4 + col] = v;
      }
    }
  }
}
