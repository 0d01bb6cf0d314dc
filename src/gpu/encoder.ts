// gpu/encoder.ts — a batch of dispatches and copies recorded on the host and sent in ONE submit.
// Params of every dispatch go into slots of one uniform arena, written with one writeBuffer just
// before the submit (queue order makes the write land after all earlier submits). Nothing is read
// back here: callers read tensors with toHost() when they ask for data.
//
//   const b = new CommandBatch(gpu);
//   b.dispatch(k1, { x, y }, { n }, k1.grid(n));
//   b.dispatch(k2, { y, z }, { n }, k2.grid(n));
//   b.submit();               // one queue.submit
//   await gpu.sync();         // only when the caller must wait

import { TensorError } from "../errors.ts";
import type { Gpu } from "./device.ts";
import type { Kernel } from "./kernel.ts";
import { GpuTensor, roundUp } from "./tensor.ts";

/** What a binding can be: a whole tensor, or a byte range of one (a window). */
export type Bindable = GpuTensor | { tensor: GpuTensor; byteOffset: number; byteSize: number };

type Op =
  | { kind: "dispatch"; kernel: Kernel; bindings: [number, GPUBufferBinding][]; params: Uint8Array | null; grid: [number, number, number] }
  | { kind: "copy"; src: GPUBufferBinding; dst: GPUBufferBinding };

const UNIFORM_USAGE = 0x40 | 0x8; // UNIFORM | COPY_DST

export class CommandBatch {
  #ops: Op[] = [];
  #scratch: GpuTensor[] = [];
  #submitted = false;

  constructor(readonly gpu: Gpu, readonly label = "batch") {}

  get size(): number {
    return this.#ops.length;
  }

  /** Records one dispatch; bindings are keyed by WGSL variable name. */
  dispatch(
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
      const t = v instanceof GpuTensor ? v : v.tensor;
      try {
        resolved.push([b.binding, v instanceof GpuTensor ? v.binding() : v.tensor.binding(v.byteOffset, v.byteSize)]);
      } catch (e) {
        if (e instanceof TensorError) throw new TensorError(t.label, `as binding '${b.name}' of ${kernel.label}: ${e.message}`, e.hint);
        throw e;
      }
    }
    const g: [number, number, number] = [grid[0], grid[1] ?? 1, grid[2] ?? 1];
    const max = kernel.maxWorkgroupsPerDim;
    if (g.some((n) => !Number.isInteger(n) || n < 0 || n > max)) {
      throw new TensorError(kernel.label, `bad dispatch grid [${g}] (each dimension an integer in 0..${max})`);
    }
    this.#ops.push({ kind: "dispatch", kernel, bindings: resolved, params: kernel.packParams(params), grid: g });
    return this;
  }

  /** Scratch tensors used by recorded ops: destroyed right after submit (WebGPU keeps them alive for the work). */
  own(...tensors: GpuTensor[]): this {
    this.#scratch.push(...tensors);
    return this;
  }

  /** Records a buffer copy of src into dst (same byte size). */
  copy(src: GpuTensor, dst: GpuTensor): this {
    this.#open();
    src.assertAlive();
    dst.assertAlive();
    if (src.byteSize !== dst.byteSize) throw new TensorError(dst.label, `copy from ${src.label}: ${src.byteSize} vs ${dst.byteSize} bytes`);
    const size = roundUp(src.byteSize, 4);
    this.#ops.push({ kind: "copy", src: { buffer: src.buffer, offset: src.byteOffset, size }, dst: { buffer: dst.buffer, offset: dst.byteOffset, size } });
    return this;
  }

  /** Encodes every recorded op into one command buffer and submits it. */
  submit(): void {
    this.#open();
    this.#submitted = true;
    const gpu = this.gpu;
    const device = gpu.device;
    if (!this.#ops.length) {
      for (const t of this.#scratch) t.destroy();
      return;
    }
    const slot = device.limits.minUniformBufferOffsetAlignment;
    const withParams = this.#ops.filter((o) => o.kind === "dispatch" && o.params);
    let arena: GPUBuffer | null = null;
    const offsets = new Map<Op, number>();
    if (withParams.length) {
      let total = 0;
      for (const o of withParams) {
        offsets.set(o, total);
        total += roundUp((o as { params: Uint8Array }).params.length, slot);
      }
      const bytes = new Uint8Array(total);
      for (const o of withParams) bytes.set((o as { params: Uint8Array }).params, offsets.get(o)!);
      arena = gpu.createBuffer(`${this.label}.params`, total, UNIFORM_USAGE);
      device.queue.writeBuffer(arena, 0, bytes);
    }
    gpu.scoped(this.label, () => {
      const enc = device.createCommandEncoder({ label: this.label });
      let pass: GPUComputePassEncoder | null = null;
      for (const op of this.#ops) {
        if (op.kind === "copy") {
          pass?.end();
          pass = null;
          enc.copyBufferToBuffer(op.src.buffer, op.src.offset ?? 0, op.dst.buffer, op.dst.offset ?? 0, op.src.size!);
          continue;
        }
        pass ??= enc.beginComputePass({ label: this.label });
        const entries: GPUBindGroupEntry[] = op.bindings.map(([binding, resource]) => ({ binding, resource }));
        if (op.params) {
          const ub = op.kernel.entry.bindings.find((b) => b.kind === "uniform")!;
          entries.push({ binding: ub.binding, resource: { buffer: arena!, offset: offsets.get(op)!, size: op.params.length } });
        }
        const group = device.createBindGroup({ label: op.kernel.label, layout: op.kernel.layout, entries });
        pass.setPipeline(op.kernel.pipeline);
        pass.setBindGroup(0, group);
        if (op.grid[0] && op.grid[1] && op.grid[2]) pass.dispatchWorkgroups(...op.grid);
      }
      pass?.end();
      device.queue.submit([enc.finish()]);
    });
    // The arena may be destroyed now: WebGPU keeps it alive for the submitted work.
    if (arena) gpu.releaseBuffer(arena);
    for (const t of this.#scratch) t.destroy();
    this.#scratch = [];
    this.#ops = [];
  }

  #open(): void {
    if (this.#submitted) throw new TensorError(this.label, "batch already submitted; start a new CommandBatch");
  }
}
