// bench/roofline.ts — what the device can do at best, so kernel numbers have a yardstick:
// storage-buffer copy bandwidth (a WGSL vec4<u32> grid-stride copy, and copyBufferToBuffer),
// peak f32 / f16 FMA rate (independent vec4 FMA chains), and the cost of one dispatch + submit + wait.
// The probe shaders are bench-only and live here as text (shaders/ holds the project's kernels);
// they follow the shaders/ header convention and go through the same KernelRegistry.

import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { KernelRegistry } from "../gpu/kernel.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { randomF32 } from "../common/random.ts";
import { type BenchTimer, median } from "./timer.ts";

export interface RooflineResult {
  /** WGSL vec4<u32> copy: (read + write bytes) / time, GB/s (1e9 bytes/s), median and best. */
  copy_gbps: number;
  copy_gbps_best: number;
  /** copyBufferToBuffer: (read + write bytes) / time, GB/s. */
  copy_b2b_gbps: number;
  copy_b2b_gbps_best: number;
  /** Bytes copied per probe run. */
  copy_bytes: number;
  /** Peak FMA rate, GFLOP/s (2 FLOP per FMA lane); f16 null without shader-f16; null when not probed (copyOnly). */
  fma_f32_gflops: number | null;
  fma_f16_gflops: number | null;
  /** One tiny dispatch, submit and onSubmittedWorkDone, wall ms: median and min (null when not probed). */
  dispatch_submit_ms: number | null;
  dispatch_submit_ms_min: number | null;
  /** Extra wall ms per additional dispatch in the same submit (median over runs of 1 vs 33 dispatches). */
  per_dispatch_ms: number | null;
  timer: string;
}

/** Bench-only shader sources, keyed by the name given to KernelRegistry. */
export const PROBE_SHADERS: Record<string, string> = {
  "bench/copy.wgsl": `// copy.wgsl — dst = src as a grid-stride copy of vec4<u32> words (the WGSL streaming-bandwidth probe)
//
// Entry:     main
// Workgroup: @workgroup_size(256)
// Grid:      (WGS, 1, 1) — invocation t copies words t, t + stride, t + 2 stride … (stride = 256 * WGS)
// Bindings (group 0):
//   0 src     storage read        array<vec4<u32>>  [n]
//   1 dst     storage read_write  array<vec4<u32>>  [n]
//   2 params  uniform             Params { n (vec4 words) }

struct Params {
  n: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < params.n; i += stride) {
    dst[i] = src[i];
  }
}
`,
  "bench/fma_f32.wgsl": fmaShader("f32"),
  "bench/fma_f16.wgsl": fmaShader("f16"),
};

/** Runs the probes; `copyBytes` per copy (64 MiB by default). */
export async function roofline(ctx: GpuContext, timer: BenchTimer, opts: { copyBytes?: number; reps?: number; fmaIters?: number; copyOnly?: boolean } = {}): Promise<RooflineResult> {
  const { gpu } = ctx;
  const reps = opts.reps ?? 7;
  const bytes = opts.copyBytes ?? 64 << 20;
  const kernels = new KernelRegistry(gpu, (file) => PROBE_SHADERS[file]);
  const words = bytes / 16;
  const init = new Uint32Array(bytes / 4);
  for (let i = 0; i < init.length; i++) init[i] = (i * 2654435761) >>> 0 || 1; // never zeros
  const src = [0, 1].map((i) => GpuTensor.fromHost(gpu, init, [bytes / 4], "u32", `probe.src${i}`));
  const dst = GpuTensor.empty(gpu, [bytes / 4], "u32", "probe.dst");
  try {
    const kc = await kernels.get("bench/copy.wgsl");
    const wgs = Math.min(64, Math.ceil(words / 256));
    const copy = await timer.measure((r, b) => b.dispatch(kc, { src: src[r % 2], dst }, { n: words }, [wgs]), { reps });
    const check = (await dst.toHost()) as Uint32Array;
    if (check[words * 4 - 1] !== init[words * 4 - 1] || check[12345 % check.length] !== init[12345 % check.length]) throw new Error("copy probe produced wrong data");
    const b2b = await timer.measure((r, b) => b.copy(src[r % 2], dst), { reps });
    const gb = (2 * bytes) / 1e6; // read + write, in GB * 1e3 (so GB / ms)
    const out: RooflineResult = {
      copy_gbps: gb / copy.median,
      copy_gbps_best: gb / copy.min,
      copy_b2b_gbps: gb / b2b.median,
      copy_b2b_gbps_best: gb / b2b.min,
      copy_bytes: bytes,
      fma_f32_gflops: null,
      fma_f16_gflops: null,
      dispatch_submit_ms: null,
      dispatch_submit_ms_min: null,
      per_dispatch_ms: null,
      timer: copy.timer,
    };
    if (opts.copyOnly) return out;
    out.fma_f32_gflops = await fmaRate(ctx, kernels, timer, "f32", opts.fmaIters ?? 2048, reps);
    if (gpu.has("shader-f16")) out.fma_f16_gflops = await fmaRate(ctx, kernels, timer, "f16", opts.fmaIters ?? 2048, reps);
    Object.assign(out, await dispatchOverhead(ctx, kernels, Math.max(reps, 21)));
    return out;
  } finally {
    for (const t of [...src, dst]) t.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

function fmaShader(t: "f32" | "f16"): string {
  return `// fma_${t}.wgsl — peak ${t} FMA rate: each invocation runs 4 independent vec4<${t}> FMA chains of ITERS steps
//
// Entry:     main
// Workgroup: @workgroup_size(64)
// Grid:      (WGS, 1, 1) — FLOPs = WGS * 64 * ITERS * 4 chains * 4 lanes * 2
// Bindings (group 0):
//   0 out     storage read_write  array<f32>  [WGS * 64] one sum per invocation (keeps the chains live)
//   1 params  uniform             Params { iters, seed (f32 bits, nonzero) }
${t === "f16" ? "\nenable f16;\n" : ""}
struct Params {
  iters: u32,
  seed: f32,
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = ${t}(params.seed) * ${t}(0.001);
  var a = vec4<${t}>(${t}(gid.x % 7u) * s, s, -s, ${t}(0.5));
  var b = a + vec4<${t}>(${t}(0.25));
  var c = a - vec4<${t}>(${t}(0.25));
  var d = a * ${t}(0.5);
  let m = vec4<${t}>(${t}(0.999));
  let k = vec4<${t}>(s);
  for (var i = 0u; i < params.iters; i++) {
    a = fma(a, m, k);
    b = fma(b, m, k);
    c = fma(c, m, k);
    d = fma(d, m, k);
  }
  let v = a + b + c + d;
  out[gid.x] = f32(v.x + v.y + v.z + v.w);
}
`;
}

async function fmaRate(ctx: GpuContext, kernels: KernelRegistry, timer: BenchTimer, t: "f32" | "f16", iters: number, reps: number): Promise<number> {
  const k = await kernels.get(`bench/fma_${t}.wgsl`);
  const wgs = 256;
  const out = GpuTensor.empty(ctx.gpu, [wgs * 64], "f32", `probe.fma_${t}`);
  try {
    const s = await timer.measure((r, b) => b.dispatch(k, { out }, { iters, seed: 1 + (r % 3) }, [wgs]), { reps });
    const flops = wgs * 64 * iters * 4 * 4 * 2;
    return flops / (s.median * 1e6);
  } finally {
    out.destroy();
  }
}

async function dispatchOverhead(ctx: GpuContext, kernels: KernelRegistry, reps: number): Promise<Pick<RooflineResult, "dispatch_submit_ms" | "dispatch_submit_ms_min" | "per_dispatch_ms">> {
  const { gpu } = ctx;
  const k = await kernels.get("bench/copy.wgsl");
  const src = GpuTensor.fromHost(gpu, randomF32(64, 11), [64], "f32", "probe.tiny_src");
  const dst = GpuTensor.empty(gpu, [64], "f32", "probe.tiny_dst");
  const run = async (dispatches: number): Promise<number[]> => {
    const out: number[] = [];
    for (let r = 0; r <= reps; r++) {
      const b = new CommandBatch(gpu, "probe.dispatch");
      for (let i = 0; i < dispatches; i++) b.dispatch(k, { src, dst }, { n: 16 }, [1]);
      const t0 = performance.now();
      b.submit();
      await gpu.device.queue.onSubmittedWorkDone();
      if (r > 0) out.push(performance.now() - t0);
    }
    return out;
  };
  try {
    const one = await run(1);
    const many = await run(33);
    return { dispatch_submit_ms: median(one), dispatch_submit_ms_min: Math.min(...one), per_dispatch_ms: Math.max(0, (median(many) - median(one)) / 32) };
  } finally {
    src.destroy();
    dst.destroy();
    await gpu.sync();
  }
}
