// Smoke test of the benchmark suite (src/bench/, `wgq bench`): it runs end to end on tiny shapes,
// validates every kernel before timing it, prints exactly one JSON object with --json, marks one
// "best" per (dtype, shape, M), writes its JSON / Markdown / SVG files, and leaks no GPU memory.
// Timings are not checked (benchmarks are never part of the test suite's verdict).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { markBest, type BenchRow } from "../../src/bench/kernels.ts";
import { deviceSlug, markdown, svgPlot } from "../../src/bench/report.ts";
import { runBench } from "../../src/bench/run.ts";
import { BenchTimer, median } from "../../src/bench/timer.ts";
import { benchCommand } from "../../src/cli/commands/bench.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { gpuContext } from "../helpers/gpu.ts";

const dir = mkdtempSync(join(tmpdir(), "wgq-bench-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("wgq bench (tiny shapes)", async () => {
  const ctx = await gpuContext();

  it("runs every part, validates every kernel, marks one best per (dtype, shape, M) and writes its files", async () => {
    const base = ctx.gpu.stats.liveBytes;
    const { report, files } = await runBench(ctx, { shapes: "small", reps: 2, outDir: dir });
    expect(ctx.gpu.stats.liveBytes).toBe(base);
    const r = report.results;
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
    }
    const groups = new Map<string, number>();
    for (const x of r) if (x.best) groups.set(`${x.dtype} ${x.n} ${x.k} ${x.m}`, (groups.get(`${x.dtype} ${x.n} ${x.k} ${x.m}`) ?? 0) + 1);
    expect([...groups.values()].every((c) => c === 1)).toBe(true);
    expect(groups.size).toBe(new Set(r.map((x) => `${x.dtype} ${x.n} ${x.k} ${x.m}`)).size);
    expect(report.roofline!.copy_gbps).toBeGreaterThan(0);
    expect(report.roofline!.dispatch_submit_ms).toBeGreaterThan(0);
    const stem = join(dir, `${deviceSlug(ctx.gpu.adapterInfo)}.small`);
    expect(files).toEqual([`${stem}.json`, `${stem}.md`, `${stem}.svg`]);
    expect(JSON.parse(readFileSync(`${stem}.json`, "utf8")).results).toHaveLength(r.length);
    expect(readFileSync(`${stem}.svg`, "utf8")).toMatch(/^<svg [^]*<\/svg>\n$/);
    expect(readFileSync(`${stem}.md`, "utf8")).toContain("| N×K | M | dtype | kernel |");
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
    for (const key of ["name", "dtype", "m", "n", "k", "median_ms", "min_ms", "gbps"]) expect(obj.results[0]).toHaveProperty(key);
    expect(obj.results.filter((x: BenchRow) => x.best).length).toBeGreaterThan(0);
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
