// bench/quant/gemv.bench.ts — decode GEMV y[1, N] = x[1, K] · dequant(W)ᵀ for every qmatmul variant
// (src/quant/matmul.ts, the K-major ones included) against the f16-weight matmul of src/nn/matmul.ts, K = N = 4096 by default.
// Each variant is checked against the float64 reference on the dequantized weights before it is timed.
// Prints a table (median / min ms over REPS after one warm-up, GB/s of weight bytes, speedup over the
// f16 matmul's median) and writes bench/results/gemv-<time>.json. Run alone: the 2-core CI VM is
// noisy, so compare medians from at least two runs. The full suite (every dtype, M and shape, roofline,
// Markdown / JSON / SVG) is `wgq bench` (src/bench/).
//
//   npx tsx bench/quant/gemv.bench.ts            (env: K, N, REPS)

import { mkdirSync, writeFileSync } from "node:fs";
import { createContext } from "../../src/gpu/context.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { matmul } from "../../src/nn/matmul.ts";
import { packedBytes, specName, wordsPerRow } from "../../src/quant/formats.ts";
import { qmatmul, QMATMUL_ALL_VARIANTS, variantUnavailable } from "../../src/quant/matmul.ts";
import { destroyPacked, downloadPacked } from "../../src/quant/packed.ts";
import { quantizeRtn } from "../../src/quant/rtn.ts";
import { f16ArrayToF32, f32ArrayToF16 } from "../../src/ref/f16.ts";
import { dequantizeRef } from "../../src/ref/quant.ts";
import { randomF32 } from "../../src/ref/random.ts";

const K = Number(process.env.K ?? 4096);
const N = Number(process.env.N ?? 4096);
const REPS = Number(process.env.REPS ?? 9);

const ctx = await createContext();
const { gpu } = ctx;
const info = gpu.adapterInfo;
console.log(`device: ${info.description} (${info.kind}); K=${K} N=${N} M=1; ${REPS} reps after 1 warm-up`);

/** Times `record` (one batch, one submit, wait) REPS times after a warm-up; returns ms samples. */
async function time(record: (b: CommandBatch) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r <= REPS; r++) {
    const b = new CommandBatch(gpu, "bench");
    await record(b);
    const t0 = performance.now();
    b.submit();
    await gpu.sync();
    if (r > 0) out.push(performance.now() - t0);
  }
  return out;
}
const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];

/** Relative error of y against float64 x · Wᵀ over the first `rows` outputs. */
function check(y: Float32Array, x: Float32Array, w: Float32Array, rows = 64): number {
  let num = 0;
  let den = 0;
  for (let n = 0; n < rows; n++) {
    let acc = 0;
    for (let k = 0; k < K; k++) acc += x[k] * w[n * K + k];
    num += (y[n] - acc) ** 2;
    den += acc * acc;
    if (!Number.isFinite(y[n])) return Infinity;
  }
  return Math.sqrt(num / den);
}

const wf = randomF32(N * K, 1);
const xf = randomF32(K, 2);
const x = GpuTensor.fromHost(gpu, xf, [1, K], "f32", "x");
const x16 = GpuTensor.fromHost(gpu, f32ArrayToF16(xf), [1, K], "f16", "x16");
const y = GpuTensor.empty(gpu, [1, N], "f32", "y");
const y16 = GpuTensor.empty(gpu, [1, N], "f16", "y16");
const rows: { kernel: string; format: string; weightBytes: number; medianMs: number; minMs: number; gbps: number; speedup: number; relError: number }[] = [];

// Baseline: f16 weights through src/nn/matmul.ts.
const w16bits = f32ArrayToF16(wf);
const w16 = GpuTensor.fromHost(gpu, w16bits, [N, K], "f16", "w16");
{
  const t = await time((b) => matmul(ctx, b, x, w16, y));
  const err = check((await y.toHost()) as Float32Array, xf, f16ArrayToF32(w16bits.subarray(0, 64 * K)));
  rows.push({ kernel: "nn/matmul (f16 W)", format: "f16", weightBytes: N * K * 2, medianMs: median(t), minMs: Math.min(...t), gbps: 0, speedup: 1, relError: err });
}
w16.destroy();
const baseMs = rows[0].medianMs;

const wt = GpuTensor.fromHost(gpu, wf, [N, K], "f32", "w");
for (const opts of [{ bits: 4 as const, groupSize: 128, sym: false }, { bits: 4 as const, groupSize: 32, sym: false }, { bits: 8 as const }]) {
  const q = await quantizeRtn(ctx, wt, opts);
  const bytes = packedBytes(q).total;
  const host = await downloadPacked(q);
  const wdq = dequantizeRef({ ...host, N: 64, qweight: host.qweight.subarray(0, 64 * wordsPerRow(q)) });
  for (const variant of QMATMUL_ALL_VARIANTS) {
    const f16 = variant === "tiled_f16";
    if (variantUnavailable(gpu, variant, q, 1, f16 ? "f16" : "f32")) continue;
    const t = await time((b) => qmatmul(ctx, b, f16 ? x16 : x, q, f16 ? y16 : y, { variant }));
    const out = f16 ? f16ArrayToF32((await y16.toHost()) as Uint16Array) : ((await y.toHost()) as Float32Array);
    const err = check(out, f16 ? f16ArrayToF32(f32ArrayToF16(xf)) : xf, wdq);
    rows.push({ kernel: `qmatmul ${variant}`, format: specName(q), weightBytes: bytes, medianMs: median(t), minMs: Math.min(...t), gbps: 0, speedup: baseMs / median(t), relError: err });
  }
  destroyPacked(q);
}
wt.destroy();
for (const r of rows) r.gbps = r.weightBytes / (r.medianMs * 1e6);

console.log(["kernel".padEnd(22), "format".padEnd(15), "MiB".padStart(6), "med ms".padStart(8), "min ms".padStart(8), "GB/s".padStart(6), "x f16".padStart(6), "rel err".padStart(9)].join(" "));
for (const r of rows) {
  console.log([r.kernel.padEnd(22), r.format.padEnd(15), (r.weightBytes / 2 ** 20).toFixed(2).padStart(6), r.medianMs.toFixed(2).padStart(8), r.minMs.toFixed(2).padStart(8), r.gbps.toFixed(2).padStart(6), r.speedup.toFixed(2).padStart(6), r.relError.toExponential(1).padStart(9)].join(" "));
}
const dir = new URL("../results/", import.meta.url);
mkdirSync(dir, { recursive: true });
const file = new URL(`gemv-${new Date().toISOString().replace(/[:.]/g, "-")}.json`, dir);
writeFileSync(file, JSON.stringify({ device: info, K, N, M: 1, reps: REPS, rows }, null, 2));
console.log(`wrote ${file.pathname}`);
for (const t of [x, x16, y, y16]) t.destroy();
gpu.destroy();
