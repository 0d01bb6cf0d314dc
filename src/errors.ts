// errors.ts — every error webgpu-quant throws on purpose. A message says what happened; `hint`
// says what to try. The CLI prints `message` and `hint` (no stack unless --debug) and exits with
// `exitCode`: 1 usage, 2 input (bad file/config/tensor), 3 device.

export type ExitCode = 1 | 2 | 3;

export class WgqError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: ExitCode;
  constructor(message: string, opts: { hint?: string; exitCode?: ExitCode; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? 2;
  }
}

// --- usage -------------------------------------------------------------------------------------

/** A caller passed an argument the API or CLI does not accept. */
export class UsageError extends WgqError {
  constructor(message: string, hint?: string) {
    super(message, { hint, exitCode: 1 });
  }
}

// --- device ------------------------------------------------------------------------------------

export class DeviceError extends WgqError {
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, { ...opts, exitCode: 3 });
  }
}

/** Dawn found no WebGPU adapter (no GPU driver and no lavapipe). */
export class NoAdapterError extends DeviceError {
  constructor(detail = "") {
    super(`no WebGPU adapter found${detail ? ` (${detail})` : ""}`, {
      hint:
        "run 'bash scripts/setup' (installs Mesa's lavapipe, a Vulkan driver on the CPU, when there is no GPU), " +
        "or pick another backend/adapter with WGQ_BACKEND / WGQ_ADAPTER; 'wgq doctor' lists what Dawn sees",
    });
  }
}

/** The adapter lacks a feature or limit the caller requires. */
export class DeviceCapabilityError extends DeviceError {}

/** device.lost resolved: the device is gone and every tensor on it is invalid. */
export class DeviceLostError extends DeviceError {
  constructor(readonly reason: string, message: string) {
    super(`WebGPU device lost (${reason}): ${message || "no message"}`, {
      hint:
        reason === "destroyed"
          ? "the device was destroyed by this program; open a new one with openDevice()"
          : "the driver reset the device (often out of memory or a kernel running too long): " +
            "use smaller batches or --streaming, close other GPU programs, and rerun",
    });
  }
}

/** A WebGPU validation error caught by an error scope or the uncaptured-error handler. */
export class GpuValidationError extends DeviceError {
  constructor(readonly where: string, gpuMessage: string) {
    super(`WebGPU validation error in ${where}: ${gpuMessage}`, {
      hint: "this is a bug in how webgpu-quant drives the device; rerun with --debug and report it with 'wgq doctor' output",
    });
  }
}

/** The device ran out of memory while creating a buffer or running work. */
export class GpuOutOfMemoryError extends DeviceError {
  constructor(readonly where: string, gpuMessage: string) {
    super(`out of GPU memory in ${where}: ${gpuMessage}`, {
      hint: "free tensors you no longer need, use smaller batches, or use streaming mode (one block resident at a time)",
    });
  }
}

// --- kernels -----------------------------------------------------------------------------------

/** A .wgsl file is missing, does not parse, or does not compile. */
export class ShaderError extends DeviceError {
  constructor(readonly file: string, detail: string, hint?: string) {
    super(`shader ${file}: ${detail}`, {
      hint: hint ?? "fix the WGSL at the line Dawn names; 'wgq doctor' shows which WGSL features this device has",
    });
  }
}

/** Bindings passed to a kernel do not match the names the WGSL declares. */
export class BindingError extends WgqError {
  constructor(
    readonly kernel: string,
    detail: string,
    readonly expected: readonly string[],
  ) {
    super(`kernel ${kernel}: ${detail}; expected bindings: ${expected.join(", ")}`, { exitCode: 1 });
  }
}

/** Uniform parameters passed to a kernel do not match its WGSL struct. */
export class ParamsError extends WgqError {
  constructor(readonly kernel: string, detail: string, readonly expected: readonly string[]) {
    super(`kernel ${kernel}: ${detail}; expected params: ${expected.join(", ")}`, { exitCode: 1 });
  }
}

// --- tensors -----------------------------------------------------------------------------------

export class TensorError extends WgqError {
  constructor(readonly tensor: string, detail: string, hint?: string) {
    super(`tensor ${tensor}: ${detail}`, { hint, exitCode: 1 });
  }
}

// --- input files (model I/O) -------------------------------------------------------------------

/** A file given as input is missing, unreadable or malformed. `field` names the tensor/key at fault. */
export class InputError extends WgqError {
  constructor(readonly file: string, readonly field: string | undefined, detail: string, hint?: string) {
    super(`${file}${field ? ` [${field}]` : ""}: ${detail}`, { hint, exitCode: 2 });
  }
}

// --- model I/O (io/, model/) ---

/** config.json / GGUF names a model type or architecture webgpu-quant cannot run. */
export class UnsupportedModelError extends InputError {
  constructor(file: string, field: string, value: string, readonly supported: readonly string[]) {
    super(file, field, `unsupported ${field} '${value}'; supported: ${supported.join(", ")}`,
      "convert the model to one of the supported Llama-family architectures, or open an issue naming the model");
  }
}

/** An output path is unusable: it would overwrite an input, or its folder is missing/unwritable. */
export class OutputError extends WgqError {
  constructor(readonly file: string, detail: string, hint?: string) {
    super(`${file}: ${detail}`, { hint, exitCode: 2 });
  }
}

// --- numerics ----------------------------------------------------------------------------------

/**
 * A tensor a run computes (activations, logits, losses) holds NaN or ±Inf. Exit 2: the model given
 * as input produces them (corrupt or overflowing weights), not the device. `what` names where.
 */
export class NonFiniteError extends WgqError {
  constructor(readonly what: string, detail: string, hint?: string) {
    super(`${what}: ${detail}`, {
      hint: hint ??
        "the model overflows or is corrupt: check its weights ('wgq eval' on the original fp checkpoint), " +
        "load it with f32 weights (--weights f32) if it ran in f16, or quantize it again from a good checkpoint",
      exitCode: 2,
    });
  }
}

/** A weight tensor of an input checkpoint holds NaN or ±Inf (checked on the GPU at load). */
export class NonFiniteWeightError extends InputError {
  constructor(file: string, tensor: string, detail: string, hint?: string) {
    super(file, tensor, detail,
      hint ?? "the checkpoint is corrupt or was saved from a diverged run: download or export it again");
  }
}

/** Generation produced no token (the first choice was a stop token). */
export class EmptyGenerationError extends WgqError {
  constructor(detail: string, hint?: string) {
    super(`generation produced no tokens: ${detail}`, {
      hint: hint ?? "try a longer or different prompt, or sample with --temperature 0.8; a model that stops at once on every prompt is broken",
      exitCode: 2,
    });
  }
}
