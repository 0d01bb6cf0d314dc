// quant/model_format.ts — webgpu-quant's saved model format, and an atomic folder writer.
//
// A quantized model is a Hugging Face-style folder:
//   config.json              the source config plus a `quantization_config` block (below)
//   tokenizer*.json, generation_config.json, special_tokens_map.json   copied from the source
//   model.safetensors        every tensor; each quantized linear <name> (e.g.
//                            model.layers.0.self_attn.q_proj) is stored as three tensors in the
//                            canonical layout of src/quant/formats.ts:
//                              <name>.qweight  I32 [N, wordsPerRow]  packed codes (bit pattern of the u32 words)
//                              <name>.scales   F16 [N, ng]           scales
//                              <name>.qzeros   I32 [N, zeroWordsPerRow]  zero points (asymmetric int4 only)
//                            everything else (embeddings, norms, lm_head, biases) as F32 (or F16
//                            for --bits 16).
//   report.json              what was done (method, settings, timings, per-layer choices)
//
// quantization_config: { quant_method: "webgpu-quant", method: "rtn" | "awq", bits, group_size,
//   sym, layout: "wgq-packed-v1", modules: [linear names], lm_head_quantized: false }

import { promises as fsp, rmSync } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { InputError, OutputError } from "../errors.ts";
import type { HostTensor } from "../io/safetensors.ts";
import type { SafetensorsCheckpoint } from "../io/safetensors.ts";
import { groupsPerRow, quantSpec, wordsPerRow, zeroWordsPerRow, type HostPackedWeight, type QuantSpec } from "./formats.ts";

export const LAYOUT = "wgq-packed-v1";

export interface QuantizationConfig {
  quant_method: "webgpu-quant";
  method: string;
  bits: number;
  group_size: number | null;
  sym: boolean;
  layout: string;
  modules: string[];
  lm_head_quantized: boolean;
}

const COPIED = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"];

/** Reads `quantization_config` of a config.json object, or null for an unquantized model. */
export function readQuantizationConfig(json: Record<string, unknown>, file: string): QuantizationConfig | null {
  const q = json.quantization_config as Record<string, unknown> | undefined;
  if (!q) return null;
  if (q.quant_method !== "webgpu-quant") {
    throw new InputError(file, "quantization_config.quant_method", `'${String(q.quant_method)}' is not a format webgpu-quant reads`, "quantize the fp checkpoint with 'wgq quantize'");
  }
  if (q.layout !== LAYOUT) throw new InputError(file, "quantization_config.layout", `layout '${String(q.layout)}' is not ${LAYOUT}`);
  for (const k of ["bits", "modules"]) if (q[k] === undefined) throw new InputError(file, `quantization_config.${k}`, "missing");
  return q as unknown as QuantizationConfig;
}

/** Host packed weight -> the three tensors saved for linear `name`. */
export function packedTensors(name: string, p: HostPackedWeight): HostTensor[] {
  const ng = groupsPerRow(p);
  const out: HostTensor[] = [
    { name: `${name}.qweight`, dtype: "I32", shape: [p.N, wordsPerRow(p)], data: new Int32Array(p.qweight.buffer, p.qweight.byteOffset, p.N * wordsPerRow(p)) },
    { name: `${name}.scales`, dtype: "F16", shape: [p.N, ng], data: new Uint16Array(p.scales.buffer, p.scales.byteOffset, p.N * ng) },
  ];
  if (p.zeros) out.push({ name: `${name}.qzeros`, dtype: "I32", shape: [p.N, zeroWordsPerRow(p)], data: new Int32Array(p.zeros.buffer, p.zeros.byteOffset, p.N * zeroWordsPerRow(p)) });
  return out;
}

/** Reads the packed weight of linear `name` (shape [N, K]) saved by packedTensors. */
export async function readPacked(ck: SafetensorsCheckpoint, name: string, qc: QuantizationConfig, N: number, K: number): Promise<HostPackedWeight> {
  const spec: QuantSpec = quantSpec(qc.bits, N, K, qc.group_size ?? undefined, qc.sym);
  const expect = (n: string, shape: number[]) => {
    const info = ck.info(n);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new InputError(info.file, n, `shape [${info.shape}] but [${shape}] expected for ${spec.bits}-bit group ${spec.G}`);
    }
  };
  const ng = groupsPerRow(spec);
  expect(`${name}.qweight`, [N, wordsPerRow(spec)]);
  expect(`${name}.scales`, [N, ng]);
  const qw = (await ck.read(`${name}.qweight`, "raw")).data;
  const sc = (await ck.read(`${name}.scales`, "raw")).data as Uint16Array;
  const scales = new Uint32Array(Math.ceil(sc.length / 2));
  new Uint16Array(scales.buffer).set(sc);
  let zeros: Uint32Array | null = null;
  if (!spec.sym && spec.bits !== 8) {
    expect(`${name}.qzeros`, [N, zeroWordsPerRow(spec)]);
    const z = (await ck.read(`${name}.qzeros`, "raw")).data;
    zeros = new Uint32Array(z.buffer, z.byteOffset, z.byteLength / 4).slice();
  }
  return { ...spec, qweight: new Uint32Array(qw.buffer, qw.byteOffset, qw.byteLength / 4).slice(), scales, zeros };
}

/** Folders being written now: removed if the process is interrupted (Ctrl-C, SIGTERM). */
const live = new Set<AtomicDir>();
let handlersInstalled = false;

function installInterruptCleanup(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      for (const d of live) {
        rmSync(d.tmp, { recursive: true, force: true });
        process.stderr.write(`\ninterrupted: ${d.dest} was not written (no partial output left behind)\n`);
      }
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }
}

/**
 * An output folder written atomically: files go to a hidden sibling folder, which is renamed onto
 * `dest` by commit(). abort() (or a crash) leaves no partial `dest`. An existing `dest` is an
 * error unless `overwrite`, and `dest` may never be one of `inputs`.
 */
export class AtomicDir {
  private constructor(readonly dest: string, readonly tmp: string, readonly overwrite: boolean) {}

  static async create(dest: string, opts: { overwrite?: boolean; inputs?: readonly string[] } = {}): Promise<AtomicDir> {
    const abs = path.resolve(dest);
    for (const i of opts.inputs ?? []) {
      if (path.resolve(i) === abs) throw new OutputError(dest, "is the input model", "choose another --out folder");
    }
    const exists = await fsp.stat(abs).then(() => true, () => false);
    if (exists && !opts.overwrite) throw new OutputError(dest, "already exists", "choose another --out folder, or pass --force to replace it");
    const parent = path.dirname(abs);
    await fsp.mkdir(parent, { recursive: true }).catch((e) => {
      throw new OutputError(dest, `cannot create ${parent} (${(e as NodeJS.ErrnoException).code})`);
    });
    const tmp = path.join(parent, `.${path.basename(abs)}.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
    await fsp.mkdir(tmp);
    const d = new AtomicDir(abs, tmp, !!opts.overwrite);
    installInterruptCleanup();
    live.add(d);
    return d;
  }

  /** Path of `name` inside the temporary folder. */
  file(name: string): string {
    return path.join(this.tmp, name);
  }

  async writeJson(name: string, v: unknown): Promise<void> {
    await fsp.writeFile(this.file(name), JSON.stringify(v, null, 2) + "\n");
  }

  /** Copies the tokenizer and generation files of a source model folder (those present). */
  async copyModelFiles(srcDir: string): Promise<void> {
    for (const f of COPIED) {
      await fsp.copyFile(path.join(srcDir, f), this.file(f)).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      });
    }
  }

  async commit(): Promise<void> {
    live.delete(this);
    if (this.overwrite) {
      const old = `${this.tmp}.old`;
      const had = await fsp.rename(this.dest, old).then(() => true, () => false);
      await fsp.rename(this.tmp, this.dest);
      if (had) await fsp.rm(old, { recursive: true, force: true });
    } else {
      await fsp.rename(this.tmp, this.dest);
    }
  }

  async abort(): Promise<void> {
    live.delete(this);
    await fsp.rm(this.tmp, { recursive: true, force: true });
  }
}
