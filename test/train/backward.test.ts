// Backward kernels (src/train/backward.ts): (a) GPU gradients vs the float64 CPU references on
// ragged shapes, (b) the CPU reference gradients vs central finite differences of the float64
// forwards on tiny shapes.
import { describe, expect, it } from "vitest";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { rope } from "../../src/nn/rope.ts";
import {
  crossEntropyBackwardRef, crossEntropyForwardRef, embeddingBackwardRef, embeddingForwardRef, IGNORE_INDEX_REF,
  linearBackwardRef, linearForwardRef, mseBackwardRef, mseForwardRef, rmsnormBackwardRef, rmsnormForwardRef,
  ropeBackwardRef, ropeForwardRef, swigluBackwardRef, swigluForwardRef,
} from "../../src/ref/backward.ts";
import {
  crossEntropyBackward, embeddingBackward, embeddingCsr, IGNORE_INDEX, linearBackward, mseBackward, rmsnormBackward,
  ropeBackward, swigluBackward,
} from "../../src/train/backward.ts";
import { gpuContext, randomF32, relError, rng } from "../helpers/gpu.ts";

// --- finite differences (float64) ---------------------------------------------------------------

/** Central-difference gradient of f at x0 (every coordinate). */
function fdGrad(f: (x: Float64Array) => number, x0: ArrayLike<number>, h = 1e-6): Float64Array {
  const x = Float64Array.from(x0);
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + h;
    const fp = f(x);
    x[i] = v - h;
    const fm = f(x);
    x[i] = v;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};
const f64 = (n: number, seed: number, lo = -1, hi = 1) => Float64Array.from(randomF32(n, seed, lo, hi));

function fdCheck(name: string, analytic: ArrayLike<number>, numeric: ArrayLike<number>): void {
  const err = relError(analytic, numeric);
  console.log(`finite difference ${name}: relative error ${err.toExponential(2)}`);
  expect(err).toBeLessThan(1e-6);
}

describe("reference gradients match central finite differences (float64)", () => {
  it("linear", () => {
    const T = 3, N = 4, K = 5;
    const x = f64(T * K, 1), W = f64(N * K, 2), G = f64(T * N, 3);
    const { dx, dW } = linearBackwardRef(x, W, G, T, N, K);
    fdCheck("linear dx", dx, fdGrad((v) => dot(linearForwardRef(v, W, T, N, K), G), x));
    fdCheck("linear dW", dW, fdGrad((v) => dot(linearForwardRef(x, v, T, N, K), G), W));
  });

  it("RMSNorm", () => {
    const T = 3, H = 6, eps = 1e-5;
    const x = f64(T * H, 4), w = f64(H, 5, 0.5, 1.5), G = f64(T * H, 6);
    const { dx, dw } = rmsnormBackwardRef(x, w, G, T, H, eps);
    fdCheck("rmsnorm dx", dx, fdGrad((v) => dot(rmsnormForwardRef(v, w, T, H, eps), G), x));
    fdCheck("rmsnorm dw", dw, fdGrad((v) => dot(rmsnormForwardRef(x, v, T, H, eps), G), w));
  });

  it("RoPE (one sequence and packed)", () => {
    const T = 5, nh = 2, D = 6;
    const invFreq = Float32Array.from({ length: D / 2 }, (_, i) => 10000 ** ((-2 * i) / D));
    const x = f64(T * nh * D, 7), G = f64(T * nh * D, 8);
    for (const [pos0, seq] of [[3, 0], [2, 2]]) {
      const dx = ropeBackwardRef(G, invFreq, T, nh, pos0, seq);
      fdCheck(`rope dx (pos0 ${pos0}, seq ${seq})`, dx, fdGrad((v) => dot(ropeForwardRef(v, invFreq, T, nh, pos0, seq), G), x));
    }
  });

  it("SwiGLU", () => {
    const n = 10;
    const g = f64(n, 9, -4, 4), u = f64(n, 10), G = f64(n, 11);
    const { dg, du } = swigluBackwardRef(g, u, G);
    fdCheck("swiglu dg", dg, fdGrad((v) => dot(swigluForwardRef(v, u), G), g));
    fdCheck("swiglu du", du, fdGrad((v) => dot(swigluForwardRef(g, v), G), u));
  });

  it("embedding", () => {
    const V = 5, H = 3, ids = [1, 3, 1, 4, 1];
    const E = f64(V * H, 12), G = f64(ids.length * H, 13);
    const dE = embeddingBackwardRef(ids, G, V, H);
    fdCheck("embedding dE", dE, fdGrad((v) => dot(embeddingForwardRef(v, ids, H), G), E));
  });

  it("cross-entropy (mean over scored rows, one ignored row)", () => {
    const T = 4, V = 7, targets = [2, IGNORE_INDEX_REF, 6, 0];
    const logits = f64(T * V, 14, -3, 3);
    const { dlogits, count } = crossEntropyBackwardRef(logits, targets, T, V);
    expect(count).toBe(3);
    fdCheck("cross-entropy dlogits", dlogits, fdGrad((v) => crossEntropyForwardRef(v, targets, T, V).lossSum / count, logits));
  });

  it("MSE (mean)", () => {
    const n = 9;
    const y = f64(n, 15), ref = f64(n, 16);
    const { dy } = mseBackwardRef(y, ref);
    fdCheck("mse dy", dy, fdGrad((v) => mseForwardRef(v, ref) / n, y));
  });
});

// --- GPU vs float64 reference -------------------------------------------------------------------

describe("GPU backward kernels match the float64 references", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;
  const live: GpuTensor[] = [];
  const up = (data: Float32Array | Uint32Array, shape: number[], label: string, dtype: "f32" | "u32" = "f32") => {
    const t = GpuTensor.fromHost(gpu, data, shape, dtype, label);
    live.push(t);
    return t;
  };
  const empty = (shape: number[], label: string) => {
    const t = GpuTensor.empty(gpu, shape, "f32", label);
    live.push(t);
    return t;
  };
  const run = async (f: (b: CommandBatch) => Promise<void>) => {
    const b = new CommandBatch(gpu, "backward.test");
    await f(b);
    b.submit();
  };
  const host = async (t: GpuTensor) => (await t.toHost()) as Float32Array;
  const check = (name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-4) => {
    const err = relError(got, want);
    console.log(`GPU ${name}: relative error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(tol);
  };
  const plus = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from({ length: a.length }, (_, i) => a[i] + b[i]);
  /** Runs `body`, then frees its tensors and checks that nothing else stayed allocated. */
  const leakFree = async (body: () => Promise<void>) => {
    const base = gpu.stats.liveBytes;
    await body();
    for (const t of live.splice(0)) t.destroy();
    expect(gpu.stats.liveBytes).toBe(base);
  };

  it("linear: dx, dW, accumulation and W in row windows", () =>
    leakFree(async () => {
      // 37x45x53: the tiled kernel; 33x44x52: the transposed-weight kernel on CPU adapters (multiples of 4)
      for (const [T, N, K, windowRows] of [[37, 45, 53, undefined], [19, 45, 48, 12], [33, 44, 52, undefined]] as const) {
        const x = randomF32(T * K, 21), W = randomF32(N * K, 22), dy = randomF32(T * N, 23);
        const dx0 = randomF32(T * K, 24), dW0 = randomF32(N * K, 25);
        const ref = linearBackwardRef(x, W, dy, T, N, K);
        const xt = up(x, [T, K], "x"), wt = up(W, [N, K], "W"), dyt = up(dy, [T, N], "dy");
        if (windowRows) expect(wt.rowWindows({ rowBytes: K * 4, maxRows: windowRows }).length).toBeGreaterThan(2);
        const dxt = up(dx0, [T, K], "dx"), dWt = up(dW0, [N, K], "dW");
        const tag = `${T}x${N}x${K}${windowRows ? ` (windows of ${windowRows} rows)` : ""}`;
        await run((b) => linearBackward(ctx, b, xt, wt, dyt, dxt, dWt, { windowRows }));
        check(`linear dx ${tag}`, await host(dxt), ref.dx);
        check(`linear dW ${tag}`, await host(dWt), ref.dW);
        const dxa = up(dx0, [T, K], "dx.acc"), dWa = up(dW0, [N, K], "dW.acc");
        await run((b) => linearBackward(ctx, b, xt, wt, dyt, dxa, dWa, { accumulate: true, accumulateDx: true, windowRows }));
        check(`linear dx accumulated ${tag}`, await host(dxa), plus(dx0, ref.dx));
        check(`linear dW accumulated ${tag}`, await host(dWa), plus(dW0, ref.dW));
        // null outputs: only the other one is computed
        const dWn = empty([N, K], "dW.only");
        await run((b) => linearBackward(ctx, b, xt, wt, dyt, null, dWn, { windowRows }));
        check(`linear dW alone ${tag}`, await host(dWn), ref.dW);
      }
    }));

  it("RMSNorm: dx, dw and accumulation", () =>
    leakFree(async () => {
      const T = 13, H = 77, eps = 1e-5;
      const x = randomF32(T * H, 31), w = randomF32(H, 32, 0.5, 1.5), dy = randomF32(T * H, 33);
      const dx0 = randomF32(T * H, 34), dw0 = randomF32(H, 35);
      const ref = rmsnormBackwardRef(x, w, dy, T, H, eps);
      const xt = up(x, [T, H], "x"), wt = up(w, [H], "w"), dyt = up(dy, [T, H], "dy");
      const dxt = up(dx0, [T, H], "dx"), dwt = up(dw0, [H], "dw");
      await run((b) => rmsnormBackward(ctx, b, xt, wt, dyt, dxt, dwt, eps));
      check("rmsnorm dx", await host(dxt), ref.dx);
      check("rmsnorm dw", await host(dwt), ref.dw);
      const dxa = up(dx0, [T, H], "dx.acc"), dwa = up(dw0, [H], "dw.acc");
      await run((b) => rmsnormBackward(ctx, b, xt, wt, dyt, dxa, dwa, eps, { accumulate: true, accumulateDx: true }));
      check("rmsnorm dx accumulated", await host(dxa), plus(dx0, ref.dx));
      check("rmsnorm dw accumulated", await host(dwa), plus(dw0, ref.dw));
    }));

  it("RoPE backward: one sequence and packed sequences; forward then backward is the identity", () =>
    leakFree(async () => {
      const T = 11, nh = 3, D = 18;
      const invFreq = Float32Array.from({ length: D / 2 }, (_, i) => 10000 ** ((-2 * i) / D));
      const ft = up(invFreq, [D / 2], "inv_freq");
      const g = randomF32(T * nh * D, 41);
      for (const [pos0, seq] of [[7, 0], [3, 4]]) {
        const gt = up(g, [T, nh * D], "dq");
        await run((b) => ropeBackward(ctx, b, gt, ft, T, nh, pos0, seq));
        check(`rope backward (pos0 ${pos0}, seq ${seq})`, await host(gt), ropeBackwardRef(g, invFreq, T, nh, pos0, seq));
        await run((b) => rope(ctx, b, gt, ft, T, nh, pos0, seq));
        check(`rope forward after backward (pos0 ${pos0}, seq ${seq})`, await host(gt), g);
      }
    }));

  it("SwiGLU: dg, du", () =>
    leakFree(async () => {
      const n = 1237;
      const g = randomF32(n, 51, -6, 6), u = randomF32(n, 52), dh = randomF32(n, 53);
      const ref = swigluBackwardRef(g, u, dh);
      const gt = up(g, [n], "g"), ut = up(u, [n], "u"), dht = up(dh, [n], "dh");
      const dgt = up(randomF32(n, 54), [n], "dg"), dut = up(randomF32(n, 55), [n], "du");
      await run((b) => swigluBackward(ctx, b, gt, ut, dht, dgt, dut));
      check("swiglu dg", await host(dgt), ref.dg);
      check("swiglu du", await host(dut), ref.du);
    }));

  it("embedding: dE overwritten (absent rows zeroed), accumulated, and in row windows", () =>
    leakFree(async () => {
      const T = 50;
      const r = rng(61);
      for (const [V, H, windowRows] of [[29, 37, undefined], [40, 64, 7]] as const) {
        const ids = Uint32Array.from({ length: T }, () => Math.floor(r() * (V - 3))); // the last rows stay absent
        const dOut = randomF32(T * H, 62), dE0 = randomF32(V * H, 63);
        const ref = embeddingBackwardRef(ids, dOut, V, H);
        const dOutT = up(dOut, [T, H], "dOut");
        const tag = `V ${V}, H ${H}${windowRows ? `, windows of ${windowRows} rows` : ""}`;
        const dEt = up(dE0, [V, H], "dE");
        await run((b) => embeddingBackward(ctx, b, ids, dOutT, dEt, { windowRows }));
        const got = await host(dEt);
        check(`embedding dE (${tag})`, got, ref);
        for (let i = (V - 3) * H; i < V * H; i++) expect(got[i]).toBe(0);
        const dEa = up(dE0, [V, H], "dE.acc");
        await run((b) => embeddingBackward(ctx, b, ids, dOutT, dEa, { accumulate: true, windowRows }));
        check(`embedding dE accumulated (${tag})`, await host(dEa), plus(dE0, ref));
      }
      const { csr, distinct } = embeddingCsr(Uint32Array.from([4, 1, 4, 0]));
      expect(distinct).toBe(3);
      expect([...csr]).toEqual([0, 1, 4, 0, 1, 2, 4, 3, 1, 0, 2]);
      await expect(run((b) => embeddingBackward(ctx, b, Uint32Array.from([40]), empty([1, 64], "d"), empty([40, 64], "E"))))
        .rejects.toThrow(/outside the vocabulary/);
    }));

  it("cross-entropy: dlogits, loss sum and scored rows; ignored rows; in place; explicit scale", () =>
    leakFree(async () => {
      const T = 13, V = 203;
      const r = rng(71);
      const targets = Uint32Array.from({ length: T }, () => Math.floor(r() * V));
      targets[3] = IGNORE_INDEX;
      targets[8] = IGNORE_INDEX;
      targets[11] = V + 5; // out of range: not scored either
      const logits = randomF32(T * V, 72, -4, 4);
      const ref = crossEntropyBackwardRef(logits, targets, T, V);
      expect(ref.count).toBe(T - 3);
      const lt = up(logits, [T, V], "logits"), tt = up(targets, [T], "targets", "u32");
      const dlt = up(randomF32(T * V, 73), [T, V], "dlogits"), loss = up(randomF32(2, 74), [2], "loss");
      await run((b) => crossEntropyBackward(ctx, b, lt, tt, dlt, loss));
      const dl = await host(dlt);
      check("cross-entropy dlogits", dl, ref.dlogits);
      for (const t of [3, 8, 11]) for (let v = 0; v < V; v++) expect(dl[t * V + v]).toBe(0);
      const [lossSum, count] = await host(loss);
      check("cross-entropy loss sum", [lossSum], [ref.lossSum]);
      expect(count).toBe(T - 3);
      // in place, with an explicit scale
      const scale = 1 / 64;
      const refS = crossEntropyBackwardRef(logits, targets, T, V, scale);
      const inplace = up(logits, [T, V], "logits.inplace");
      await run((b) => crossEntropyBackward(ctx, b, inplace, tt, inplace, loss, { scale }));
      check("cross-entropy dlogits in place, scale 1/64", await host(inplace), refS.dlogits);
      check("cross-entropy loss sum (in place)", [(await host(loss))[0]], [ref.lossSum]);
    }));

  it("MSE: dy and loss sum over one and several reduction passes; explicit scale", () =>
    leakFree(async () => {
      for (const n of [3001, 70001]) {
        const y = randomF32(n, 81), yr = randomF32(n, 82);
        const ref = mseBackwardRef(y, yr);
        const yt = up(y, [n], "y"), rt = up(yr, [n], "ref");
        const dyt = up(randomF32(n, 83), [n], "dy"), loss = up(randomF32(2, 84), [2], "loss");
        await run((b) => mseBackward(ctx, b, yt, rt, dyt, loss));
        check(`mse dy (n ${n})`, await host(dyt), ref.dy);
        const [s, cnt] = await host(loss);
        check(`mse loss sum (n ${n})`, [s], [ref.lossSum]);
        expect(cnt).toBe(n);
        await run((b) => mseBackward(ctx, b, yt, rt, dyt, loss, { scale: 0.5 }));
        check(`mse dy scale 0.5 (n ${n})`, await host(dyt), mseBackwardRef(y, yr, 0.5).dy);
      }
    }));
});
