import { describe, expect, it } from "vitest";
import { TensorError } from "../../src/errors.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { reduceStats } from "../../src/nn/reduce.ts";
import { reduceRef } from "../../src/ref/reduce.ts";
import { gpuContext, randomF32, rng } from "../helpers/gpu.ts";

describe("GpuTensor", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  it("round-trips every dtype, including odd f16 counts", async () => {
    const base = gpu.stats.liveBytes;
    const f = randomF32(37, 3);
    const h = new Uint16Array(37).map((_, i) => (i * 2654435761) & 0xffff);
    const u = new Uint32Array(5).map((_, i) => 0xdeadbeef ^ i);
    const s = new Int32Array([-1, 2, -3]);
    const p = new Uint8Array(13).map((_, i) => 255 - i);
    const ts = [
      GpuTensor.fromHost(gpu, f, [37], "f32", "f"),
      GpuTensor.fromHost(gpu, h, [37], "f16", "h"),
      GpuTensor.fromHost(gpu, u, [5], "u32", "u"),
      GpuTensor.fromHost(gpu, s, [3], "i32", "s"),
      GpuTensor.fromHost(gpu, p, [13], "packed", "p"),
    ];
    expect(gpu.stats.liveBytes).toBeGreaterThan(base);
    expect(Array.from(await ts[0].toHost())).toEqual(Array.from(f));
    expect(Array.from(await ts[1].toHost())).toEqual(Array.from(h));
    expect(Array.from(await ts[2].toHost())).toEqual(Array.from(u));
    expect(Array.from(await ts[3].toHost())).toEqual(Array.from(s));
    expect(Array.from(await ts[4].toHost())).toEqual(Array.from(p));
    for (const t of ts) t.destroy();
    expect(gpu.stats.liveBytes).toBe(base);
  });

  it("views never own: destroying a view keeps the base; destroy is idempotent; use after destroy throws", async () => {
    const base = gpu.stats.liveBytes;
    const t = GpuTensor.fromHost(gpu, new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), [2, 4], "f32", "t");
    const v = t.view("t.row1", [4], 16);
    expect(Array.from(await v.toHost())).toEqual([5, 6, 7, 8]);
    v.destroy();
    expect(Array.from(await t.toHost())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const v2 = t.view("t.row0", [4], 0);
    t.destroy();
    t.destroy();
    await expect(t.toHost()).rejects.toThrow(/tensor t: used after destroy/);
    expect(() => v2.binding()).toThrow(/tensor t.row0: used after destroy/);
    expect(gpu.stats.liveBytes).toBe(base);
  });

  it("rejects bad shapes, bad views, mismatched host data and over-size bindings", () => {
    expect(() => GpuTensor.empty(gpu, [2, -1], "f32", "neg")).toThrow(TensorError);
    expect(() => GpuTensor.fromHost(gpu, new Float32Array(3), [4], "f32", "short")).toThrow(/short: host data has 12 bytes/);
    const t = GpuTensor.empty(gpu, [8], "f32", "small");
    expect(() => t.view("oob", [4], 24)).toThrow(/outside small/);
    expect(() => t.binding(8)).toThrow(/minStorageBufferOffsetAlignment/);
    t.destroy();
  });

  it("splits dim 0 into aligned windows that each fit one binding", () => {
    const lim = gpu.limits;
    // A fake shape over a small real buffer: rowWindows only does arithmetic on the shape.
    const rows = 1000;
    const rowBytes = 68; // not a multiple of the alignment
    const t = GpuTensor.empty(gpu, [rows, 17], "f32", "w");
    const ws = t.rowWindows({ rowBytes, maxRows: 130 });
    expect(ws.reduce((a, w) => a + w.rows, 0)).toBe(rows);
    for (const w of ws) {
      expect(w.byteOffset % lim.minStorageBufferOffsetAlignment).toBe(0);
      expect(w.byteSize).toBeLessThanOrEqual(lim.maxStorageBufferBindingSize);
      expect(w.rows).toBeLessThanOrEqual(130);
    }
    t.destroy();
  });

  it("a 1 GiB tensor round-trips and its per-row reduction matches the CPU reference", async () => {
    const base = gpu.stats.liveBytes;
    const R = 65536;
    const C = 4096; // 2^28 f32 = 1 GiB, bound in windows of at most maxStorageBufferBindingSize
    const n = R * C;
    const x = new Float32Array(n);
    const r = rng(11);
    for (let i = 0; i < n; i += 4096) x[i] = r() * 2 - 1; // sparse seeds, then a cheap fill:
    for (let i = 0; i < n; i++) if (i % 4096) x[i] = x[i - (i % 4096)] * 0.999 + ((i * 2654435761) % 1000) / 1000 - 0.5;
    const t = GpuTensor.fromHost(gpu, x, [R, C], "f32", "big");
    expect(t.byteSize).toBe(2 ** 30);
    const windows = t.rowWindows();
    console.log(`1 GiB tensor: ${windows.length} binding windows of <= ${gpu.limits.maxStorageBufferBindingSize} bytes`);
    if (gpu.limits.maxStorageBufferBindingSize < 2 ** 30) expect(windows.length).toBeGreaterThan(1);

    const out = GpuTensor.empty(gpu, [R, 4], "f32", "stats");
    const b = new CommandBatch(gpu, "reduce.big");
    await reduceStats(ctx, b, t, "rows", out);
    b.submit();
    const got = (await out.toHost()) as Float32Array;
    const ref = reduceRef(x, R, C, "rows");
    let worst = 0;
    for (let i = 0; i < R; i++) {
      const scale = ref[i * 4 + 1]; // sum |x| bounds the error of every sum
      worst = Math.max(worst, Math.abs(got[i * 4] - ref[i * 4]) / scale, Math.abs(got[i * 4 + 1] - ref[i * 4 + 1]) / scale, Math.abs(got[i * 4 + 3] - ref[i * 4 + 3]) / ref[i * 4 + 3]);
      expect(got[i * 4 + 2]).toBe(Math.fround(ref[i * 4 + 2]));
    }
    console.log(`1 GiB per-row reduction: worst relative error ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-6);

    const back = (await t.toHost()) as Float32Array;
    let same = back.length === x.length;
    for (let i = 0; same && i < n; i++) same = back[i] === x[i] || (Number.isNaN(back[i]) && Number.isNaN(x[i]));
    expect(same).toBe(true);
    t.destroy();
    out.destroy();
    expect(gpu.stats.liveBytes).toBe(base);
  });
});
