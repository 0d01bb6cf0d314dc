// gpu/device.ts — the WebGPU device: adapter choice, limits and features, error capture, and the
// live-byte account of every buffer webgpu-quant creates. It knows buffers and queues, never models.
//
// In Node the device comes from Dawn (npm `webgpu`); in a browser from `navigator.gpu`.
// Environment (Node): WGQ_BACKEND   -> Dawn `backend=` (vulkan, metal, d3d12, opengl, null …)
//                     WGQ_ADAPTER   -> Dawn `adapter=` (a name from 'wgq doctor')
//                     WGQ_DISABLE_FEATURES=shader-f16,subgroups -> do not request these (tests the fallbacks)

import {
  DeviceCapabilityError,
  DeviceError,
  DeviceLostError,
  GpuOutOfMemoryError,
  GpuValidationError,
  NoAdapterError,
  WgqError,
} from "../errors.ts";

/** Optional features requested whenever the adapter has them. */
export const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query"] as const;

/** Limits raised to the adapter's maximum. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
] as const;

export interface OpenDeviceOptions {
  /** Dawn backend (Node only); default from WGQ_BACKEND. */
  backend?: string;
  /** Dawn adapter name (Node only); default from WGQ_ADAPTER. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
  /** Features that must be present (error if the adapter lacks one). */
  requiredFeatures?: GPUFeatureName[];
  /** Optional features not to request even when present. Default from WGQ_DISABLE_FEATURES. */
  disableFeatures?: string[];
}

export interface MemoryStats {
  /** Bytes of GPU buffers currently alive (created through Gpu.createBuffer, not yet released). */
  liveBytes: number;
  liveBuffers: number;
  peakBytes: number;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** "cpu" for software adapters (lavapipe, SwiftShader), else "gpu". */
  kind: "cpu" | "gpu";
  /** Backend Dawn uses (WGQ_BACKEND, or the platform's default), "browser" in a browser. */
  backend: string;
  subgroupMinSize: number;
  subgroupMaxSize: number;
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** How long a failed WebGPU call waits for device.lost to report why (Gpu.deviceError). */
const LOST_GRACE_MS = 250;

/** Bounds of one sleep between polls while a CPU adapter works (Gpu.wait). */
const NAP_MIN_MS = 0.05;
const NAP_MAX_MS = 8;

/** One WebGPU device with its adapter facts. Create with openDevice(); destroy() when done. */
export class Gpu {
  readonly stats: MemoryStats = { liveBytes: 0, liveBuffers: 0, peakBytes: 0 };
  /** The first error captured asynchronously (uncaptured error, error scope, device lost). */
  #error: WgqError | null = null;
  #pending: Promise<void>[] = [];
  #destroyed = false;
  #sizes = new WeakMap<GPUBuffer, number>();
  readonly #napWhileWaiting: boolean;
  #waiting = 0;
  #waitStart = 0;
  #napping = false;
  #napCell: Int32Array | null = null; // made on first use: SharedArrayBuffer is Node-only here
  /** How wait() waits: "nap" sleeps between Dawn's polls (CPU adapters in Node), "spin" lets Dawn poll. */
  get waitMode(): "nap" | "spin" {
    return this.#napWhileWaiting ? "nap" : "spin";
  }

  constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: AdapterSummary,
    readonly wgslFeatures: ReadonlySet<string>,
  ) {
    const mode = typeof process === "object" ? process.env.WGQ_WAIT : undefined;
    const node = typeof setImmediate === "function" && typeof SharedArrayBuffer === "function" && !(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu;
    this.#napWhileWaiting = node && (mode === "nap" || (mode !== "spin" && adapterInfo.kind === "cpu"));
    device.lost.then((info) => {
      if (!this.#destroyed) this.#fail(new DeviceLostError(info.reason, info.message));
    });
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      const e = ev.error;
      this.#fail(
        e.constructor?.name === "GPUOutOfMemoryError"
          ? new GpuOutOfMemoryError("uncaptured", e.message)
          : new GpuValidationError("uncaptured", e.message),
      );
    };
  }

  get features(): ReadonlySet<string> {
    return this.device.features as unknown as ReadonlySet<string>;
  }
  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }
  has(feature: string): boolean {
    return this.device.features.has(feature);
  }

  /** Creates a buffer counted in `stats`; OOM/validation errors surface at the next sync(). */
  createBuffer(label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    this.check();
    if (size > this.limits.maxBufferSize) {
      throw new GpuOutOfMemoryError(
        label,
        `${size} bytes exceed this device's maxBufferSize (${this.limits.maxBufferSize})`,
      );
    }
    const buffer = this.scoped(label, () => this.device.createBuffer({ label, size, usage }));
    this.#sizes.set(buffer, size);
    this.stats.liveBytes += size;
    this.stats.liveBuffers++;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
    return buffer;
  }

  /** Destroys a buffer made by createBuffer (idempotent). */
  releaseBuffer(buffer: GPUBuffer): void {
    const size = this.#sizes.get(buffer);
    if (size === undefined) return;
    this.#sizes.delete(buffer);
    this.stats.liveBytes -= size;
    this.stats.liveBuffers--;
    buffer.destroy();
  }

  /**
   * Runs `fn` inside validation + out-of-memory error scopes. An error raised inside becomes a
   * typed error naming `where`, thrown by the next sync() (scopes pop asynchronously).
   */
  scoped<T>(where: string, fn: () => T): T {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    let out: T;
    try {
      out = fn();
    } finally {
      const v = this.device.popErrorScope();
      const m = this.device.popErrorScope();
      this.#pending.push(
        Promise.all([v, m]).then(([ve, me]) => {
          if (me) this.#fail(new GpuOutOfMemoryError(where, me.message));
          if (ve) this.#fail(new GpuValidationError(where, ve.message));
        }),
      );
    }
    return out;
  }

  /** Like scoped(), but waits for the scopes and throws at once. */
  async scopedAsync<T>(where: string, fn: () => T | Promise<T>): Promise<T> {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    let out: T;
    try {
      out = await fn();
    } finally {
      const ve = await this.device.popErrorScope();
      const me = await this.device.popErrorScope();
      if (me) throw new GpuOutOfMemoryError(where, me.message);
      if (ve) throw new GpuValidationError(where, ve.message);
    }
    return out;
  }

  /** Throws the first captured error, if any. */
  check(): void {
    if (this.#error) throw this.#error;
    if (this.#destroyed) throw new DeviceLostError("destroyed", "the device was destroyed");
  }

  /**
   * Awaits a promise of this device (work done, buffer mapped). Dawn's Node bindings poll for its
   * events from the event loop, which then spins a core; on a CPU adapter that core is one the
   * adapter's own threads need, and every poll also enters the driver (AWQ on lavapipe ran 1.4×
   * slower beside the spin, a batch of GEMMs up to 2×). There, and in Node only, the loop sleeps
   * between polls, each sleep an eighth of the time waited so far (0.05 to 8 ms): a wait ends at
   * most 12 % (and 8 ms) late.
   * WGQ_WAIT=spin|nap overrides the choice.
   * A rejection becomes a typed error (deviceError; `what` names the operation in its message).
   */
  wait<T>(p: Promise<T>, what = "a GPU operation"): Promise<T> {
    // A rejection (mapAsync's AbortError/OperationError once the device is lost) becomes a typed error.
    const guarded = p.catch((e: unknown) => this.#rethrow(e, what));
    if (!this.#napWhileWaiting) return guarded;
    if (this.#waiting++ === 0) this.#waitStart = performance.now();
    if (!this.#napping) {
      // one sleeping poll loop serves every wait in flight
      this.#napping = true;
      setImmediate(this.#nap);
    }
    return guarded.finally(() => {
      this.#waiting--;
    });
  }

  /**
   * The typed error for an exception thrown by a WebGPU call of this device (`what` names the
   * call): the device's own captured error when it has one (device lost, a validation error),
   * else DeviceLostError for a DOMException (what WebGPU rejects promises with once the device is
   * gone: mapAsync's AbortError / OperationError), else `e` unchanged.
   */
  async deviceError(e: unknown, what: string): Promise<unknown> {
    if (e instanceof WgqError || !isWebGpuException(e)) return e;
    // device.lost may settle just after the call that failed: give it a moment to say why
    if (!this.#error && !this.#destroyed) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.device.lost, new Promise((r) => (timer = setTimeout(r, LOST_GRACE_MS)))]);
      clearTimeout(timer);
    }
    if (this.#error) return this.#error; // the cause: device lost, or the validation error that broke the call
    if (this.#destroyed) return new DeviceLostError("destroyed", `${what} failed: the device was destroyed`);
    const lost = new DeviceLostError("unknown", `${what} failed (${describeException(e)})`);
    return Object.assign(lost, { cause: e });
  }

  async #rethrow(e: unknown, what: string): Promise<never> {
    throw await this.deviceError(e, what);
  }

  readonly #nap = (): void => {
    if (this.#waiting === 0) {
      this.#napping = false;
      return;
    }
    this.#napCell ??= new Int32Array(new SharedArrayBuffer(4));
    Atomics.wait(this.#napCell, 0, 0, Math.min(NAP_MAX_MS, Math.max(NAP_MIN_MS, (performance.now() - this.#waitStart) / 8)));
    setImmediate(this.#nap);
  };

  /** Waits until all submitted work is done and every pending error scope has resolved; then check(). */
  async sync(): Promise<void> {
    this.check();
    await this.wait(this.device.queue.onSubmittedWorkDone(), "waiting for submitted work");
    while (this.#pending.length) {
      const p = this.#pending;
      this.#pending = [];
      await Promise.all(p);
    }
    this.check();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.device.destroy();
  }

  #fail(e: WgqError): void {
    this.#error ??= e;
  }
}

/** Opens a device with the adapter's largest limits and the wanted features it has. */
export async function openDevice(opts: OpenDeviceOptions = {}): Promise<Gpu> {
  const gpu = await gpuEntry(opts);
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  } catch (e) {
    throw new NoAdapterError(e instanceof Error ? e.message : String(e));
  }
  if (!adapter) throw new NoAdapterError();

  const disabled = new Set(opts.disableFeatures ?? envList("WGQ_DISABLE_FEATURES"));
  const features: GPUFeatureName[] = [];
  for (const f of WANTED_FEATURES) if (adapter.features.has(f) && !disabled.has(f)) features.push(f);
  for (const f of opts.requiredFeatures ?? []) {
    if (!adapter.features.has(f)) {
      throw new DeviceCapabilityError(`the adapter lacks the required feature '${f}'`, {
        hint: "'wgq doctor' lists this adapter's features; choose another with WGQ_ADAPTER",
      });
    }
    if (!features.includes(f)) features.push(f);
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ label: "webgpu-quant", requiredFeatures: features, requiredLimits });
  } catch (e) {
    throw new DeviceCapabilityError(`requestDevice failed: ${e instanceof Error ? e.message : e}`, { cause: e });
  }
  const wgsl = new Set<string>(((gpu as unknown as { wgslLanguageFeatures?: Set<string> }).wgslLanguageFeatures) ?? []);
  return new Gpu(device, summarize(adapter.info, opts.backend ?? process.env.WGQ_BACKEND), wgsl);
}

/** Lists what Dawn/the browser offers without opening a device (for `wgq doctor`). */
export async function probeAdapter(
  opts: OpenDeviceOptions = {},
): Promise<{ adapter: GPUAdapter; info: AdapterSummary; wgslFeatures: Set<string> } | null> {
  const gpu = await gpuEntry(opts);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" }).catch(() => null);
  if (!adapter) return null;
  const wgsl = new Set<string>(((gpu as unknown as { wgslLanguageFeatures?: Set<string> }).wgslLanguageFeatures) ?? []);
  return { adapter, info: summarize(adapter.info, opts.backend ?? process.env.WGQ_BACKEND), wgslFeatures: wgsl };
}

/**
 * An exception WebGPU throws or rejects with: a DOMException (AbortError / OperationError from
 * mapAsync, popErrorScope, createComputePipelineAsync … once the device is lost), or a GPUError /
 * GPUPipelineError object.
 */
export function isWebGpuException(e: unknown): boolean {
  if (typeof DOMException === "function" && e instanceof DOMException) return true;
  const name = (e as { constructor?: { name?: string } } | null)?.constructor?.name ?? "";
  return /^(DOMException|GPU\w*Error)$/.test(name);
}

/**
 * The typed error for an exception that escaped from WebGPU without a Gpu to ask (the CLI's last
 * resort): AbortError / OperationError mean the device was lost (exit 3); any other WebGPU
 * exception is a DeviceError (exit 3) naming it. Null for anything else.
 */
export function webGpuExceptionError(e: unknown): DeviceError | null {
  if (!isWebGpuException(e)) return null;
  const name = (e as { name?: string }).name ?? "";
  if (name === "AbortError" || name === "OperationError") {
    return Object.assign(new DeviceLostError("unknown", `a WebGPU operation failed (${describeException(e)})`), { cause: e });
  }
  return new DeviceError(`WebGPU failed: ${describeException(e)}`, {
    cause: e,
    hint: "the device or its driver refused the work: rerun with --debug, and run 'wgq doctor' to check the device",
  });
}

function describeException(e: unknown): string {
  const x = e as { name?: string; message?: string; constructor?: { name?: string } };
  const name = x.name || x.constructor?.name || "error";
  return x.message ? `${name}: ${x.message}` : `${name}, no message`;
}

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

const entries = new Map<string, GPU>();

async function gpuEntry(opts: OpenDeviceOptions): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  // Dawn rounds timestamp-query values to 2^16 ns unless told not to; benchmarks need them exact.
  const flags: string[] = ["disable-dawn-features=timestamp_quantization"];
  const backend = opts.backend ?? process.env.WGQ_BACKEND;
  const name = opts.adapter ?? process.env.WGQ_ADAPTER;
  if (backend) flags.push(`backend=${backend}`);
  if (name) flags.push(`adapter=${name}`);
  const key = flags.slice(1).join(";");
  let gpu = entries.get(key);
  if (!gpu) {
    const dawn = await import("webgpu");
    Object.assign(globalThis, dawn.globals);
    gpu = dawn.create(flags) as GPU;
    entries.set(key, gpu);
  }
  return gpu;
}

function summarize(info: GPUAdapterInfo, backendFlag?: string): AdapterSummary {
  const inBrowser = !!(globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu && typeof process === "undefined";
  const platformDefault = typeof process === "undefined" ? "browser" : ({ linux: "vulkan", darwin: "metal", win32: "d3d12" } as Record<string, string>)[process.platform] ?? "default";
  const extra = info as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number; isFallbackAdapter?: boolean };
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  const cpu = /llvmpipe|lavapipe|swiftshader|software|warp|\bcpu\b/.test(text);
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    kind: cpu || extra.isFallbackAdapter ? "cpu" : "gpu",
    backend: inBrowser ? "browser" : backendFlag ?? platformDefault,
    subgroupMinSize: extra.subgroupMinSize ?? 0,
    subgroupMaxSize: extra.subgroupMaxSize ?? 0,
  };
}

function envList(name: string): string[] {
  const v = typeof process !== "undefined" ? process.env[name] : undefined;
  return v ? v.split(",").map((s) => s.trim()).filter(Boolean) : [];
}
