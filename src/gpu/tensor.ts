// gpu/tensor.ts — GpuTensor: a GPU buffer (or a range of one) with a shape and a dtype.
//
// Ownership: a tensor made by empty()/fromHost() owns its buffer; view() makes tensors that never
// own. destroy() is idempotent; a destroyed tensor, or a view of one, throws on use.
// Payloads: f32/u32/i32 four bytes per element; f16 and bf16 two bytes per element (raw bits,
// packed two per u32 word as WGSL reads them: element 2i in the low half of word i); "packed"
// is an opaque byte payload (quantized weights) whose byte size is given explicitly.
// Large tensors: one buffer up to the device's maxBufferSize; kernels bind it in windows of at
// most maxStorageBufferBindingSize whose offsets are multiples of minStorageBufferOffsetAlignment
// (rowWindows()). Host transfers go through one staging path in chunks of STAGING_BYTES.
// A readback on a lost device throws DeviceLostError (exit code 3), never a bare DOMException.

import { TensorError } from "../errors.ts";
import type { Gpu } from "./device.ts";

export type DType = "f32" | "f16" | "bf16" | "u32" | "i32" | "packed";
export type HostArray = Float32Array | Uint16Array | Uint32Array | Int32Array | Uint8Array;

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, u32: 4, i32: 4, packed: 1 };

/** Host transfers move at most this many bytes per staging step. */
export const STAGING_BYTES = 64 << 20;

const USAGE_STORAGE = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST
const MAP_READ = 0x1;
const COPY_DST = 0x8;

/** A range of rows of a tensor that can be bound as one storage binding. */
export interface BindingWindow {
  /** Byte offset of the window from the start of the tensor. */
  byteOffset: number;
  byteSize: number;
  /** First row (of dim 0) in the window, and how many rows it holds. */
  firstRow: number;
  rows: number;
}

export class GpuTensor {
  #destroyed = false;

  private constructor(
    readonly gpu: Gpu,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** Byte offset of this tensor in `buffer`. */
    readonly byteOffset: number,
    /** Bytes of payload (unpadded). */
    readonly byteSize: number,
    readonly label: string,
    readonly owns: boolean,
    readonly base: GpuTensor | null,
  ) {}

  /** A new, zero-filled tensor owned by the caller. `byteSize` is required for "packed". */
  static empty(gpu: Gpu, shape: readonly number[], dtype: DType, label: string, byteSize?: number): GpuTensor {
    const bytes = byteSize ?? payloadBytes(shape, dtype, label);
    checkShape(shape, label);
    const buffer = gpu.createBuffer(label, roundUp(Math.max(bytes, 4), 16), USAGE_STORAGE);
    return new GpuTensor(gpu, buffer, [...shape], dtype, 0, bytes, label, true, null);
  }

  /** Uploads `data` (f16 as Uint16Array bit patterns; "packed" as Uint8Array) into a new tensor. */
  static fromHost(gpu: Gpu, data: HostArray, shape: readonly number[], dtype: DType, label: string): GpuTensor {
    const bytes = dtype === "packed" ? data.byteLength : payloadBytes(shape, dtype, label);
    if (data.byteLength !== bytes) {
      throw new TensorError(label, `host data has ${data.byteLength} bytes, shape [${shape}] ${dtype} needs ${bytes}`);
    }
    const t = GpuTensor.empty(gpu, shape, dtype, label, bytes);
    t.write(data);
    return t;
  }

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get destroyed(): boolean {
    return this.#destroyed || (this.base?.destroyed ?? false);
  }

  /** Throws if this tensor (or the tensor it views) was destroyed. */
  assertAlive(): void {
    if (this.destroyed) throw new TensorError(this.label, "used after destroy()");
  }

  /** A non-owning view of `byteSize` bytes at `byteOffset` (relative to this tensor). */
  view(label: string, shape: readonly number[], byteOffset: number, dtype: DType = this.dtype, byteSize?: number): GpuTensor {
    this.assertAlive();
    const bytes = byteSize ?? payloadBytes(shape, dtype, label);
    if (byteOffset < 0 || byteOffset % 4 !== 0 || byteOffset + bytes > this.byteSize) {
      throw new TensorError(label, `view [${byteOffset}, ${byteOffset + bytes}) is outside ${this.label} (${this.byteSize} bytes) or not 4-byte aligned`);
    }
    return new GpuTensor(this.gpu, this.buffer, [...shape], dtype, this.byteOffset + byteOffset, bytes, label, false, this);
  }

  /**
   * The buffer range of this tensor (or of [byteOffset, byteOffset+byteSize) within it) as a binding.
   * Throws when the range exceeds maxStorageBufferBindingSize or breaks the offset alignment.
   */
  binding(byteOffset = 0, byteSize = this.byteSize - byteOffset): GPUBufferBinding {
    this.assertAlive();
    const offset = this.byteOffset + byteOffset;
    const size = roundUp(byteSize, 4);
    const lim = this.gpu.limits;
    if (offset % lim.minStorageBufferOffsetAlignment !== 0) {
      throw new TensorError(this.label, `binding offset ${offset} is not a multiple of minStorageBufferOffsetAlignment (${lim.minStorageBufferOffsetAlignment})`);
    }
    if (size > lim.maxStorageBufferBindingSize) {
      throw new TensorError(
        this.label,
        `a binding of ${size} bytes exceeds maxStorageBufferBindingSize (${lim.maxStorageBufferBindingSize})`,
        "bind this tensor in windows (GpuTensor.rowWindows) and dispatch once per window",
      );
    }
    return { buffer: this.buffer, offset, size: Math.max(size, 4) };
  }

  /**
   * Splits dim 0 into windows that each fit one storage binding. `rowBytes` defaults to the bytes
   * of one row (product of the other dims). Window starts are multiples of the offset alignment;
   * `maxRows` caps each window (e.g. at maxComputeWorkgroupsPerDimension), `rowMultiple` makes
   * every window but the last a multiple of that many rows.
   */
  rowWindows(opts: { rowBytes?: number; maxRows?: number; rowMultiple?: number } = {}): BindingWindow[] {
    this.assertAlive();
    const rows = this.shape[0] ?? 1;
    const rowBytes = opts.rowBytes ?? this.byteSize / Math.max(rows, 1);
    const lim = this.gpu.limits;
    const align = lim.minStorageBufferOffsetAlignment;
    if (this.byteOffset % align !== 0) {
      throw new TensorError(this.label, `tensor starts at byte ${this.byteOffset}, not a multiple of ${align}`);
    }
    // Window starts must be multiples of `step` rows so that step*rowBytes % align == 0.
    if (!Number.isInteger(rowBytes) || rowBytes <= 0) {
      throw new TensorError(this.label, `cannot split into windows of rows of ${rowBytes} bytes`);
    }
    const step = lcm(align / gcd(align, rowBytes), opts.rowMultiple ?? 1);
    let per = Math.floor(lim.maxStorageBufferBindingSize / rowBytes);
    if (opts.maxRows !== undefined) per = Math.min(per, opts.maxRows);
    if (per >= rows) return [{ byteOffset: 0, byteSize: this.byteSize, firstRow: 0, rows }];
    per -= per % step;
    if (per <= 0) {
      throw new TensorError(this.label, `one row of ${rowBytes} bytes (x${step} for alignment) does not fit a ${lim.maxStorageBufferBindingSize}-byte binding`);
    }
    const out: BindingWindow[] = [];
    for (let r = 0; r < rows; r += per) {
      const n = Math.min(per, rows - r);
      const byteOffset = r * rowBytes;
      const byteSize = r + n === rows ? this.byteSize - byteOffset : n * rowBytes;
      out.push({ byteOffset, byteSize, firstRow: r, rows: n });
    }
    return out;
  }

  /** Writes host data at `byteOffset` (bytes, relative to the tensor), in staging-sized chunks. */
  write(data: HostArray, byteOffset = 0): void {
    this.assertAlive();
    if (byteOffset % 4 !== 0 || byteOffset + data.byteLength > this.byteSize) {
      throw new TensorError(this.label, `write of ${data.byteLength} bytes at ${byteOffset} is outside the tensor (${this.byteSize} bytes) or not 4-byte aligned`);
    }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const queue = this.gpu.device.queue;
    for (let off = 0; off < bytes.length; off += STAGING_BYTES) {
      let chunk = bytes.subarray(off, Math.min(off + STAGING_BYTES, bytes.length));
      if (chunk.length % 4 !== 0) {
        const padded = new Uint8Array(roundUp(chunk.length, 4));
        padded.set(chunk);
        chunk = padded;
      } else if (chunk.buffer instanceof SharedArrayBuffer) {
        chunk = chunk.slice(); // dawn.node cannot read SharedArrayBuffer-backed views
      }
      queue.writeBuffer(this.buffer, this.byteOffset + byteOffset + off, chunk);
    }
  }

  /** Reads the tensor back: f32 -> Float32Array, f16/bf16 -> Uint16Array (bits), u32/i32, packed -> Uint8Array. */
  async toHost(): Promise<HostArray> {
    this.assertAlive();
    const out = new Uint8Array(roundUp(this.byteSize, 4));
    const gpu = this.gpu;
    const stagingSize = Math.min(STAGING_BYTES, out.length);
    const staging = gpu.createBuffer(`${this.label}.staging`, Math.max(stagingSize, 4), MAP_READ | COPY_DST);
    const what = `reading back ${this.label}`;
    try {
      for (let off = 0; off < out.length; off += stagingSize) {
        const n = Math.min(stagingSize, out.length - off);
        const enc = gpu.device.createCommandEncoder({ label: `${this.label}.readback` });
        enc.copyBufferToBuffer(this.buffer, this.byteOffset + off, staging, 0, n);
        gpu.device.queue.submit([enc.finish()]);
        await gpu.wait(staging.mapAsync(MAP_READ, 0, n), what);
        out.set(new Uint8Array(staging.getMappedRange(0, n)), off);
        staging.unmap();
      }
      await gpu.sync();
    } catch (e) {
      // device lost mid-readback: mapAsync/getMappedRange throw DOMExceptions -> DeviceLostError
      throw await gpu.deviceError(e, what);
    } finally {
      gpu.releaseBuffer(staging);
    }
    const buf = out.buffer;
    switch (this.dtype) {
      case "f32": return new Float32Array(buf, 0, this.numel);
      case "f16":
      case "bf16": return new Uint16Array(buf, 0, this.numel);
      case "u32": return new Uint32Array(buf, 0, this.numel);
      case "i32": return new Int32Array(buf, 0, this.numel);
      case "packed": return new Uint8Array(buf, 0, this.byteSize);
    }
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.owns) this.gpu.releaseBuffer(this.buffer);
  }
  [Symbol.dispose](): void {
    this.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

function payloadBytes(shape: readonly number[], dtype: DType, label: string): number {
  if (dtype === "packed") throw new TensorError(label, "a packed tensor needs an explicit byte size");
  checkShape(shape, label);
  return shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
}

function checkShape(shape: readonly number[], label: string): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new TensorError(label, `bad shape [${shape.join(", ")}]`);
  }
}

export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
