// ptq/quantize.ts — post-training quantization of a Hugging Face Llama-family model into
// webgpu-quant's saved format (src/quant/model_format.ts): every linear of the blocks is
// quantized on the GPU (RTN here; AWQ first rescales and clips, src/ptq/awq.ts), everything
// else is copied. One loop walks the blocks (load -> method.transformBlock -> quantize -> stream
// the packed words to the file -> free); methods plug in through src/ptq/method.ts. The output
// folder appears only when complete.

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { convertF32ToBf16, convertF32ToF16 } from "../nn/convert.ts";
import { InputError, NonFiniteWeightError, TensorError, UsageError } from "../errors.ts";
import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { SafetensorsCheckpoint, SafetensorsWriter, type TensorSpec } from "../io/safetensors.ts";
import { expectedTensors, loadConfig, validateCheckpoint, type LlamaConfig } from "../model/config.ts";
import { checkWeights, destroyBlock, loadBlock, namedWeights, type BlockWeights, type WeightSource } from "../model/llama.ts";
import { AtomicOutput, removeStaleTemps } from "../io/output.ts";
import { groupsPerRow, specName, quantSpec, packedBytes, wordsPerRow, zeroWordsPerRow, type HostPackedWeight, type QuantBits, type QuantSpec } from "../quant/formats.ts";
import { RTN, type QuantMethod } from "./method.ts";
import { checkModelFiles, COPIED_FILES, LAYOUT, packedTensors, type QuantizationConfig } from "../quant/model_format.ts";
import { destroyPacked, downloadPacked } from "../quant/packed.ts";
import { quantizeRtn } from "../quant/rtn.ts";
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
  /** Extra report fields (e.g. the calibration settings). */
  report?: Record<string, unknown>;
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
 * Quantizes `srcDir` into `outDir`, one block at a time: the block's f32 tensors are uploaded,
 * rewritten by `method` on the GPU (AWQ's scaled and clipped weights; RTN: as they are), its
 * linears quantized on the GPU (or packed by the method: QAT's trained linears), and only the
 * packed words read back and streamed into model.safetensors. The host holds one block (and the
 * embedding) at a time.
 */
export async function quantizeModel(
  ctx: GpuContext,
  srcDir: string,
  outDir: string,
  opts: QuantizeOptions,
  method: QuantMethod = RTN,
): Promise<QuantizeReport> {
  const m = method;
  const t0 = performance.now();
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const methodName = m.name;
  if (opts.bits === 16 && methodName !== "rtn") throw new UsageError("--bits 16 is a plain cast; use --method rtn");
  const config = await loadConfig(srcDir);
  const ck = await SafetensorsCheckpoint.open(srcDir);
  let out: AtomicOutput;
  try {
    const srcJson = JSON.parse(await fsp.readFile(path.join(srcDir, "config.json"), "utf8")) as Record<string, unknown>;
    if (srcJson.quantization_config !== undefined && srcJson.quantization_config !== null) {
      throw new InputError(path.join(srcDir, "config.json"), "quantization_config", "the model is already quantized", "quantize the original fp16/bf16/fp32 checkpoint");
    }
    const extra = validateCheckpoint(config, ck.infos(), { config: path.join(srcDir, "config.json"), weights: ck.source }, { floatOnly: true });
    if (extra.length) log(`warning: ${ck.source} holds ${extra.length} tensor(s) that are not part of the model and are not written: ${extra.slice(0, 5).join(", ")}${extra.length > 5 ? ", …" : ""}`);
    await checkModelFiles(srcDir, COPIED_FILES);
    out = await AtomicOutput.create(outDir, "dir", { command: methodName === "qat" ? "qat" : "quantize", force: opts.force, resume: opts.resume, inputs: [srcDir, ...(opts.inputs ?? [])], log });
  } catch (e) {
    await ck.close();
    throw e;
  }
  const seconds: Record<string, number> = {};
  const timed = async <R>(key: string, f: () => Promise<R>): Promise<R> => {
    const ts = performance.now();
    try {
      return await f();
    } finally {
      seconds[key] = (seconds[key] ?? 0) + (performance.now() - ts) / 1000;
    }
  };
  let writer: SafetensorsWriter | null = null;
  try {
    // a killed run's half-written files (the model file) are not part of the progress it left
    if (out.resumed) await removeStaleTemps(out.tmp);
    const read = async (n: string) => (await ck.read(n, "f32")).data as Float32Array;
    if (m.prepare) await timed(methodName, () => m.prepare!(ctx, { config, read, out, resume: !!opts.resume, log }));
    const plan = outputPlan(config, ck, opts, m);
    const metadata = { format: "pt", producer: "webgpu-quant", method: methodName, spec: opts.bits === 16 ? "f16" : specName(quantSpec(opts.bits, 1, 1024, opts.groupSize, opts.sym ?? false)) };
    writer = await SafetensorsWriter.create(out.file("model.safetensors"), plan.flatMap((e) => e.specs), { metadata });
    const w = writer;
    const listing: QuantizeReport["tensors"] = [];
    const modules: string[] = [];
    const total = plan.length;
    let done = 0;
    const written = (name: string) => opts.onTensor?.(++done, total, name);
    const writeTensor = (name: string, data: ArrayBufferView) => timed("write", () => w.write(name, data));
    const emitPacked = async (e: PlannedTensor, p: HostPackedWeight) => {
      const base = e.name.replace(/\.weight$/, "");
      for (const t of packedTensors(base, p)) await writeTensor(t.name, t.data);
      modules.push(base);
      listing.push({ name: base, kind: "quantized", bytes: packedBytes(p).total });
      written(e.name);
    };
    const emitF32 = async (e: PlannedTensor, data: Float32Array) => {
      await writeTensor(e.name, data);
      listing.push({ name: e.name, kind: "f32", bytes: data.byteLength });
      written(e.name);
    };
    /** A linear on the GPU -> packed words on the host (the method's packed weight when it gives one). */
    const quantize = async (e: PlannedTensor, weight: GpuTensor): Promise<HostPackedWeight> => {
      const given = m.packedLinear?.(e.name);
      if (given) return given;
      return timed("quantize", async () => {
        const q = await quantizeRtn(ctx, weight, { bits: opts.bits as QuantBits, groupSize: opts.groupSize, sym: opts.sym });
        try {
          return await downloadPacked(q);
        } finally {
          destroyPacked(q);
        }
      });
    };
    const source = checkpointSource(ck);
    for (let i = 0; i < plan.length;) {
      const layer = plan[i].layer;
      let j = i;
      while (j < plan.length && plan[j].layer === layer) j++;
      const entries = plan.slice(i, j);
      i = j;
      if (opts.bits === 16) {
        for (const e of entries) {
          const bf16 = opts.half === "bf16";
          const bits = await timed("quantize", async () => castHalf(ctx, await read(e.source), e.name, bf16, source));
          await writeTensor(e.name, bits);
          listing.push({ name: e.name, kind: "f16", bytes: bits.byteLength });
          written(e.name);
        }
      } else if (layer === null) {
        // embedding, final norm, LM head: copied, or the head quantized (--quantize-head)
        for (const e of entries) {
          const data = await read(e.source);
          const weight = GpuTensor.fromHost(ctx.gpu, data, e.shape, "f32", e.name);
          try {
            await checkWeights(ctx, source, [[e.source, weight]]);
            if (e.quantize) await emitPacked(e, await quantize(e, weight));
            else await emitF32(e, data);
          } finally {
            weight.destroy();
          }
        }
      } else {
        // one block: uploaded, transformed by the method, quantized, streamed out, freed
        const block = await loadBlock(ctx, config, source, layer, "f32");
        try {
          await checkWeights(ctx, source, [...namedWeights([], block)]);
          if (m.transformBlock) await timed(methodName, () => m.transformBlock!(ctx, layer, block));
          const onGpu = blockTensorsByName(block);
          for (const e of entries) {
            const t = onGpu.get(e.name);
            if (!t) throw new TensorError(e.name, "is not a tensor of its block");
            if (e.quantize) await emitPacked(e, await quantize(e, t));
            else await emitF32(e, (await t.toHost()) as Float32Array);
          }
        } finally {
          destroyBlock(block);
        }
      }
    }
    await w.close();
    writer = null;
    const srcConfig = JSON.parse(await fsp.readFile(path.join(srcDir, "config.json"), "utf8"));
    if (opts.bits !== 16) {
      const spec = quantSpec(opts.bits, 1, 1024, opts.groupSize, opts.sym ?? false);
      const qc: QuantizationConfig = {
        quant_method: "webgpu-quant", method: methodName, bits: opts.bits, group_size: opts.bits === 8 ? null : spec.G,
        sym: opts.bits === 8 ? true : opts.sym ?? false, layout: LAYOUT, modules, lm_head_quantized: plan.some((e) => e.quantize && e.layer === null),
      };
      srcConfig.quantization_config = qc;
    } else {
      srcConfig.torch_dtype = opts.half === "bf16" ? "bfloat16" : "float16";
    }
    await out.writeJson("config.json", srcConfig);
    await out.copyFiles(srcDir, COPIED_FILES);
    seconds.total = (performance.now() - t0) / 1000;
    const report: QuantizeReport = {
      model: srcDir, out: outDir, method: methodName, bits: opts.bits,
      group_size: opts.bits <= 4 ? (opts.groupSize ?? 128) : null, sym: opts.bits === 8 || !!opts.sym,
      device: ctx.gpu.adapterInfo.description, seconds, gpu_peak_bytes: ctx.gpu.stats.peakBytes,
      bytes_in: ck.sizeOnDisk, bytes_out: (await fsp.stat(out.file("model.safetensors"))).size,
      tensors: listing, ...opts.report, ...m.report?.(),
    };
    await out.writeJson("report.json", report);
    await fsp.writeFile(out.file("report.html"), reportHtml(report));
    await out.commit();
    return report;
  } catch (e) {
    await writer?.abort();
    if (out.hasProgress()) {
      out.keep();
      log(`the progress of this run is kept in ${out.tmp}: rerun the same command with --resume to continue`);
    } else {
      await out.abort();
    }
    throw e;
  } finally {
    m.dispose?.();
    await ck.close();
  }
}

/** One tensor of the checkpoint as it goes into the output: the tensors it is saved as, in file order. */
interface PlannedTensor {
  /** Name in the output (a quantized linear's `.weight` name; its tensors are `.qweight` etc.). */
  name: string;
  /** Name in the checkpoint (a tied head quantized separately reads the embedding). */
  source: string;
  shape: number[];
  /** The block it belongs to, or null (embedding, final norm, head). */
  layer: number | null;
  quantize: boolean;
  specs: TensorSpec[];
}

/** Every output tensor in file order (the checkpoint's order of expectedTensors), with its saved specs. */
function outputPlan(config: LlamaConfig, ck: SafetensorsCheckpoint, opts: QuantizeOptions, method: QuantMethod): PlannedTensor[] {
  const names = expectedTensors(config).filter((t) => ck.has(t.name)).map((t) => t.name);
  const quantizeHead = !!opts.quantizeHead && opts.bits !== 16;
  if (quantizeHead && !names.includes("lm_head.weight")) names.push("lm_head.weight"); // tied: quantize a copy of the embedding
  return names.map((name) => {
    const source = name === "lm_head.weight" && !ck.has(name) ? "model.embed_tokens.weight" : name;
    const shape = [...ck.info(source).shape];
    const m = /^model\.layers\.(\d+)\./.exec(name);
    const layer = m ? Number(m[1]) : null;
    const quantize = opts.bits !== 16 && (isBlockLinear(name) || (quantizeHead && name === "lm_head.weight"));
    let specs: TensorSpec[];
    if (opts.bits === 16) {
      specs = [{ name, dtype: opts.half === "bf16" ? "BF16" : "F16", shape }];
    } else if (quantize) {
      const given = method.packedLinear?.(name);
      if (given && (given.N !== shape[0] || given.K !== shape[1])) throw new TensorError(name, `packed weight is [${given.N}, ${given.K}], the checkpoint's is [${shape}]`);
      const spec = given ?? quantSpec(opts.bits, shape[0], shape[1], opts.groupSize, opts.sym ?? false);
      specs = packedSpecs(name.replace(/\.weight$/, ""), spec, given ? given.zeros !== null : !spec.sym);
    } else {
      specs = [{ name, dtype: "F32", shape }];
    }
    return { name, source, shape, layer, quantize, specs };
  });
}

/** The specs of packedTensors(base, p) for a weight of `spec`. */
function packedSpecs(base: string, spec: QuantSpec, zeros: boolean): TensorSpec[] {
  const out: TensorSpec[] = [
    { name: `${base}.qweight`, dtype: "I32", shape: [spec.N, wordsPerRow(spec)] },
    { name: `${base}.scales`, dtype: "F16", shape: [spec.N, groupsPerRow(spec)] },
  ];
  if (zeros) out.push({ name: `${base}.qzeros`, dtype: "I32", shape: [spec.N, zeroWordsPerRow(spec)] });
  return out;
}

/** The checkpoint as loadBlock's weight source (f32, nothing packed). */
function checkpointSource(ck: SafetensorsCheckpoint): WeightSource {
  return {
    has: (n) => ck.has(n),
    readF32: async (n) => (await ck.read(n, "f32")).data as Float32Array,
    fileOf: (n) => ck.files.find((f) => f.tensors.has(n))?.path ?? ck.source,
  };
}

/** A block's GPU tensors by Hugging Face name. */
function blockTensorsByName(b: BlockWeights): Map<string, GpuTensor> {
  const out = new Map<string, GpuTensor>([[b.inputNorm.label, b.inputNorm], [b.postNorm.label, b.postNorm]]);
  for (const li of Object.values(b.lin)) {
    if (li.kind !== "dense") throw new TensorError(li.name, "is packed already; the quantizer needs its f32 weight");
    out.set(`${li.name}.weight`, li.w);
    if (li.bias) out.set(`${li.name}.bias`, li.bias);
  }
  return out;
}

/**
 * f32 -> f16 or bf16 bits on the GPU (shaders/common/convert.wgsl). The source is checked for
 * NaN/Inf and the result for overflow (a finite f32 beyond ±65504 becomes ±Inf in f16) on the GPU,
 * in the same submit: NonFiniteWeightError naming the file and tensor.
 */
async function castHalf(ctx: GpuContext, data: Float32Array, name: string, bf16: boolean, source: WeightSource): Promise<Uint16Array> {
  const src = GpuTensor.fromHost(ctx.gpu, data, [data.length], "f32", name);
  const dst = GpuTensor.empty(ctx.gpu, [data.length], bf16 ? "bf16" : "f16", `${name}.half`);
  try {
    await checkWeights(ctx, source, [[name, src]]);
    const b = new CommandBatch(ctx.gpu, `cast ${name}`);
    await (bf16 ? convertF32ToBf16 : convertF32ToF16)(ctx, b, src, dst);
    b.submit();
    try {
      await checkWeights(ctx, source, [[name, dst]]);
    } catch (e) {
      if (!(e instanceof NonFiniteWeightError)) throw e;
      throw new NonFiniteWeightError(source.fileOf?.(name) ?? "in-memory weights", name,
        `a value beyond ±65504 does not fit ${bf16 ? "bf16" : "f16"} (${e.message.replace(/^.*?: /, "")})`,
        "keep this model in f32, or use int8/int4, whose scales absorb the range");
    }
    return ((await dst.toHost()) as Uint16Array).slice();
  } finally {
    src.destroy();
    dst.destroy();
  }
}
