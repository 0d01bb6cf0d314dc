// ref/backward.ts — float64 CPU forwards and gradients of the training ops: the reference for
// shaders/train/backward_*.wgsl (src/train/backward.ts). Inputs are any number arrays (f32 data
// from the GPU side, or float64 for finite-difference checks); outputs are Float64Array.
// Each *ForwardRef is the function whose gradient the matching *BackwardRef returns, so the pair
// can be checked against central finite differences.

type Arr = ArrayLike<number>;

/** Rows whose target is this id (or any id >= V) carry no loss. */
export const IGNORE_INDEX_REF = 0xffffffff;

// --- linear: y[T, N] = x[T, K] · W[N, K]ᵀ ------------------------------------------------------

export function linearForwardRef(x: Arr, W: Arr, T: number, N: number, K: number): Float64Array {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * W[n * K + k];
      y[t * N + n] = s;
    }
  }
  return y;
}

/** dx[T, K] = dy · W, dW[N, K] = dyᵀ · x. */
export function linearBackwardRef(x: Arr, W: Arr, dy: Arr, T: number, N: number, K: number): { dx: Float64Array; dW: Float64Array } {
  const dx = new Float64Array(T * K);
  const dW = new Float64Array(N * K);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      const g = dy[t * N + n];
      for (let k = 0; k < K; k++) {
        dx[t * K + k] += g * W[n * K + k];
        dW[n * K + k] += g * x[t * K + k];
      }
    }
  }
  return { dx, dW };
}

// --- RMSNorm: y[t, :] = x[t, :] / sqrt(mean x[t, :]² + eps) * w ----------------------------------

export function rmsnormForwardRef(x: Arr, w: Arr, T: number, H: number, eps: number): Float64Array {
  const y = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let h = 0; h < H; h++) ss += x[t * H + h] ** 2;
    const r = 1 / Math.sqrt(ss / H + eps);
    for (let h = 0; h < H; h++) y[t * H + h] = x[t * H + h] * r * w[h];
  }
  return y;
}

/** dx[t, j] = r w_j dy_j − r³ x_j Σ_i w_i dy_i x_i / H;  dw_j = Σ_t dy_tj x_tj r_t. */
export function rmsnormBackwardRef(x: Arr, w: Arr, dy: Arr, T: number, H: number, eps: number): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(T * H);
  const dw = new Float64Array(H);
  for (let t = 0; t < T; t++) {
    const b = t * H;
    let ss = 0;
    let c = 0;
    for (let h = 0; h < H; h++) {
      ss += x[b + h] ** 2;
      c += w[h] * dy[b + h] * x[b + h];
    }
    const r = 1 / Math.sqrt(ss / H + eps);
    for (let h = 0; h < H; h++) {
      dx[b + h] = r * w[h] * dy[b + h] - (r * r * r * c * x[b + h]) / H;
      dw[h] += dy[b + h] * x[b + h] * r;
    }
  }
  return { dx, dw };
}

// --- RoPE (rotate_half pairs i, i + D/2; angle rounded to f32 as the kernels compute it) ---------

function ropeApply(x: Arr, invFreq: Arr, T: number, nh: number, pos0: number, seq: number, sign: 1 | -1): Float64Array {
  const half = invFreq.length;
  const D = 2 * half;
  const out = Float64Array.from(x);
  for (let t = 0; t < T; t++) {
    const p = seq > 0 ? pos0 + (t % seq) : pos0 + t;
    for (let h = 0; h < nh; h++) {
      const b = (t * nh + h) * D;
      for (let i = 0; i < half; i++) {
        const a = Math.fround(p * invFreq[i]);
        const c = Math.cos(a), s = sign * Math.sin(a);
        const x1 = x[b + i], x2 = x[b + i + half];
        out[b + i] = x1 * c - x2 * s;
        out[b + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

/** x (T, nh, D) rotated for positions pos0 + t (pos0 + t % seq when seq > 0), as nn/rope.ts. */
export function ropeForwardRef(x: Arr, invFreq: Arr, T: number, nh: number, pos0: number, seq = 0): Float64Array {
  return ropeApply(x, invFreq, T, nh, pos0, seq, 1);
}

/** Gradient of x: dy rotated by the negative angle. */
export function ropeBackwardRef(dy: Arr, invFreq: Arr, T: number, nh: number, pos0: number, seq = 0): Float64Array {
  return ropeApply(dy, invFreq, T, nh, pos0, seq, -1);
}

// --- SwiGLU: h = silu(g) * u ---------------------------------------------------------------------

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

export function swigluForwardRef(g: Arr, u: Arr): Float64Array {
  return Float64Array.from({ length: g.length }, (_, i) => g[i] * sigmoid(g[i]) * u[i]);
}

export function swigluBackwardRef(g: Arr, u: Arr, dh: Arr): { dg: Float64Array; du: Float64Array } {
  const dg = new Float64Array(g.length);
  const du = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const s = sigmoid(g[i]);
    dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
    du[i] = dh[i] * g[i] * s;
  }
  return { dg, du };
}

// --- embedding: out[t] = E[ids[t]] ---------------------------------------------------------------

export function embeddingForwardRef(E: Arr, ids: ArrayLike<number>, H: number): Float64Array {
  const out = new Float64Array(ids.length * H);
  for (let t = 0; t < ids.length; t++) for (let h = 0; h < H; h++) out[t * H + h] = E[ids[t] * H + h];
  return out;
}

/** dE[V, H] = Σ_t onehot(ids[t]) dOut[t, :]. */
export function embeddingBackwardRef(ids: ArrayLike<number>, dOut: Arr, V: number, H: number): Float64Array {
  const dE = new Float64Array(V * H);
  for (let t = 0; t < ids.length; t++) for (let h = 0; h < H; h++) dE[ids[t] * H + h] += dOut[t * H + h];
  return dE;
}

// --- cross-entropy over logits[T, V] -------------------------------------------------------------

const scored = (tgt: number, V: number) => tgt !== IGNORE_INDEX_REF && tgt < V;

function logSumExp(l: Arr, base: number, V: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, l[base + v]);
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(l[base + v] - m);
  return m + Math.log(s);
}

/** Sum over scored rows of −log softmax(logits[t])[targets[t]], and the number of scored rows. */
export function crossEntropyForwardRef(logits: Arr, targets: ArrayLike<number>, T: number, V: number): { lossSum: number; count: number } {
  let lossSum = 0;
  let count = 0;
  for (let t = 0; t < T; t++) {
    if (!scored(targets[t], V)) continue;
    lossSum += logSumExp(logits, t * V, V) - logits[t * V + targets[t]];
    count++;
  }
  return { lossSum, count };
}

/**
 * dlogits = (softmax − onehot) · scale on scored rows (0 elsewhere); scale defaults to 1 / count,
 * i.e. the gradient of the mean loss lossSum / count.
 */
export function crossEntropyBackwardRef(
  logits: Arr, targets: ArrayLike<number>, T: number, V: number, scale?: number,
): { dlogits: Float64Array; lossSum: number; count: number } {
  const { lossSum, count } = crossEntropyForwardRef(logits, targets, T, V);
  const s = scale ?? (count > 0 ? 1 / count : 0);
  const dlogits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    if (!scored(targets[t], V)) continue;
    const z = logSumExp(logits, t * V, V);
    for (let v = 0; v < V; v++) dlogits[t * V + v] = (Math.exp(logits[t * V + v] - z) - (v === targets[t] ? 1 : 0)) * s;
  }
  return { dlogits, lossSum, count };
}

// --- MSE -----------------------------------------------------------------------------------------

/** Σ (y − ref)². */
export function mseForwardRef(y: Arr, ref: Arr): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += (y[i] - ref[i]) ** 2;
  return s;
}

/** dy = 2 (y − ref) · scale (default 1 / n: the gradient of the mean), and the sum of squares. */
export function mseBackwardRef(y: Arr, ref: Arr, scale?: number): { dy: Float64Array; lossSum: number } {
  const s = scale ?? 1 / y.length;
  const dy = Float64Array.from({ length: y.length }, (_, i) => 2 * (y[i] - ref[i]) * s);
  return { dy, lossSum: mseForwardRef(y, ref) };
}
