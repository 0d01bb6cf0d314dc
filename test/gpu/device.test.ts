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

  it("WGQ_DISABLE_FEATURES-style options leave features off", async () => {
    const gpu = await openDevice({ disableFeatures: ["shader-f16", "subgroups"] });
    expect(gpu.has("shader-f16")).toBe(false);
    expect(gpu.has("subgroups")).toBe(false);
    gpu.destroy();
  });

  it("turns a validation error in a batch into GpuValidationError naming the batch", async () => {
    const gpu = await openDevice();
    const kernels = new KernelRegistry(gpu, nodeShaderSource);
    const k = await kernels.get("common/convert_f16_to_f32.wgsl", "main", { WG_SIZE: 256 });
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
