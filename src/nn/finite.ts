// nn/finite.ts — NaN/±Inf checks on the GPU (shaders/common/finite.wgsl): one flag reduction per
// tensor, windowed like every kernel (tensors larger than one storage binding), f32, f16 or bf16.
// A check only reads the tensor. Its result is 16 bytes per tensor: the count of non-finite
// values, the index of the first and which kinds occur.
//
//   await assertFinite(ctx, logits, "logits");              // runs alone: one submit, one readback
//
//   const checks = new FiniteChecks(ctx, { slots: n });      // many tensors, one readback
//   await checks.record(batch, t, "model.norm.weight");      // recorded into the caller's batch
//   batch.submit();
//   for (const f of await checks.read()) ...                 // the tensors that hold NaN/Inf

import { NonFiniteError, TensorError, type WgqError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor, type DType } from "../gpu/tensor.ts";

const FILE = "common/finite.wgsl";
const WG = 256;
const DTYPE_CODE: Partial<Record<DType, number>> = { f32: 0, f16: 1, bf16: 2 };
/**
 * Workgroups a check aims at: an invocation scans ceil(words / (WG * groups)) words, so a large
 * tensor gets a few thousand workgroups on a GPU (enough to fill it) and a few dozen on a CPU
 * adapter (lavapipe pays per workgroup; 64 ran 2x faster than 2048 there), a small one one word
 * per invocation.
 */
const GROUPS = { gpu: 4096, cpu: 64 };
/** Result slots per page unless the caller asks for more. */
const DEFAULT_SLOTS = 64;
const NONE = 0xffffffff;

export type NonFiniteKind = "NaN" | "+Inf" | "-Inf";

/** What a check found in one tensor. */
export interface NonFinite {
  /** Non-finite elements. */
  count: number;
  /** Flat index of the first one. */
  first: number;
  kinds: NonFiniteKind[];
}

/** A tensor that failed a check: the tag given to record(), the tensor's label and shape, what was found. */
export interface FiniteFailure<Tag> {
  tag: Tag;
  label: string;
  shape: readonly number[];
  bad: NonFinite;
}

/**
 * A set of checks whose results come back together: record() adds one tensor's dispatches to a
 * batch (one per binding window) and takes one result slot; read() reads every slot back (one
 * readback per page of slots) and lists the tensors with NaN/Inf. Slots live in pages of
 * `slots` entries; more pages are added as needed. reset() clears the results for reuse.
 */
export class FiniteChecks<Tag = string> {
  readonly #ctx: GpuContext;
  readonly #slots: number;
  readonly #label: string;
  readonly #pages: GpuTensor[] = [];
  #entries: { tag: Tag; label: string; shape: readonly number[] }[] = [];

  readonly #per: number | undefined;

  /**
   * `slots`: checks per result page; `wordsPerInvocation`: fixes the 32-bit words each invocation
   * scans (default: chosen from the tensor's size; 1 gives the most workgroups).
   */
  constructor(ctx: GpuContext, opts: { slots?: number; label?: string; wordsPerInvocation?: number } = {}) {
    this.#ctx = ctx;
    this.#per = opts.wordsPerInvocation;
    this.#slots = Math.max(1, opts.slots ?? DEFAULT_SLOTS);
    this.#label = opts.label ?? "finite";
  }

  /** Tensors recorded since the last reset(). */
  get size(): number {
    return this.#entries.length;
  }

  /** Allocates the result pages for `checks` checks now (else on first use). */
  reserve(checks = this.#slots): this {
    while (this.#pages.length * this.#slots < checks) this.#addPage();
    return this;
  }

  /** Records the check of `t` (f32, f16 or bf16) into `batch`, tagged `tag`. */
  async record(batch: CommandBatch, t: GpuTensor, tag: Tag): Promise<void> {
    const code = DTYPE_CODE[t.dtype];
    if (code === undefined) throw new TensorError(t.label, `finiteness check needs f32, f16 or bf16 values, got ${t.dtype}`);
    const n = t.numel;
    if (n >= NONE) throw new TensorError(t.label, `finiteness check indexes elements with u32; ${n} elements are too many`);
    const index = this.#entries.length;
    const pageIndex = Math.floor(index / this.#slots);
    const slot = index % this.#slots;
    while (this.#pages.length <= pageIndex) this.#addPage();
    this.#entries.push({ tag, label: t.label, shape: [...t.shape] });
    if (n === 0) return;
    const k = await this.#ctx.kernels.get(FILE, "main", { WG_SIZE: WG, DTYPE: code });
    const bytes = t.dtype === "f32" ? 4 : 2;
    const flat = t.view(`${t.label}.flat`, [n], 0);
    const result = this.#pages[pageIndex];
    for (const w of flat.rowWindows({ rowBytes: bytes })) {
      const words = Math.ceil((w.rows * bytes) / 4);
      const per = Math.max(1, Math.floor(this.#per ?? Math.ceil(words / (WG * GROUPS[this.#ctx.gpu.adapterInfo.kind]))));
      batch.dispatch(
        k,
        { x: { tensor: t, byteOffset: w.byteOffset, byteSize: w.byteSize }, result },
        { n: w.rows, base: w.firstRow, slot, per },
        k.grid1d(Math.ceil(words / (WG * per))),
      );
    }
  }

  /** Reads the results of every recorded check (after the batches were submitted): the failures, in record order. */
  async read(): Promise<FiniteFailure<Tag>[]> {
    const out: FiniteFailure<Tag>[] = [];
    const used = Math.ceil(this.#entries.length / this.#slots);
    for (let p = 0; p < used; p++) {
      const r = (await this.#pages[p].toHost()) as Uint32Array;
      for (let s = 0; s < this.#slots; s++) {
        const e = this.#entries[p * this.#slots + s];
        if (!e || r[s * 4] === 0) continue;
        out.push({ ...e, bad: { count: r[s * 4], first: r[s * 4 + 1], kinds: kindNames(r[s * 4 + 2]) } });
      }
    }
    return out;
  }

  /** Forgets the recorded checks and clears their results (queue-ordered before later submits). */
  reset(): void {
    const used = Math.ceil(this.#entries.length / this.#slots);
    for (let p = 0; p < used; p++) this.#pages[p].write(initWords(this.#slots));
    this.#entries = [];
  }

  #addPage(): void {
    this.#pages.push(GpuTensor.fromHost(this.#ctx.gpu, initWords(this.#slots), [this.#slots * 4], "u32", `${this.#label}.result${this.#pages.length}`));
  }

  destroy(): void {
    for (const p of this.#pages) p.destroy();
    this.#pages.length = 0;
    this.#entries = [];
  }
}

export interface AssertFiniteOptions {
  /**
   * Name of dim 0 for messages: "token position" reports the first bad element as its row
   * ("token position 17, column 5") instead of a multi-index.
   */
  row?: string;
  /** Builds the error from the sentence describing what was found (default NonFiniteError naming `what`). */
  error?: (detail: string, bad: NonFinite) => WgqError;
}

/**
 * Checks `t` on the GPU in a batch of its own and throws when it holds NaN or ±Inf: by default a
 * NonFiniteError (exit code 2) naming `what`, the first bad element and the kinds found.
 */
export async function assertFinite(ctx: GpuContext, t: GpuTensor, what: string, opts: AssertFiniteOptions = {}): Promise<void> {
  const checks = new FiniteChecks(ctx, { slots: 1, label: `${t.label}.finite` });
  try {
    const batch = new CommandBatch(ctx.gpu, `finite ${t.label}`);
    await checks.record(batch, t, what);
    batch.submit();
    const [f] = await checks.read();
    if (f) {
      const detail = describeNonFinite(f.bad, f.shape, opts.row);
      throw opts.error ? opts.error(detail, f.bad) : new NonFiniteError(what, detail);
    }
  } finally {
    checks.destroy();
  }
}

/** assertFinite for activations [T, H]: the message names the first bad row as `row` (a token position). */
export function assertFiniteRows(ctx: GpuContext, t: GpuTensor, what: string, row = "token position"): Promise<void> {
  return assertFinite(ctx, t, what, { row });
}

/** Host reference of the kernel: what `values` (f32, or f16/bf16 bit patterns) hold that is not finite; null when all is finite. */
export function firstNonFinite(values: Float32Array | Uint16Array, dtype: "f32" | "f16" | "bf16" = "f32"): NonFinite | null {
  let count = 0, first = -1, bits = 0;
  if (dtype === "f32") {
    const a = values as Float32Array;
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (v - v === 0) continue; // finite
      count++;
      if (first < 0) first = i;
      bits |= v !== v ? 1 : v > 0 ? 2 : 4;
    }
  } else {
    const [expMask, manMask] = dtype === "f16" ? [0x7c00, 0x03ff] : [0x7f80, 0x007f];
    const a = values as Uint16Array;
    for (let i = 0; i < a.length; i++) {
      const h = a[i];
      if ((h & expMask) !== expMask) continue;
      count++;
      if (first < 0) first = i;
      bits |= h & manMask ? 1 : h & 0x8000 ? 4 : 2;
    }
  }
  return count ? { count, first, kinds: kindNames(bits) } : null;
}

/**
 * One sentence fragment on what a check found: "2 of 4096 values are NaN/+Inf, the first at
 * [3, 17]" — or "…, the first at token position 3 (column 17)" when `row` names dim 0, or
 * whatever `row(row, column)` says when it is a function.
 */
export function describeNonFinite(bad: NonFinite, shape: readonly number[], row?: string | ((row: number, col: number) => string)): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const kinds = bad.kinds.join("/") || "non-finite";
  const what = bad.count === 1 ? `1 of ${numel} values is ${kinds}` : `${bad.count} of ${numel} values are ${kinds}`;
  return `${what}, the first at ${position(bad.first, shape, row)}`;
}

/** Row (dim 0) and column of flat index `i` in `shape`. */
export function rowOf(i: number, shape: readonly number[]): { row: number; col: number } {
  const cols = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  return { row: Math.floor(i / Math.max(cols, 1)), col: i % Math.max(cols, 1) };
}

function position(i: number, shape: readonly number[], row?: string | ((row: number, col: number) => string)): string {
  if (row) {
    const r = rowOf(i, shape);
    if (typeof row === "function") return row(r.row, r.col);
    return shape.length > 1 ? `${row} ${r.row} (column ${r.col})` : `${row} ${r.row}`;
  }
  if (shape.length <= 1) return `index ${i}`;
  const idx: number[] = [];
  let rest = i;
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(rest % shape[d]);
    rest = Math.floor(rest / shape[d]);
  }
  return `[${idx.join(", ")}]`;
}

function kindNames(bits: number): NonFiniteKind[] {
  const out: NonFiniteKind[] = [];
  if (bits & 1) out.push("NaN");
  if (bits & 2) out.push("+Inf");
  if (bits & 4) out.push("-Inf");
  return out;
}

function initWords(slots: number): Uint32Array {
  const w = new Uint32Array(slots * 4);
  for (let s = 0; s < slots; s++) w[s * 4 + 1] = NONE;
  return w;
}
