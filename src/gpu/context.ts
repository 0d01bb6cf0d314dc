// gpu/context.ts — what every op needs: the device and its kernel registry, opened together.

import { openDevice, type Gpu, type OpenDeviceOptions } from "./device.ts";
import { KernelRegistry, type ShaderSource } from "./kernel.ts";

export interface GpuContext {
  readonly gpu: Gpu;
  readonly kernels: KernelRegistry;
}

/** Opens a device (see openDevice) and a kernel registry over the project's shaders/. */
export async function createContext(opts: OpenDeviceOptions & { source?: ShaderSource } = {}): Promise<GpuContext> {
  const gpu = await openDevice(opts);
  const source = opts.source ?? (await import("./shader_source.ts")).nodeShaderSource;
  return { gpu, kernels: new KernelRegistry(gpu, source) };
}
