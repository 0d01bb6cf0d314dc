// quant/quantize.ts — post-training quantization of a Hugging Face Llama-family model into
// webgpu-quant's saved format (src/quant/model_format.ts): every linear of the blocks is
// quantized on the GPU (RTN here; AWQ first rescales and clips, src/quant/awq.ts), everything
// else is copied. The output folder appears only when complete.

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { convertF32ToBf16, convertF32ToF16 } from "../common/convert.ts";
import { InputError, TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { SafetensorsCheckpoint, writeSafetensors, type HostTensor } from "../io/safetensors.ts";
import { expectedTensors, loadConfig, validateCheckpoint, type LlamaConfig } from "../model/config.ts";
import { AtomicOutput } from "../io/output.ts";
import { specName, quantSpec, packedBytes, type HostPackedWeight, type QuantBits } from "./formats.ts";
import { checkModelFiles, COPIED_FILES, LAYOUT, packedTensors, type QuantizationConfig } from "./model_format.ts";
import { destroyPacked, downloadPacked, quantizeRtn } from "./rtn.ts";
import { reportHtml } from "./report.ts";

/** Rewrites report.json and report.html of a finished output folder (each file replaced atomically). */
export async function updateReport(dir: string, report: QuantizeReport): Promise<void> {
  for (const [name, text] of [["report.json", JSON.stringify(report, null, 2) + "\n"], ["report.html", reportHtml(report)]]) {
    const tmp = path.join(dir, `.${name}.tmp-${process.pid}`);
    await fsp.writeFile(tmp, text);
    await fsp.rename(tmp, path.join(dir, name));
  }
}

export interface QuantizeOptions {
  method: "rtn" | "awq" | "qat";
  bits: 3 | 4 | 8 | 16;
  /** Quantize the LM head too (a tied head is stored separately; the embedding stays fp). */
  quantizeHead?: boolean;
  /** The 16-bit float of --bits 16: IEEE f16 (default) or bfloat16. */
  half?: "f16" | "bf16";
  groupSize?: number;
  sym?: boolean;
  /** Replace an existing output folder (only one wgq wrote). */
  force?: boolean;
  /** Continue from the progress an interrupted run into the same output saved. */
  resume?: boolean;
  /** Other files this run reads (calibration, evaluation text): the output may never touch them. */
  inputs?: readonly string[];
  /** Where notices go (unexpected tensors, stale partial outputs); default stderr. */
  log?: (line: string) => void;
  /** Progress per tensor: (done, total, name). */
  onTensor?: (done: number, total: number, name: string) => void;
  /** Extra report fields (e.g. AWQ's per-block choices). */
  report?: Record<string, unknown>;
  /** Linears already packed (by weight name, e.g. trained by QAT): written as given, not re-quantized. */
  packed?: Map<string, HostPackedWeight>;
}

export interface QuantizeReport {
  model: string;
  out: string;
  method: string;
  bits: number;
  group_size: number | null;
  sym: boolean;
  device: string;
  seconds: Record<string, number>;
  bytes_in: number;
  bytes_out: number;
  tensors: { name: string; kind: "quantized" | "f16" | "f32"; bytes: number }[];
  [k: string]: unknown;
}

/** Is `name` a linear weight of a block (the tensors quantized)? */
export function isBlockLinear(name: string): boolean {
  return /^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name);
}

/**
 * Quantizes `srcDir` into `outDir`. `transform`, when given, may rewrite the f32 weights first
 * (AWQ's scaled and clipped weights); it returns the host tensors to use instead.
 */
export async function quantizeModel(
  ctx: GpuContext,
  srcDir: string,
  outDir: string,
  opts: QuantizeOptions,
  transform?: (config: LlamaConfig, read: (name: string) => Promise<Float32Array>, out: AtomicOutput) => Promise<Map<string, Float32Array>>,
): Promise<QuantizeReport> {
  const t0 = performance.now();
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  if (opts.bits === 16 && opts.method !== "rtn") throw new UsageError("--bits 16 is a plain cast; use --method rtn");
  const config = await loadConfig(srcDir);
  const ck = await SafetensorsCheckpoint.open(srcDir);
  let out: AtomicOutput;
  try {
    const srcJson = JSON.parse(await fsp.readFile(path.join(srcDir, "config.json"), "utf8")) as Record<string, unknown>;
    if (srcJson.quantization_config !== undefined) {
      throw new InputError(path.join(srcDir, "config.json"), "quantization_config", "the model is already quantized", "quantize the original fp16/bf16/fp32 checkpoint");
    }
    const extra = validateCheckpoint(config, ck.infos(), { config: path.join(srcDir, "config.json"), weights: ck.source }, { floatOnly: true });
    if (extra.length) log(`warning: ${ck.source} holds ${extra.length} tensor(s) that are not part of the model and are not written: ${extra.slice(0, 5).join(", ")}${extra.length > 5 ? ", …" : ""}`);
    await checkModelFiles(srcDir, COPIED_FILES);
    out = await AtomicOutput.create(outDir, "dir", { command: opts.method === "qat" ? "qat" : "quantize", force: opts.force, resume: opts.resume, inputs: [srcDir, ...(opts.inputs ?? [])], log });
  } catch (e) {
    await ck.close();
    throw e;
  }
  const seconds: Record<string, number> = {};
  try {
    const read = async (n: string) => (await ck.read(n, "f32")).data as Float32Array;
    let replaced = new Map<string, Float32Array>();
    if (transform) {
      const ts = performance.now();
      replaced = await transform(config, read, out);
      seconds[opts.method] = (performance.now() - ts) / 1000;
    }
    const names = expectedTensors(config).filter((t) => ck.has(t.name)).map((t) => t.name);
    const quantizeHead = !!opts.quantizeHead && opts.bits !== 16;
    if (quantizeHead && !names.includes("lm_head.weight")) names.push("lm_head.weight"); // tied: quantize a copy of the embedding
    const headSource = (n: string) => (n === "lm_head.weight" && !ck.has(n) ? "model.embed_tokens.weight" : n);
    const tensors: HostTensor[] = [];
    const listing: QuantizeReport["tensors"] = [];
    const modules: string[] = [];
    const tq = performance.now();
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      const data = replaced.get(name) ?? (await read(headSource(name)));
      const shape = ck.info(headSource(name)).shape;
      if (opts.bits === 16) {
        const bf16 = opts.half === "bf16";
        const bits = await castHalf(ctx, data, name, bf16);
        tensors.push({ name, dtype: bf16 ? "BF16" : "F16", shape, data: bits });
        listing.push({ name, kind: "f16", bytes: bits.byteLength });
      } else if (isBlockLinear(name) || (quantizeHead && name === "lm_head.weight")) {
        const base = name.replace(/\.weight$/, "");
        const given = opts.packed?.get(name);
        if (given) {
          if (given.N !== shape[0] || given.K !== shape[1]) throw new TensorError(name, `packed weight is [${given.N}, ${given.K}], the checkpoint's is [${shape}]`);
          tensors.push(...packedTensors(base, given));
          modules.push(base);
          listing.push({ name: base, kind: "quantized", bytes: packedBytes(given).total });
        } else {
          const w = GpuTensor.fromHost(ctx.gpu, data, shape, "f32", name);
          try {
            const q = await quantizeRtn(ctx, w, { bits: opts.bits as QuantBits, groupSize: opts.groupSize, sym: opts.sym });
            const host = await downloadPacked(q);
            destroyPacked(q);
            tensors.push(...packedTensors(base, host));
            modules.push(base);
            listing.push({ name: base, kind: "quantized", bytes: packedBytes(q).total });
          } finally {
            w.destroy();
          }
        }
      } else {
        tensors.push({ name, dtype: "F32", shape, data });
        listing.push({ name, kind: "f32", bytes: data.byteLength });
      }
      opts.onTensor?.(i + 1, names.length, name);
    }
    seconds.quantize = (performance.now() - tq) / 1000;
    const tw = performance.now();
    const srcConfig = JSON.parse(await fsp.readFile(path.join(srcDir, "config.json"), "utf8"));
    if (opts.bits !== 16) {
      const spec = quantSpec(opts.bits, 1, 1024, opts.groupSize, opts.sym ?? false);
      const qc: QuantizationConfig = {
        quant_method: "webgpu-quant", method: opts.method, bits: opts.bits, group_size: opts.bits === 8 ? null : spec.G,
        sym: opts.bits === 8 ? true : opts.sym ?? false, layout: LAYOUT, modules, lm_head_quantized: quantizeHead,
      };
      srcConfig.quantization_config = qc;
    } else {
      srcConfig.torch_dtype = opts.half === "bf16" ? "bfloat16" : "float16";
    }
    await out.writeJson("config.json", srcConfig);
    await out.copyFiles(srcDir, COPIED_FILES);
    await writeSafetensors(out.file("model.safetensors"), tensors, {
      metadata: { format: "pt", producer: "webgpu-quant", method: opts.method, spec: opts.bits === 16 ? "f16" : specName(quantSpec(opts.bits, 1, 1024, opts.groupSize, opts.sym ?? false)) },
    });
    seconds.write = (performance.now() - tw) / 1000;
    seconds.total = (performance.now() - t0) / 1000;
    const report: QuantizeReport = {
      model: srcDir, out: outDir, method: opts.method, bits: opts.bits,
      group_size: opts.bits <= 4 ? (opts.groupSize ?? 128) : null, sym: opts.bits === 8 || !!opts.sym,
      device: ctx.gpu.adapterInfo.description, seconds,
      bytes_in: ck.sizeOnDisk, bytes_out: (await fsp.stat(out.file("model.safetensors"))).size,
      tensors: listing, ...opts.report,
    };
    await out.writeJson("report.json", report);
    await fsp.writeFile(out.file("report.html"), reportHtml(report));
    await out.commit();
    return report;
  } catch (e) {
    if (out.hasProgress()) {
      out.keep();
      log(`the progress of this run is kept in ${out.tmp}: rerun the same command with --resume to continue`);
    } else {
      await out.abort();
    }
    throw e;
  } finally {
    await ck.close();
  }
}

/** f32 -> f16 or bf16 bits on the GPU (shaders/common/convert_f32_to_*.wgsl); NaN/Inf/overflow -> TensorError. */
async function castHalf(ctx: GpuContext, data: Float32Array, name: string, bf16: boolean): Promise<Uint16Array> {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]) || (!bf16 && Math.abs(data[i]) > 65504)) {
      throw new TensorError(name, `element ${i} = ${data[i]} is not representable in ${bf16 ? "bf16" : "f16"}`, "fix the checkpoint, keep this model in f32, or use int8/int4, whose scales absorb the range");
    }
  }
  const src = GpuTensor.fromHost(ctx.gpu, data, [data.length], "f32", name);
  const dst = GpuTensor.empty(ctx.gpu, [data.length], bf16 ? "bf16" : "f16", `${name}.half`);
  try {
    const b = new CommandBatch(ctx.gpu, `cast ${name}`);
    await (bf16 ? convertF32ToBf16 : convertF32ToF16)(ctx, b, src, dst);
    b.submit();
    return ((await dst.toHost()) as Uint16Array).slice();
  } finally {
    src.destroy();
    dst.destroy();
  }
}
