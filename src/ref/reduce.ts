// ref/reduce.ts — CPU reference for shaders/common/reduce.wgsl (src/nn/reduce.ts), in float64.

import type { ReduceAxis } from "../nn/reduce.ts";

export type { ReduceAxis };

/**
 * x (R, C) row-major -> stats (S, 4) as (sum, sum |x|, max |x|, sum x^2) per row (S = R, axis
 * "rows") or per column (S = C, axis "cols"), accumulated in float64.
 */
export function reduceRef(x: ArrayLike<number>, R: number, C: number, axis: ReduceAxis): Float64Array {
  const S = axis === "rows" ? R : C;
  const out = new Float64Array(S * 4);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const v = x[r * C + c];
      const s = (axis === "rows" ? r : c) * 4;
      out[s] += v;
      out[s + 1] += Math.abs(v);
      out[s + 2] = Math.max(out[s + 2], Math.abs(v));
      out[s + 3] += v * v;
    }
  }
  return out;
}
