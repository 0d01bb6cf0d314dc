// test/helpers/gpu.ts — one GPU context per test file, seeded random data, and error measures.
// A missing adapter fails the test (never skips): the message names scripts/setup.

import { createContext, type GpuContext } from "../../src/gpu/context.ts";
import { NoAdapterError } from "../../src/errors.ts";

export { randomF32, rng } from "../../src/ref/random.ts";

let ctx: Promise<GpuContext> | null = null;

export function gpuContext(): Promise<GpuContext> {
  ctx ??= createContext().catch((e) => {
    if (e instanceof NoAdapterError) {
      throw new Error(`${e.message}. GPU tests need an adapter: run 'bash scripts/setup' (installs Mesa lavapipe when there is no GPU).`);
    }
    throw e;
  });
  return ctx;
}

/** ||a - ref|| / ||ref|| over the listed indices (all by default); NaN anywhere gives Infinity. */
export function relError(a: ArrayLike<number>, ref: ArrayLike<number>, idx?: Iterable<number>): number {
  let num = 0;
  let den = 0;
  const it = idx ?? Array.from({ length: ref.length }, (_, i) => i);
  for (const i of it) {
    const d = a[i] - ref[i];
    if (!Number.isFinite(a[i])) return Infinity;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}
