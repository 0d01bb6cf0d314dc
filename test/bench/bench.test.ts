// Smoke test of the benchmark suite (src/bench/, `wgq bench`): it runs end to end on tiny shapes,
// validates every kernel before timing it, prints exactly one JSON object with --json, marks one
// "best" per (dtype, shape, M), writes its JSON / Markdown / SVG files, and leaks no GPU memory.
// The ONNX Runtime rows either ran and agree with the reference, or say "unavailable: <reason>";
// the end-to-end rows (tiny synthetic model) and the quantization-time rows have their fields.
// Timings are not checked (benchmarks are never part of the test suite's verdict).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { benchKernels, markBest, type BenchRow } from "../../src/bench/kernels.ts";
import { openOrt, ORT_VARIANTS, benchOrt } from "../../src/bench/ort.ts";
import { deviceSlug, markdown, summaryMarkdown, svgPlot } from "../../src/bench/report.ts";
import { runBench } from "../../src/bench/run.ts";
import { BenchTimer, median } from "../../src/bench/timer.ts";
import { benchCommand } from "../../src/cli/commands/bench.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { gpuContext } from "../helpers/gpu.ts";

const dir = mkdtempSync(join(tmpdir(), "wgq-bench-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The relative error ||y − ref|| / ||ref|| each row must meet, fixed here (the bench's own `tol`
 * field is checked too, but is the code under test). Shapes are small (K ≤ 384):
 *   exact kernels (f32 x, f32 accumulation; f16 weights are the reference's weights)  1e-5, as in
 *     test/nn/matmul.test.ts and test/quant/matmul.test.ts (~1e-7 seen);
 *   tiled_f16 (x and y rounded to f16)  1e-3: y's own f16 rounding is 2^-11 per element (~3e-4 rms);
 *   dp4a variants (x rounded to int8 per 32-block)  1e-2: ≈ 0.5/127 ≈ 4e-3 for uniform x;
 *   ONNX Runtime f32 MatMul and int4 MatMulNBits (f32 accumulation in ORT's own order)  1e-4;
 *   ORT int4 with accuracy_level 4 (A quantized to int8)  2e-2;
 *   ORT f16 MatMul (f16 A and B, f16 accumulation on the WebGPU EP)  5e-3: 2^-11 per rounding, grown
 *     over K = 384 sums (≈ 2^-11 · √384 ≈ 1e-2 at worst, ~1e-3 rms measured).
 */
function fixedBound(x: BenchRow): number {
  if (x.variant === "ort-f16") return 5e-3;
  if (x.variant === "ort-int4-acc4") return 2e-2;
  if (x.variant.startsWith("ort-")) return 1e-4;
  if (x.variant === "tiled_f16") return 1e-3;
  if (x.variant === "dp4a" || x.variant === "kmajor_dp4a") return 1e-2;
  return 1e-5;
}

describe("wgq bench (tiny shapes)", async () => {
  const ctx = await gpuContext();

  it("runs every part, validates every kernel, marks one best per (dtype, shape, M) and writes its files", async () => {
    const base = ctx.gpu.stats.liveBytes;
    const { report, files } = await runBench(ctx, { shapes: "small", reps: 2, outDir: dir, storiesDir: null });
    expect(ctx.gpu.stats.liveBytes).toBe(base);
    const all = report.results;
    const r = all.filter((x) => (x.kind === "gemv" || x.kind === "gemm") && !x.peer && !x.variant.startsWith("ort-"));
    expect(r.filter((x) => x.error)).toEqual([]);
    for (const dtype of ["f32", "f16", "int8", "int4"]) expect(r.some((x) => x.dtype === dtype)).toBe(true);
    expect(new Set(r.map((x) => x.m))).toEqual(new Set([1, 4, 8, 16]));
    expect(r.some((x) => x.variant === "tiled")).toBe(true);
    if (ctx.gpu.has("subgroups") && ctx.gpu.adapterInfo.subgroupMinSize >= 8) expect(r.some((x) => x.variant === "kmajor")).toBe(true);
    for (const x of r) {
      expect(x.median_ms).toBeGreaterThan(0);
      expect(x.min_ms).toBeLessThanOrEqual(x.median_ms);
      expect(x.gbps).toBeCloseTo(x.weight_bytes / (x.median_ms * 1e6), 6);
      expect(x.rel_err).toBeLessThanOrEqual(x.tol);
      expect(x.rel_err, `${x.name} ${x.n}x${x.k} M=${x.m}`).toBeLessThanOrEqual(fixedBound(x));
    }
    console.log(`kernel rows: worst relative error per variant ${JSON.stringify(Object.fromEntries([...new Set(r.map((x) => x.variant))].map((v) => [v, Math.max(...r.filter((x) => x.variant === v).map((x) => x.rel_err))])))}`);
    const groups = new Map<string, number>();
    for (const x of r) if (x.best) groups.set(`${x.dtype} ${x.n} ${x.k} ${x.m}`, (groups.get(`${x.dtype} ${x.n} ${x.k} ${x.m}`) ?? 0) + 1);
    expect([...groups.values()].every((c) => c === 1)).toBe(true);
    expect(groups.size).toBe(new Set(r.map((x) => `${x.dtype} ${x.n} ${x.k} ${x.m}`)).size);
    expect(report.roofline!.copy_gbps).toBeGreaterThan(0);
    expect(report.roofline!.dispatch_submit_ms).toBeGreaterThan(0);
    const stem = join(dir, `${deviceSlug(ctx.gpu.adapterInfo)}.small`);
    expect(files).toEqual([`${stem}.json`, `${stem}.md`, `${stem}.svg`]);
    expect(JSON.parse(readFileSync(`${stem}.json`, "utf8")).results).toHaveLength(all.length);
    expect(readFileSync(`${stem}.svg`, "utf8")).toMatch(/^<svg [^]*<\/svg>\n$/);
    expect(readFileSync(`${stem}.md`, "utf8")).toContain("| N×K | M | dtype | kernel |");

    // ONNX Runtime beside every GEMV M = 1 shape: validated and timed. onnxruntime-node is an
    // optional dependency that `npm ci` installs (here and on CI): missing, it fails this test (the
    // reporting of a missing package is the next test's subject).
    const ort = all.filter((x) => x.variant.startsWith("ort-"));
    const rt = await openOrt();
    expect("unavailable" in rt ? rt.unavailable : "", "onnxruntime-node must be installed (npm ci) and its WebGPU EP must run").toBe("");
    expect(new Set(ort.map((x) => x.variant))).toEqual(new Set(ORT_VARIANTS.map((v) => v.variant)));
    expect(ort.every((x) => x.kind === "gemv" && x.m <= 8 && !x.best)).toBe(true);
    expect(ort.length).toBeGreaterThanOrEqual(ORT_VARIANTS.length);
    for (const x of ort) {
      expect(x.unavailable, `${x.name} ${x.n}x${x.k}`).toBeUndefined();
      expect(x.error).toBeUndefined();
      expect(x.peer).toMatch(/^onnxruntime-node \S+ \(webgpu EP\)$/);
      expect(x.cpu_rel_err!).toBeLessThanOrEqual(x.tol);
      expect(x.rel_err).toBeLessThanOrEqual(x.tol);
      expect(x.cpu_rel_err!, `${x.name} ${x.n}x${x.k} on ORT's CPU EP`).toBeLessThanOrEqual(fixedBound(x));
      expect(x.rel_err, `${x.name} ${x.n}x${x.k} on ORT's WebGPU EP`).toBeLessThanOrEqual(fixedBound(x));
      expect(x.median_ms).toBeGreaterThan(0);
      expect(x.vs_best_project!).toBeGreaterThan(0);
    }
    console.log(`ORT rows: ${ort.map((x) => `${x.name} ${x.n}x${x.k} cpu ${x.cpu_rel_err!.toExponential(1)} webgpu ${x.rel_err.toExponential(1)}`).join("; ")}`);
    expect(markdown(report)).toContain("### ONNX Runtime on the same device");

    // End to end on the tiny synthetic model: decode and prefill for f16, int8, int4 g128.
    const e2e = all.filter((x) => x.kind === "e2e");
    expect(e2e.map((x) => `${x.name} ${x.dtype}`).sort()).toEqual(["decode f16", "decode int4", "decode int8", "prefill f16", "prefill int4", "prefill int8"]);
    for (const x of e2e) {
      expect(x.model).toBe("synthetic:tiny");
      expect(x.layers).toBe(2);
      expect(x.m).toBe(x.name === "decode" ? 1 : 128);
      expect(x.tokens_per_s).toBeCloseTo((1000 * x.m) / x.median_ms, 6);
      expect(x.best).toBeUndefined();
    }
    // Quantization time: RTN int4 g128 and int8 per block.
    const quant = all.filter((x) => x.kind === "quant");
    expect(quant.map((x) => `${x.name} ${x.dtype}`)).toEqual(["rtn int4", "rtn int8"]);
    for (const x of quant) {
      expect(x.seconds_per_block!).toBeGreaterThan(0);
      expect(x.seconds_per_billion).toBeCloseTo((x.seconds_per_block! / x.params_per_block!) * 1e9, 6);
    }
    const md = markdown(report);
    expect(md).toContain("### End to end");
    expect(md).toMatch(/\| synthetic:tiny \| 2 \| int4 g128 \|/);
    expect(md).toContain("### Quantization time");
    const summary = summaryMarkdown(report);
    for (const h of ["#### ONNX Runtime", "#### End to end", "#### Quantization time", "| gemv | 130×256 | 1 |"]) expect(summary).toContain(h);
  });

  it("ONNX Runtime missing: its rows say unavailable with the reason, the kernel rows still run", async () => {
    const timer = new BenchTimer(ctx.gpu);
    const logs: string[] = [];
    try {
      const rows = await benchKernels(ctx, timer, {
        shapes: [{ n: 24, k: 128, label: "24x128" }],
        ms: () => ({ gemv: [1], gemm: [] }),
        include: (d, v) => v.startsWith("ort-") || (d === "f32" && v === "matmul"),
        reps: 1, warmup: 0, copyGbps: null, log: (m) => logs.push(m),
        peer: (p) => benchOrt(p, "onnxruntime-node-not-a-package"), peerVariants: ORT_VARIANTS,
      });
      expect(rows.find((x) => x.name === "matmul")!.median_ms).toBeGreaterThan(0);
      const ort = rows.filter((x) => x.peer || x.variant.startsWith("ort-"));
      expect(ort.map((x) => x.name)).toEqual(["ort-f32", "ort-f16", "ort-int4.g32", "ort-int4.g128", "ort-int4-acc4.g32", "ort-int4-acc4.g128"]);
      for (const x of ort) {
        expect(x.unavailable).toMatch(/^onnxruntime-node-not-a-package is not installed \(.+\)/);
        expect(x.error).toBeUndefined();
        expect(Number.isNaN(x.median_ms)).toBe(true);
      }
      markBest(rows);
      expect(ort.some((x) => x.best)).toBe(false);
      const report = { device: { ...ctx.gpu.adapterInfo, features: [], timer: "wall" }, settings: { reps: 1, warmup: 0, shapes: "small", only: "ort", full: false, date: "" }, roofline: null, results: rows };
      expect(markdown(report)).toMatch(/\| ort-f32 \|[^\n]*\| unavailable: onnxruntime-node-not-a-package is not installed/);
      expect(summaryMarkdown(report)).toMatch(/\| 24×128 \| 1 \| f32 \| ort-f32 \| unavailable: /);
      expect(logs.some((l) => l.includes("unavailable"))).toBe(true);
    } finally {
      timer.destroy();
    }
  });

  it("`wgq bench --only gemv --json` prints exactly one JSON object with the required fields", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
    try {
      await benchCommand().exitOverride().parseAsync(["--only", "gemv", "--shapes", "small", "--reps", "1", "--json", "--quiet", "--no-write"], { from: "user" });
    } finally {
      spy.mockRestore();
    }
    const text = out.join("");
    const obj = JSON.parse(text); // throws unless the whole of stdout is one JSON value
    expect(text.trim().startsWith("{")).toBe(true);
    expect(Object.keys(obj)).toEqual(expect.arrayContaining(["device", "results"]));
    expect(obj.device.description).toBeTruthy();
    expect(obj.results.every((x: BenchRow) => x.kind === "gemv" && x.m <= 8)).toBe(true);
    expect(obj.results.some((x: BenchRow) => x.variant.startsWith("ort-"))).toBe(false); // ONNX Runtime rows: full run and --only ort
    for (const key of ["name", "dtype", "m", "n", "k", "median_ms", "min_ms", "gbps"]) expect(obj.results[0]).toHaveProperty(key);
    expect(obj.results.filter((x: BenchRow) => x.best).length).toBeGreaterThan(0);
  });

  it("`wgq bench --only e2e --json` prints one JSON object with decode/prefill rows and tokens_per_s; --no-ort leaves ORT out", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
    try {
      await benchCommand().exitOverride().parseAsync(["--only", "e2e", "--shapes", "small", "--reps", "1", "--prefill", "8", "--stories", join(dir, "none"), "--json", "--quiet", "--no-write", "--no-ort"], { from: "user" });
    } finally {
      spy.mockRestore();
    }
    const obj = JSON.parse(out.join(""));
    expect(obj.settings.ort).toBe(false);
    expect(obj.results).toHaveLength(6);
    for (const x of obj.results) {
      for (const key of ["name", "dtype", "m", "n", "k", "median_ms", "min_ms", "gbps", "tokens_per_s", "layers", "model"]) expect(x).toHaveProperty(key);
      expect(x.m).toBe(x.name === "decode" ? 1 : 8);
    }
  });

  it("times with timestamps when the device has them, and a batch's copies and dispatches run", async () => {
    const timer = new BenchTimer(ctx.gpu);
    const a = GpuTensor.fromHost(ctx.gpu, new Float32Array([1, 2, 3, 4]), [4], "f32", "a");
    const b = GpuTensor.empty(ctx.gpu, [4], "f32", "b");
    const s = await timer.measure((_r, batch: CommandBatch) => batch.copy(a, b), { reps: 3 });
    expect(Array.from((await b.toHost()) as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(s.ms).toHaveLength(3);
    // A copy this small may be below the timestamp clock's resolution: the timer then falls back to wall time.
    if (!ctx.gpu.has("timestamp-query")) expect(s.timer).toBe("wall");
    expect(["timestamp", "wall"]).toContain(s.timer);
    expect(s.ms.every((v) => v > 0 && Number.isFinite(v))).toBe(true);
    timer.destroy();
    a.destroy();
    b.destroy();
    expect(median([3, 1, 2, 10])).toBe(2.5);
  });

  it("report helpers: best per group, Markdown and SVG from rows alone", () => {
    const row = (name: string, dtype: BenchRow["dtype"], ms: number, error?: string): BenchRow => ({
      name, dtype, variant: name, kind: "gemv", m: 1, n: 8, k: 8, median_ms: ms, min_ms: ms, wall_median_ms: ms, timer: "wall", reps: 7,
      weight_bytes: 64, gbps: 1, pct_copy: null, gflops: 1, speedup_vs_f16: null, rel_err: 0, tol: 1e-4, ...(error ? { error } : {}),
    });
    const rows = [row("a", "int4", 2), row("b", "int4", 1, "bad"), row("c", "int4", 3), row("d", "f16", 5)];
    markBest(rows);
    expect(rows.map((r) => !!r.best)).toEqual([true, false, false, true]);
    const report = { device: { ...ctx.gpu.adapterInfo, features: [], timer: "wall" }, settings: { reps: 7, warmup: 1, shapes: "small", only: null, full: false, date: "" }, roofline: null, results: rows };
    expect(markdown(report)).toMatch(/\| int4 \| b \|[^\n]*FAILED/);
    expect(svgPlot(report)).toContain("<title>8×8 M=1 int4");
  });
});
