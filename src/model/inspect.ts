// model/inspect.ts — the data behind `wgq inspect MODEL`: architecture, dims, parameter count, dtype,
// size on disk and the size the model would have at fp16 / int8 / int4 g128 — "15 GB -> 2 GB"
// answered from headers alone (no tensor data is read). MODEL is a Hugging Face folder (config.json +
// safetensors) or a .gguf file. inspectModel() returns a plain object (what --json prints);
// formatSummary() renders it as a text table. The CLI wiring lives in cli/.
//
// Size model (bytes): fp16 = 2/param everywhere. int8 = linears [N, K] at 1 byte/weight + one fp16
// scale per row. int4 g128 = linears at 0.5 byte/weight + per (row, group of 128) an fp16 scale and a
// 4-bit zero (AWQ GEMM layout, 4.156 bits/weight); a ragged last group counts as a whole group.
// Embeddings, lm_head and norms stay fp16 in every estimate.

import { promises as fsp } from "node:fs";
import { InputError, UsageError } from "../errors.ts";
import { GGUFFile, configFromGGUF, hfNameOf } from "../io/gguf.ts";
import { SafetensorsCheckpoint } from "../io/safetensors.ts";
import { LINEAR_ROLES, type LlamaConfig, loadConfig, tensorRole } from "./config.ts";

export interface SizeEstimates {
  /** bytes */
  readonly fp16: number;
  readonly int8: number;
  readonly int4g128: number;
}

export interface ModelSummary {
  readonly path: string;
  readonly format: "safetensors" | "gguf";
  readonly files: number;
  readonly architecture: string;
  readonly modelType: string;
  readonly layers: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly tieWordEmbeddings: boolean;
  readonly ropeTheta: number;
  readonly ropeScaling: string | null;
  /** parameters counted from the tensors present */
  readonly parameters: number;
  /** of which in q/k/v/o/gate/up/down weights (what a quantizer packs) */
  readonly linearParameters: number;
  /** parameters per stored dtype, e.g. { F32: 260032 } */
  readonly dtypes: Readonly<Record<string, number>>;
  /** the dtype holding most parameters, or "mixed" when none holds 90% */
  readonly dtype: string;
  /** bytes of the weight files */
  readonly sizeOnDisk: number;
  readonly estimates: SizeEstimates;
}

interface TensorShape {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: string;
}

/** HF-named tensors [k] -> bytes at fp16 / int8 / int4 g128 (see the size model above). */
export function estimateSizes(tensors: readonly TensorShape[]): SizeEstimates {
  let fp16 = 0, int8 = 0, int4 = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const role = tensorRole(t.name);
    const isLinear = role !== null && role.param === "weight" && (LINEAR_ROLES as readonly string[]).includes(role.role) && t.shape.length === 2;
    fp16 += 2 * n;
    if (!isLinear) {
      int8 += 2 * n;
      int4 += 2 * n;
      continue;
    }
    const [N, K] = t.shape;
    int8 += N * K + 2 * N;
    int4 += (N * K) / 2 + N * Math.ceil(K / 128) * 2.5;
  }
  return { fp16, int8: Math.ceil(int8), int4g128: Math.ceil(int4) };
}

function summarize(p: string, format: ModelSummary["format"], files: number, c: LlamaConfig, tensors: TensorShape[], sizeOnDisk: number): ModelSummary {
  const dtypes: Record<string, number> = {};
  let parameters = 0, linearParameters = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    parameters += n;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
    const role = tensorRole(t.name);
    if (role && role.param === "weight" && (LINEAR_ROLES as readonly string[]).includes(role.role)) linearParameters += n;
  }
  const top = Object.entries(dtypes).sort((a, b) => b[1] - a[1])[0];
  return {
    path: p,
    format,
    files,
    architecture: c.architecture,
    modelType: c.modelType,
    layers: c.numLayers,
    hiddenSize: c.hiddenSize,
    intermediateSize: c.intermediateSize,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    vocabSize: c.vocabSize,
    contextLength: c.maxPositionEmbeddings,
    tieWordEmbeddings: c.tieWordEmbeddings,
    ropeTheta: c.ropeTheta,
    ropeScaling: c.ropeScaling ? `${c.ropeScaling.type} x${c.ropeScaling.factor}` : null,
    parameters,
    linearParameters,
    dtypes,
    dtype: top && top[1] >= 0.9 * parameters ? top[0] : "mixed",
    sizeOnDisk,
    estimates: estimateSizes(tensors),
  };
}

/** HF model folder or .gguf file -> summary (headers only). */
export async function inspectModel(p: string): Promise<ModelSummary> {
  let isDir = false;
  try {
    isDir = (await fsp.stat(p)).isDirectory();
  } catch {
    /* the readers below report a missing path */
  }
  if (!isDir && p.endsWith(".gguf")) {
    const g = await GGUFFile.open(p);
    try {
      const c = configFromGGUF(g);
      const tensors: TensorShape[] = [];
      for (const t of g.tensors.values()) {
        const name = hfNameOf(t.name);
        if (name) tensors.push({ name, shape: t.shape, dtype: t.typeName });
      }
      return summarize(p, "gguf", 1, c, tensors, g.size);
    } finally {
      await g.close();
    }
  }
  if (!isDir) throw new InputError(p, undefined, "is neither a model folder nor a .gguf file", "pass a Hugging Face model folder (config.json + *.safetensors) or a .gguf file");
  const c = await loadConfig(p);
  const ck = await SafetensorsCheckpoint.open(p);
  try {
    const tensors = ck.infos().map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype }));
    return summarize(p, "safetensors", ck.files.length, c, tensors, ck.sizeOnDisk);
  } finally {
    await ck.close();
  }
}

/** bytes -> "1.04 MB" / "15.0 GB" (decimal units, as model hubs print sizes). */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let x = n;
  while (x >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)} ${units[i]}`;
}

/** summary -> aligned two-column text table (what `wgq inspect` prints). */
export function formatSummary(s: ModelSummary): string {
  const int = (n: number) => n.toLocaleString("en-US");
  const ratio = (b: number) => (s.sizeOnDisk > 0 ? ` (${(b / s.sizeOnDisk).toFixed(2)}x of on-disk)` : "");
  const gqa = s.kvHeads === s.heads ? "MHA" : `GQA ${s.heads / s.kvHeads}:1`;
  const rows: [string, string][] = [
    ["model", `${s.path} (${s.format === "gguf" ? "GGUF" : `safetensors, ${s.files} file${s.files === 1 ? "" : "s"}`})`],
    ["architecture", `${s.architecture} (${s.modelType})`],
    ["layers", String(s.layers)],
    ["hidden size", `${s.hiddenSize} (${s.heads} heads x ${s.headDim}, ${s.kvHeads} KV heads, ${gqa})`],
    ["FFN size", String(s.intermediateSize)],
    ["vocab", `${int(s.vocabSize)}${s.tieWordEmbeddings ? " (embeddings tied to lm_head)" : ""}`],
    ["context", `${int(s.contextLength)} (rope theta ${s.ropeTheta}${s.ropeScaling ? `, ${s.ropeScaling}` : ""})`],
    ["parameters", `${int(s.parameters)} (${int(s.linearParameters)} in linear layers)`],
    ["dtype", s.dtype === "mixed" ? `mixed: ${Object.entries(s.dtypes).map(([d, n]) => `${d} ${int(n)}`).join(", ")}` : s.dtype],
    ["size on disk", formatBytes(s.sizeOnDisk)],
    ["at fp16", formatBytes(s.estimates.fp16) + ratio(s.estimates.fp16)],
    ["at int8", formatBytes(s.estimates.int8) + ratio(s.estimates.int8) + ", per-row fp16 scales"],
    ["at int4 g128", formatBytes(s.estimates.int4g128) + ratio(s.estimates.int4g128) + ", fp16 scale + 4-bit zero per 128"],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n") +
    "\n(estimates keep embeddings, lm_head and norms at fp16)\n";
}
