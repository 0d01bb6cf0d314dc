// ref/matmul.ts — CPU reference for shaders/nn/matmul.wgsl, in float64.

/** x (M, K) · W (N, K)^T -> y (M, N), float64 accumulation. Only rows listed in `rows` (default all) are computed. */
export function matmulRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  rows: readonly number[] = Array.from({ length: M }, (_, i) => i),
): Float64Array {
  const y = new Float64Array(M * N);
  for (const m of rows) {
    const xo = m * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[xo + k] * w[wo + k];
      y[m * N + n] = acc;
    }
  }
  return y;
}
