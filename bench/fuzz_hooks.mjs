// bench/fuzz_hooks.mjs — module hook of the fuzz workers (node --import tsx --import this): every
// import of src/gpu/context.ts resolves to bench/fuzz_gpu.ts, one shared GPU context per worker.
// Registered from the main thread; the hook itself runs on Node's loader thread.
import { register } from "node:module";
import { isMainThread } from "node:worker_threads";

const SHIM = new URL("./fuzz_gpu.ts", import.meta.url);

if (isMainThread) register(import.meta.url);

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  const from = context.parentURL ? new URL(context.parentURL).pathname : "";
  if (from !== SHIM.pathname && r.url.startsWith("file:") && new URL(r.url).pathname.endsWith("/src/gpu/context.ts")) {
    return { ...r, url: SHIM.href };
  }
  return r;
}
