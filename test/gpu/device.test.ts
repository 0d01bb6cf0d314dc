import { describe, expect, it } from "vitest";
import { DeviceLostError, GpuOutOfMemoryError, GpuValidationError } from "../../src/errors.ts";
import { openDevice, probeAdapter } from "../../src/gpu/device.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { KernelRegistry } from "../../src/gpu/kernel.ts";
import { nodeShaderSource } from "../../src/gpu/shader_source.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { gpuContext } from "../helpers/gpu.ts";

describe("openDevice", () => {
  it("raises limits to the adapter's and enables the wanted features it has", async () => {
    const { gpu } = await gpuContext();
    expect(gpu.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 << 20);
    expect(gpu.limits.maxBufferSize).toBeGreaterThanOrEqual(gpu.limits.maxStorageBufferBindingSize);
    const probe = (await probeAdapter())!;
    for (const f of ["shader-f16", "subgroups", "timestamp-query"]) {
      expect(gpu.has(f), f).toBe(probe.adapter.features.has(f)); // lavapipe offers all three
    }
    expect(gpu.limits.maxStorageBufferBindingSize).toBe(probe.adapter.limits.maxStorageBufferBindingSize);
    expect(gpu.limits.maxBufferSize).toBe(probe.adapter.limits.maxBufferSize);
    console.log(`adapter: ${gpu.adapterInfo.description} (${gpu.adapterInfo.kind}); features: ${[...gpu.features].join(", ")}`);
  });

  it("wait() passes values and errors through; on a CPU adapter in Node it sleeps between polls", async () => {
    const { gpu } = await gpuContext();
    if (gpu.adapterInfo.kind === "cpu" && !process.env.WGQ_WAIT) expect(gpu.waitMode).toBe("nap");
    expect(await gpu.wait(Promise.resolve(42))).toBe(42);
    await expect(gpu.wait(Promise.reject(new Error("mapping failed")))).rejects.toThrow("mapping failed");
    const t0 = performance.now();
    await gpu.wait(new Promise((r) => setTimeout(r, 40)));
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(39);
    expect(ms).toBeLessThan(40 * 1.125 + 30); // a sleep is at most an eighth of the time waited (+ timer slack)
    // overlapping waits share one poll loop and all settle
    const t1 = performance.now();
    const both = await Promise.all([gpu.wait(new Promise((r) => setTimeout(() => r("a"), 40))), gpu.wait(new Promise((r) => setTimeout(() => r("b"), 10)))]);
    expect(both).toEqual(["a", "b"]);
    expect(performance.now() - t1).toBeLessThan(40 * 1.125 + 30);
    // GPU work waited for this way completes with the right data
    const x = GpuTensor.fromHost(gpu, new Float32Array([1, 2, 3, 4]), [4], "f32", "x");
    const b = new CommandBatch(gpu);
    const y = GpuTensor.empty(gpu, [4], "f32", "y");
    b.copy(x, y);
    b.submit();
    await gpu.sync();
    expect(Array.from((await y.toHost()) as Float32Array)).toEqual([1, 2, 3, 4]);
    x.destroy();
    y.destroy();
  });

  it("WGQ_DISABLE_FEATURES-style options leave features off", async () => {
    const gpu = await openDevice({ disableFeatures: ["shader-f16", "subgroups"] });
    expect(gpu.has("shader-f16")).toBe(false);
    expect(gpu.has("subgroups")).toBe(false);
    gpu.destroy();
  });

  it("turns a validation error in a batch into GpuValidationError naming the batch", async () => {
    const gpu = await openDevice();
    const kernels = new KernelRegistry(gpu, nodeShaderSource);
    const k = await kernels.get("common/convert.wgsl", "main", { WG_SIZE: 256 }, { CONVERSION: "f16_to_f32" });
    const t = GpuTensor.empty(gpu, [64], "f32", "aliased");
    // The same buffer as read-only `src` and writable `dst` in one dispatch is invalid WebGPU.
    new CommandBatch(gpu, "bad.batch").dispatch(k, { src: t, dst: t }, { n: 64 }, [1]).submit();
    const err = await gpu.sync().catch((e) => e);
    expect(err).toBeInstanceOf(GpuValidationError);
    expect(err.message).toMatch(/bad\.batch/);
    gpu.destroy();
  });

  it("refuses a buffer over maxBufferSize with GpuOutOfMemoryError naming the tensor", async () => {
    const gpu = await openDevice();
    expect(() => GpuTensor.empty(gpu, [Math.floor(gpu.limits.maxBufferSize / 4) + 1024], "f32", "huge")).toThrow(GpuOutOfMemoryError);
    expect(() => GpuTensor.empty(gpu, [Math.floor(gpu.limits.maxBufferSize / 4) + 1024], "f32", "huge")).toThrow(/huge/);
    gpu.destroy();
  });

  it("reports a destroyed device as DeviceLostError on the next use", async () => {
    const gpu = await openDevice();
    gpu.destroy();
    expect(() => gpu.createBuffer("after", 16, 0x80)).toThrow(DeviceLostError);
  });
});
