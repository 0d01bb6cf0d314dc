// bench/fuzz_gpu.ts — stands in for src/gpu/context.ts inside the fuzz workers (bench/fuzz_hooks.mjs
// redirects every import of that module here). createContext() returns the worker's one shared
// context, whose destroy() does nothing, so thousands of in-process `wgq` runs share one device and
// its compiled pipelines. The worker calls releaseContext() when the device reports an error.

import { createContext as openContext, type GpuContext } from "../src/gpu/context.ts";

export type { GpuContext };

let shared: Promise<GpuContext> | null = null;
let destroyShared: (() => void) | null = null;

export function createContext(): Promise<GpuContext> {
  shared ??= openContext().then(
    (ctx) => {
      destroyShared = ctx.gpu.destroy.bind(ctx.gpu);
      Object.defineProperty(ctx.gpu, "destroy", { value: () => undefined, configurable: true });
      return ctx;
    },
    (e: unknown) => {
      shared = null;
      throw e;
    },
  );
  return shared;
}

/** The shared context if one is open. */
export function openedContext(): Promise<GpuContext> | null {
  return shared;
}

/** Destroys the shared device; the next createContext() opens a fresh one. */
export function releaseContext(): void {
  destroyShared?.();
  destroyShared = null;
  shared = null;
}
