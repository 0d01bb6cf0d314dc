// finite.wgsl — finiteness check: counts the NaN/±Inf elements of a tensor and records the first
//
// One flag reduction per tensor (window): each workgroup scans a strided range of `per` x WG_SIZE
// words (invocation lid reads words lid, lid + WG_SIZE, …: coalesced), each invocation keeps its
// count, first bad index and kinds in registers, and only an invocation that found something
// touches the result slot: no barriers, no workgroup memory, no atomics while all is finite. A fast
// pass tests one mask per word; only an invocation that saw a bad word rescans its words exactly.
// Bits are tested, not values: WGSL lets a compiler assume floats are finite, so isnan-style
// comparisons could be folded away.
//
// Entry:     main
// Workgroup: @workgroup_size(WG_SIZE), override WG_SIZE: u32 = 256
// Grid:      ceil(words / (WG_SIZE * params.per)) workgroups, folded into (x, y) when over the
//            per-dimension limit (host: Kernel.grid1d); one invocation = `per` 32-bit words (one f32,
//            or two f16/bf16, each)
// Bindings (group 0):
//   0 x       storage read        array<u32>          [words] the raw bits of one binding window
//   1 result  storage read_write  array<atomic<u32>>  [slots, 4] per slot (bad count, first bad index,
//                                                     kinds, 0); the host initialises a slot to
//                                                     (0, 0xffffffff, 0, 0); checks of several windows
//                                                     (or calls) of one slot accumulate
//   2 params  uniform             Params { n (elements in the window), base (index of the window's
//                                          first element in the tensor), slot, per (words per invocation) }
// Override:  DTYPE: u32 = 0 — 0 f32, 1 f16, 2 bf16 (16-bit elements two per word, element 2i in bits 0..15)
// Kinds:     bit 0 NaN, bit 1 +Inf, bit 2 -Inf
// Reference: src/nn/finite.ts firstNonFinite

#include "common/grid.wgsl"

override WG_SIZE: u32 = 256;
override DTYPE: u32 = 0u;

struct Params {
  n: u32,
  base: u32,
  slot: u32,
  per: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> result: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

// Kind bits of one 16-bit element (0 when finite).
fn kind16(h: u32) -> u32 {
  var exp_mask = 0x7c00u; // f16
  var man_mask = 0x03ffu;
  if (DTYPE == 2u) {
    exp_mask = 0x7f80u; // bf16
    man_mask = 0x007fu;
  }
  if ((h & exp_mask) != exp_mask) {
    return 0u;
  }
  if ((h & man_mask) != 0u) {
    return 1u;
  }
  return select(2u, 4u, (h & 0x8000u) != 0u);
}

fn kind32(w: u32) -> u32 {
  if ((w & 0x7f800000u) != 0x7f800000u) {
    return 0u;
  }
  if ((w & 0x007fffffu) != 0u) {
    return 1u;
  }
  return select(2u, 4u, (w & 0x80000000u) != 0u);
}

// Whether word w holds a non-finite element (the high half of a 16-bit pair may be past n: the
// exact pass below decides).
fn any_bad(w: u32) -> bool {
  if (DTYPE == 0u) {
    return (w & 0x7f800000u) == 0x7f800000u;
  }
  let m = select(0x7c007c00u, 0x7f807f80u, DTYPE == 2u);
  let e = w & m;
  return ((e & 0xffffu) == (m & 0xffffu)) | ((e >> 16u) == (m >> 16u));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let words = select((params.n + 1u) / 2u, params.n, DTYPE == 0u);
  let start = workgroup_index(wid, nwg) * WG_SIZE * params.per + lid;
  let end = min(start + params.per * WG_SIZE, words);
  // Fast pass: one mask and compare per word.
  var any = false;
  for (var word = start; word < end; word += WG_SIZE) {
    any = any | any_bad(x[word]);
  }
  if (!any) {
    return;
  }
  // Exact pass over the same words (rare): count, first index and kinds.
  var count = 0u;
  var first = 0xffffffffu; // words are visited in increasing order: the first found is the least
  var kinds = 0u;
  for (var word = start; word < end; word += WG_SIZE) {
    let w = x[word];
    if (DTYPE == 0u) {
      let k = kind32(w);
      if (k != 0u) {
        count += 1u;
        first = min(first, word);
        kinds |= k;
      }
    } else {
      let i = 2u * word;
      let k0 = kind16(w & 0xffffu);
      var k1 = 0u;
      if (i + 1u < params.n) {
        k1 = kind16(w >> 16u);
      }
      if ((k0 | k1) != 0u) {
        count += select(0u, 1u, k0 != 0u) + select(0u, 1u, k1 != 0u);
        first = min(first, select(i + 1u, i, k0 != 0u));
        kinds |= k0 | k1;
      }
    }
  }
  if (count != 0u) {
    let s = params.slot * 4u;
    atomicAdd(&result[s], count);
    atomicMin(&result[s + 1u], params.base + first);
    atomicOr(&result[s + 2u], kinds);
  }
}
