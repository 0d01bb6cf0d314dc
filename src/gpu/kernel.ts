// gpu/kernel.ts — from a .wgsl file to a pipeline: load the text and expand it (includes and
// parameters, gpu/preprocess.ts), reflect the expansion, build an explicit bind group layout from the
// reflected bindings, resolve override constants, compile inside error scopes, and cache the pipeline
// by (file, entry point, constants, parameters).
//
// Usage:
//   const kernels = new KernelRegistry(gpu, nodeShaderSource);   // or any (file) => text
//   const k = await kernels.get("nn/matmul.wgsl", "main", { W_F16: 1 });
//   const h = await kernels.get("quant/matmul_q.wgsl", "main", { BITS: 4 }, { X_TYPE: "f16" });
//   batch.dispatch(k, { x, w, y }, { M, N, K, n0, nw }, k.grid(N / 4, M / 4));

import { BindingError, ShaderError, UsageError } from "../errors.ts";
import type { Gpu } from "./device.ts";
import { definesKey, describeLine, preprocess, type Defines } from "./preprocess.ts";
import { packParams, reflectShader, type BindingInfo, type EntryInfo, type ShaderInfo } from "./reflect.ts";

export type Constants = Record<string, number | boolean>;
export type { Defines } from "./preprocess.ts";

/** Loads the text of a shader file relative to the shader root ("nn/matmul.wgsl"); `#include`s are
 * read through it too. In Node the default reads shaders/ (src/gpu/shader_source.ts); in a browser
 * pass the texts from your bundle (included files as well). */
export type ShaderSource = (file: string) => string;

/** One compiled entry point with fixed constants. */
export class Kernel {
  constructor(
    readonly label: string,
    readonly file: string,
    readonly entry: EntryInfo,
    readonly constants: Readonly<Constants>,
    /** Resolved workgroup size (overrides substituted). */
    readonly workgroupSize: readonly [number, number, number],
    readonly layout: GPUBindGroupLayout,
    readonly pipeline: GPUComputePipeline,
    readonly maxWorkgroupsPerDim: number,
    /** Parameter values the file was expanded with (request values only). */
    readonly defines: Readonly<Defines> = {},
  ) {}

  /** Binding names in binding order (the names the WGSL declares), uniform included. */
  get bindingNames(): string[] {
    return this.entry.bindings.map((b) => b.name);
  }
  /** Storage binding names: the keys dispatch() expects (the uniform is filled from params). */
  get storageNames(): string[] {
    return this.entry.bindings.filter((b) => b.kind !== "uniform").map((b) => b.name);
  }

  /**
   * Workgroup counts covering `threads` invocations per dimension: ceil(threads / workgroupSize).
   * Throws when a count exceeds maxComputeWorkgroupsPerDimension.
   */
  grid(x: number, y = 1, z = 1): [number, number, number] {
    const g: [number, number, number] = [
      Math.ceil(x / this.workgroupSize[0]),
      Math.ceil(y / this.workgroupSize[1]),
      Math.ceil(z / this.workgroupSize[2]),
    ];
    for (const n of g) {
      if (n > this.maxWorkgroupsPerDim) {
        throw new UsageError(`kernel ${this.label}: grid [${g}] exceeds maxComputeWorkgroupsPerDimension (${this.maxWorkgroupsPerDim})`, "split the work into windows or fold the grid (grid1d, grid2d)");
      }
    }
    return g;
  }

  /**
   * A 1-D count of `groups` workgroups folded into (x, y) so each dimension stays within the limit;
   * the shader recovers the linear workgroup index as wid.y * num_workgroups.x + wid.x.
   */
  grid1d(groups: number): [number, number, number] {
    const max = this.maxWorkgroupsPerDim;
    if (groups <= max) return [Math.max(groups, 1), 1, 1];
    const y = Math.ceil(groups / max);
    if (y > max) throw new UsageError(`kernel ${this.label}: ${groups} workgroups is too many for one dispatch`);
    return [Math.ceil(groups / y), y, 1];
  }

  /**
   * Workgroup counts covering `x` by `y` invocations like grid(x, y), with the y workgroups (rows:
   * tokens, unbounded) folded into (y, z) as grid1d folds a 1-D count; the shader recovers the row
   * workgroup as wid.z * num_workgroups.y + wid.y and skips rows past its count. x must fit one dimension.
   */
  grid2d(x: number, y: number): [number, number, number] {
    const gx = Math.ceil(x / this.workgroupSize[0]);
    if (gx > this.maxWorkgroupsPerDim) {
      throw new UsageError(`kernel ${this.label}: ${gx} workgroups along x exceed maxComputeWorkgroupsPerDimension (${this.maxWorkgroupsPerDim})`, "split the work into windows");
    }
    const [gy, gz] = this.grid1d(Math.ceil(y / this.workgroupSize[1]));
    return [gx, gy, gz];
  }

  /** Checks a bindings object against the WGSL names; a missing or extra name throws BindingError. */
  checkBindings(names: Iterable<string>): void {
    const expected = this.storageNames;
    const got = new Set(names);
    const missing = expected.filter((n) => !got.has(n));
    const extra = [...got].filter((n) => !expected.includes(n));
    if (missing.length || extra.length) {
      const parts = [];
      if (missing.length) parts.push(`missing binding(s) ${missing.join(", ")}`);
      if (extra.length) parts.push(`unknown binding(s) ${extra.join(", ")}`);
      throw new BindingError(this.label, parts.join("; "), expected);
    }
  }

  /** Packs uniform params from the reflected struct (null when the entry has no uniform). */
  packParams(values: Record<string, number | readonly number[]> | undefined): Uint8Array | null {
    const p = this.entry.params;
    if (!p) {
      if (values && Object.keys(values).length) {
        throw new BindingError(this.label, "params given but the entry point declares no uniform", this.storageNames);
      }
      return null;
    }
    return packParams(this.label, p, values ?? {});
  }
}

/** Loads, expands, reflects and compiles shaders; caches reflection per (file, parameters) and
 * pipelines per variant. */
export class KernelRegistry {
  readonly #gpu: Gpu;
  readonly #source: ShaderSource;
  readonly #infos = new Map<string, ShaderInfo>();
  readonly #kernels = new Map<string, Promise<Kernel>>();

  constructor(gpu: Gpu, source: ShaderSource) {
    this.#gpu = gpu;
    this.#source = source;
  }

  /** Reflection of a file's expansion with parameter values `defines` (cached). */
  info(file: string, defines: Defines = {}): ShaderInfo {
    const key = `${file}#${definesKey(defines)}`;
    let info = this.#infos.get(key);
    if (!info) {
      const expansion = preprocess(file, this.#source, defines);
      info = { ...reflectShader(file, expansion.code, (line) => describeLine(expansion, line)), expansion };
      this.#infos.set(key, info);
    }
    return info;
  }

  /** The pipeline for (file, entry, constants, parameters), compiled once. */
  get(file: string, entry = "main", constants: Constants = {}, defines: Defines = {}): Promise<Kernel> {
    const key = `${file}#${entry}#${Object.entries(constants).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${Number(v)}`).join(",")}#${definesKey(defines)}`;
    let k = this.#kernels.get(key);
    if (!k) {
      k = this.#compile(file, entry, constants, defines);
      this.#kernels.set(key, k);
      k.catch(() => this.#kernels.delete(key));
    }
    return k;
  }

  async #compile(file: string, entryName: string, constants: Constants, defines: Defines): Promise<Kernel> {
    const info = this.info(file, defines);
    const entry = info.entries.get(entryName);
    if (!entry) throw new ShaderError(file, `no @compute entry point '${entryName}' (has: ${[...info.entries.keys()].join(", ") || "none"})`);
    const overrideNames = info.overrides.map((o) => o.name);
    for (const name of Object.keys(constants)) {
      if (!overrideNames.includes(name)) {
        throw new ShaderError(file, `constant '${name}' is not an override (overrides: ${overrideNames.join(", ") || "none"})`);
      }
    }
    const wg = entry.workgroupSize.map((v) => {
      if (typeof v === "number") return v;
      if (v in constants) return Number(constants[v]);
      throw new ShaderError(file, `workgroup size uses '${v}', which has no value; pass it in constants`);
    }) as [number, number, number];
    const suffix = Object.entries(constants).map(([k, v]) => `${k}=${Number(v)}`).join(",");
    const variant = definesKey(defines);
    const label = `${file.replace(/\.wgsl$/, "")}${variant ? `<${variant}>` : ""}${entryName === "main" ? "" : `:${entryName}`}${suffix ? `[${suffix}]` : ""}`;
    const gpu = this.#gpu;
    const device = gpu.device;

    device.pushErrorScope("validation");
    const module = device.createShaderModule({ label: file, code: info.code });
    const compiled = await module.getCompilationInfo();
    const scopeErr = await device.popErrorScope();
    const errors = compiled.messages.filter((m) => m.type === "error");
    if (errors.length || scopeErr) {
      const expansion = info.expansion;
      const text = errors.length
        ? errors.map((m) => `${expansion ? describeLine(expansion, m.lineNum, m.linePos) : `${file}:${m.lineNum}:${m.linePos}`}: ${m.message}`).join("\n")
        : scopeErr!.message;
      throw new ShaderError(file, `compilation failed:\n${text}`);
    }

    const entries: GPUBindGroupLayoutEntry[] = entry.bindings.map((b: BindingInfo) => ({
      binding: b.binding,
      visibility: 0x4, // GPUShaderStage.COMPUTE
      buffer: { type: b.kind },
    }));
    const constantValues: Record<string, number> = {};
    for (const [k, v] of Object.entries(constants)) constantValues[k] = Number(v);
    let layout: GPUBindGroupLayout;
    let pipeline: GPUComputePipeline;
    try {
      [layout, pipeline] = await gpu.scopedAsync(label, async () => {
        const layout = device.createBindGroupLayout({ label, entries });
        const pipeline = await device.createComputePipelineAsync({
          label,
          layout: device.createPipelineLayout({ label, bindGroupLayouts: [layout] }),
          compute: { module, entryPoint: entryName, constants: constantValues },
        });
        return [layout, pipeline] as const;
      });
    } catch (e) {
      throw new ShaderError(file, `pipeline '${label}' failed: ${(e as Error).message}`);
    }
    return new Kernel(label, file, entry, { ...constants }, wg, layout, pipeline, gpu.limits.maxComputeWorkgroupsPerDimension, { ...defines });
  }
}
