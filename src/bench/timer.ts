// bench/timer.ts — how the benchmarks time GPU work: a CommandBatch that brackets its commands with
// GPU timestamps (timestamp-query) when the device has them, wall time from submit to
// onSubmittedWorkDone otherwise (and always, for reference), warm-up and repetitions, median / min.
// Not a profiler: one number per submit.
//
//   const timer = new BenchTimer(gpu);
//   const s = await timer.measure((rep, b) => qmatmul(ctx, b, xs[rep % 3], w, y), { warmup: 1, reps: 7 });
//   s.median, s.min, s.timer   // ms; "timestamp" or "wall"
//   timer.destroy();

import { TensorError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import { type Bindable, CommandBatch } from "../gpu/encoder.ts";
import type { Kernel } from "../gpu/kernel.ts";
import { GpuTensor, roundUp } from "../gpu/tensor.ts";

export type TimerKind = "timestamp" | "wall";

export interface Samples {
  /** ms per repetition: GPU time between the bracket timestamps, or wall time when timer is "wall". */
  ms: number[];
  /** ms per repetition from queue.submit to onSubmittedWorkDone (always measured). */
  wallMs: number[];
  timer: TimerKind;
  median: number;
  min: number;
  wallMedian: number;
}

export interface MeasureOptions {
  /** Untimed runs first (JIT, first-touch, caches of lazily made data). Default 1. */
  warmup?: number;
  /** Timed runs, at least 1. Default 7. */
  reps?: number;
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export function median(a: readonly number[]): number {
  const s = [...a].sort((p, q) => p - q);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** Times batches on one device; owns a 2-entry timestamp query set and its readback buffers. */
export class BenchTimer {
  readonly kind: TimerKind;
  readonly #gpu: Gpu;
  readonly #querySet: GPUQuerySet | null = null;
  readonly #resolve: GPUBuffer | null = null;
  readonly #read: GPUBuffer | null = null;
  #destroyed = false;

  constructor(gpu: Gpu, opts: { timestamps?: boolean } = {}) {
    this.#gpu = gpu;
    const ts = (opts.timestamps ?? true) && gpu.has("timestamp-query");
    this.kind = ts ? "timestamp" : "wall";
    if (ts) {
      this.#querySet = gpu.device.createQuerySet({ label: "bench.timestamps", type: "timestamp", count: 2 });
      this.#resolve = gpu.createBuffer("bench.timestamps.resolve", 16, 0x200 | 0x4); // QUERY_RESOLVE | COPY_SRC
      this.#read = gpu.createBuffer("bench.timestamps.read", 16, 0x1 | 0x8); // MAP_READ | COPY_DST
    }
  }

  /** A batch whose submit() brackets its commands with the timer's timestamps. */
  batch(label = "bench"): TimedBatch {
    this.#check();
    return new TimedBatch(this.#gpu, label, this.#querySet && { querySet: this.#querySet, resolve: this.#resolve!, read: this.#read! });
  }

  /**
   * Runs `record` warmup + reps times (rep = 0 .. warmup+reps-1, so inputs can rotate), one batch and
   * one submit each, waiting for the GPU after each. Recording is never timed.
   * A timestamp delta <= 0 (a clock too coarse for the work) makes the whole measurement fall back to wall time.
   */
  async measure(record: (rep: number, b: CommandBatch) => Promise<unknown> | unknown, opts: MeasureOptions = {}): Promise<Samples> {
    const warmup = opts.warmup ?? 1;
    const reps = Math.max(1, opts.reps ?? 7);
    const ms: number[] = [];
    const wallMs: number[] = [];
    for (let r = 0; r < warmup + reps; r++) {
      const b = this.batch();
      await record(r, b);
      await this.#gpu.sync(); // anything record() submitted on its own (a repack) is not timed
      const t0 = performance.now();
      b.submit();
      await this.#gpu.sync();
      const wall = performance.now() - t0;
      const gpuMs = await b.elapsedMs();
      if (r >= warmup) {
        wallMs.push(wall);
        ms.push(gpuMs ?? wall);
      }
    }
    const timer: TimerKind = this.kind === "timestamp" && ms.every((v) => v > 0) ? "timestamp" : "wall";
    const use = timer === "timestamp" ? ms : wallMs;
    return { ms: use, wallMs, timer, median: median(use), min: Math.min(...use), wallMedian: median(wallMs) };
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#querySet?.destroy();
    if (this.#resolve) this.#gpu.releaseBuffer(this.#resolve);
    if (this.#read) this.#gpu.releaseBuffer(this.#read);
  }

  #check(): void {
    if (this.#destroyed) throw new TensorError("bench timer", "used after destroy()");
  }
}

/**
 * A CommandBatch (same recording API, so every host op records into it unchanged) whose submit()
 * encodes one command buffer: [empty pass writing timestamp 0] [the recorded passes and copies]
 * [empty pass writing timestamp 1], then resolves the two timestamps. All dispatches between two
 * copies share one compute pass, as in CommandBatch.
 */
export class TimedBatch extends CommandBatch {
  #ops: Op[] = [];
  #scratch: GpuTensor[] = [];
  #submitted = false;
  #timestamps: { querySet: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer } | null;

  constructor(gpu: Gpu, label: string, timestamps: { querySet: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer } | null) {
    super(gpu, label);
    this.#timestamps = timestamps;
  }

  override get size(): number {
    return this.#ops.length;
  }

  override dispatch(
    kernel: Kernel,
    bindings: Record<string, Bindable>,
    params: Record<string, number | readonly number[]> | undefined,
    grid: readonly [number, number?, number?],
  ): this {
    this.#open();
    kernel.checkBindings(Object.keys(bindings));
    const resolved: [number, GPUBufferBinding][] = [];
    for (const b of kernel.entry.bindings) {
      if (b.kind === "uniform") continue;
      const v = bindings[b.name];
      resolved.push([b.binding, v instanceof GpuTensor ? v.binding() : v.tensor.binding(v.byteOffset, v.byteSize)]);
    }
    const g: [number, number, number] = [grid[0], grid[1] ?? 1, grid[2] ?? 1];
    if (g.some((n) => !Number.isInteger(n) || n < 0 || n > kernel.maxWorkgroupsPerDim)) {
      throw new TensorError(kernel.label, `bad dispatch grid [${g}]`);
    }
    this.#ops.push({ kind: "dispatch", kernel, bindings: resolved, params: kernel.packParams(params), grid: g });
    return this;
  }

  override own(...tensors: GpuTensor[]): this {
    this.#scratch.push(...tensors);
    return this;
  }

  override copy(src: GpuTensor, dst: GpuTensor): this {
    this.#open();
    src.assertAlive();
    dst.assertAlive();
    if (src.byteSize !== dst.byteSize) throw new TensorError(dst.label, `copy from ${src.label}: ${src.byteSize} vs ${dst.byteSize} bytes`);
    this.#ops.push({ kind: "copy", src, dst, size: roundUp(src.byteSize, 4) });
    return this;
  }

  override submit(): void {
    this.#open();
    this.#submitted = true;
    const gpu = this.gpu;
    const device = gpu.device;
    const slot = device.limits.minUniformBufferOffsetAlignment;
    const withParams = this.#ops.filter((o): o is DispatchOp => o.kind === "dispatch" && o.params !== null);
    const offsets = new Map<Op, number>();
    let arena: GPUBuffer | null = null;
    if (withParams.length) {
      let total = 0;
      for (const o of withParams) {
        offsets.set(o, total);
        total += roundUp(o.params!.length, slot);
      }
      const bytes = new Uint8Array(total);
      for (const o of withParams) bytes.set(o.params!, offsets.get(o)!);
      arena = gpu.createBuffer(`${this.label}.params`, total, 0x40 | 0x8);
      device.queue.writeBuffer(arena, 0, bytes);
    }
    const ts = this.#timestamps;
    gpu.scoped(this.label, () => {
      const enc = device.createCommandEncoder({ label: this.label });
      if (ts) enc.beginComputePass({ label: `${this.label}.t0`, timestampWrites: { querySet: ts.querySet, beginningOfPassWriteIndex: 0 } }).end();
      let pass: GPUComputePassEncoder | null = null;
      for (const op of this.#ops) {
        if (op.kind === "copy") {
          pass?.end();
          pass = null;
          enc.copyBufferToBuffer(op.src.buffer, op.src.byteOffset, op.dst.buffer, op.dst.byteOffset, op.size);
          continue;
        }
        pass ??= enc.beginComputePass({ label: this.label });
        const entries: GPUBindGroupEntry[] = op.bindings.map(([binding, resource]) => ({ binding, resource }));
        if (op.params) {
          const ub = op.kernel.entry.bindings.find((b) => b.kind === "uniform")!;
          entries.push({ binding: ub.binding, resource: { buffer: arena!, offset: offsets.get(op)!, size: op.params.length } });
        }
        pass.setPipeline(op.kernel.pipeline);
        pass.setBindGroup(0, device.createBindGroup({ label: op.kernel.label, layout: op.kernel.layout, entries }));
        if (op.grid[0] && op.grid[1] && op.grid[2]) pass.dispatchWorkgroups(...op.grid);
      }
      pass?.end();
      if (ts) {
        enc.beginComputePass({ label: `${this.label}.t1`, timestampWrites: { querySet: ts.querySet, endOfPassWriteIndex: 1 } }).end();
        enc.resolveQuerySet(ts.querySet, 0, 2, ts.resolve, 0);
        enc.copyBufferToBuffer(ts.resolve, 0, ts.read, 0, 16);
      }
      device.queue.submit([enc.finish()]);
    });
    if (arena) gpu.releaseBuffer(arena);
    for (const t of this.#scratch) t.destroy();
    this.#scratch = [];
    this.#ops = [];
  }

  /** GPU ms between the bracket timestamps of the submitted batch (null without timestamps). Call after submit(). */
  async elapsedMs(): Promise<number | null> {
    const ts = this.#timestamps;
    if (!ts || !this.#submitted) return null;
    await this.gpu.wait(ts.read.mapAsync(0x1, 0, 16));
    const t = new BigUint64Array(ts.read.getMappedRange(0, 16).slice(0));
    ts.read.unmap();
    return Number(t[1] - t[0]) / 1e6;
  }

  #open(): void {
    if (this.#submitted) throw new TensorError(this.label, "batch already submitted; start a new batch");
  }
}

// ---------------------------------------------------------------------------------------------

type DispatchOp = { kind: "dispatch"; kernel: Kernel; bindings: [number, GPUBufferBinding][]; params: Uint8Array | null; grid: [number, number, number] };
type Op = DispatchOp | { kind: "copy"; src: GpuTensor; dst: GpuTensor; size: number };
