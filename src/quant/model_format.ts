// quant/model_format.ts — webgpu-quant's saved model format (written through io/output.ts).
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

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { InputError } from "../errors.ts";
import { TextTokenizer } from "../io/tokenizer.ts";
import { readJsonObject } from "../io/file.ts";
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

/** Files of the source folder copied into an output (those present). */
export const COPIED_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"];

/**
 * Parses the files an output copies from a model folder, so a damaged tokenizer or JSON file is
 * refused before any work instead of being copied: JSON files must parse as objects, tokenizer.json
 * must load as a tokenizer, tokenizer.model must not be empty.
 */
export async function checkModelFiles(srcDir: string, names: readonly string[]): Promise<void> {
  for (const n of names) {
    const file = path.join(srcDir, n);
    const st = await fsp.stat(file).catch(() => null);
    if (!st) continue;
    if (!st.isFile()) throw new InputError(file, undefined, "is not a regular file");
    if (n === "tokenizer.json") {
      await checkTokenizer(srcDir, file);
    } else if (n.endsWith(".json")) {
      await readJsonObject(file, { maxBytes: 1 << 30, maxDepth: 256 });
    } else if (st.size === 0) {
      throw new InputError(file, undefined, "is empty", "download the file again");
    }
  }
}

/** Tokenizer model types of tokenizer.json (Hugging Face tokenizers). */
const TOKENIZER_MODELS = ["BPE", "Unigram", "WordPiece", "WordLevel"];

/**
 * tokenizer.json must name a known model type with a non-empty vocabulary, load as a tokenizer, and
 * produce no id outside config.json's vocab_size (the embedding rows).
 */
async function checkTokenizer(srcDir: string, file: string): Promise<void> {
  const tj = await readJsonObject(file, { maxDepth: 256 });
  const model = (typeof tj === "object" && tj !== null ? tj.model : undefined) as Record<string, unknown> | undefined;
  if (typeof model !== "object" || model === null) throw new InputError(file, "model", "missing or not an object");
  if (!TOKENIZER_MODELS.includes(model.type as string)) {
    throw new InputError(file, "model.type", `${JSON.stringify(model.type)} is not a tokenizer model (${TOKENIZER_MODELS.join(", ")})`, "download the file again");
  }
  const vocab = model.vocab;
  const size = Array.isArray(vocab) ? vocab.length : typeof vocab === "object" && vocab !== null ? Object.keys(vocab).length : 0;
  if (size === 0) throw new InputError(file, "model.vocab", "missing or empty", "download the file again");
  const tok = await TextTokenizer.fromHF(srcDir);
  const cfg = (await readJsonObject(path.join(srcDir, "config.json"))) as { vocab_size?: number };
  if (typeof cfg.vocab_size === "number" && tok.vocabSize > cfg.vocab_size) {
    throw new InputError(file, "model.vocab", `${tok.vocabSize} tokens, more than config.json's vocab_size ${cfg.vocab_size}`,
      "config.json and the tokenizer must come from the same model");
  }
}

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
