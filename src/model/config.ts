// model/config.ts — Hugging Face config.json -> a typed Llama-family config, and the tensors a
// checkpoint of that config must hold, with their shapes. Covers Llama 2/3 (incl. rope_scaling
// "llama3"), Mistral, Qwen2 (q/k/v biases), and the models that ship as model_type "llama"
// (TinyLlama, SmolLM). The type and the tensor-name <-> role map live in common/llama.ts, shared with
// the GGUF reader (io/gguf.ts), and are re-exported here.
// Not here: tensor data (io/) and the forward pass (model/llama.ts).

import * as path from "node:path";
import { promises as fsp } from "node:fs";
import { InputError, UnsupportedModelError } from "../errors.ts";
import { readJsonObject } from "../io/file.ts";
import {
  ATTN_ROLES,
  IGNORED_TENSOR_RE,
  LINEAR_ROLES,
  type LlamaConfig,
  type ModelType,
  type RopeScaling,
  SUPPORTED_MODEL_TYPES,
  type TensorRole,
  tensorName,
} from "../common/llama.ts";

export {
  ATTN_ROLES,
  type GlobalRole,
  IGNORED_TENSOR_RE,
  type LayerRole,
  LINEAR_ROLES,
  type LlamaConfig,
  MLP_ROLES,
  type ModelType,
  NORM_ROLES,
  type RopeScaling,
  SUPPORTED_MODEL_TYPES,
  type TensorRole,
  tensorName,
  tensorRole,
} from "../common/llama.ts";

// --- config ------------------------------------------------------------------------------------

export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"] as const;
export const SUPPORTED_ROPE_SCALING = ["default (none)", "linear", "llama3"] as const;

/**
 * Upper bounds of config sizes, checked before anything is allocated: generous for every Llama-family
 * model published (Llama 3 405B: hidden 16384, 126 layers, vocab 128256), fatal for damaged files.
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = {
  hidden_size: 1 << 16,
  intermediate_size: 1 << 18,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  vocab_size: 1 << 22,
  max_position_embeddings: 1 << 24,
  sliding_window: 1 << 24,
};

/** Defaults that differ by family, as in transformers' config classes. */
const DEFAULTS: Record<ModelType, { maxPos: number; eps: number; theta: number; tie: boolean }> = {
  llama: { maxPos: 2048, eps: 1e-6, theta: 10000, tie: false },
  mistral: { maxPos: 4096 * 32, eps: 1e-6, theta: 10000, tie: false },
  qwen2: { maxPos: 32768, eps: 1e-6, theta: 10000, tie: false },
};

/** (parsed config.json, file name for errors) -> validated LlamaConfig. */
export function parseConfig(json: Record<string, unknown>, file: string): LlamaConfig {
  const mt = json.model_type;
  if (typeof mt !== "string") throw new InputError(file, "model_type", "missing or not a string", "a Hugging Face config.json names its model_type");
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(mt)) {
    throw new UnsupportedModelError(file, "model_type", mt, SUPPORTED_MODEL_TYPES);
  }
  const modelType = mt as ModelType;
  const archs = json.architectures;
  let architecture: string = SUPPORTED_ARCHITECTURES[SUPPORTED_MODEL_TYPES.indexOf(modelType)];
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== "string") {
      throw new InputError(file, "architectures", "must be a non-empty list of class names");
    }
    if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(archs[0])) {
      throw new UnsupportedModelError(file, "architectures", archs[0], SUPPORTED_ARCHITECTURES);
    }
    architecture = archs[0];
  }
  const d = DEFAULTS[modelType];
  const int = (key: string, dflt?: number): number => {
    const v = json[key] ?? dflt;
    if (v === undefined || v === null) throw new InputError(file, key, "required field is missing", "config.json must come from the same model as the weights");
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) throw new InputError(file, key, `must be a positive integer, got ${JSON.stringify(v)}`);
    const max = CONFIG_LIMITS[key];
    if (max !== undefined && v > max) {
      throw new InputError(file, key, `${v} is beyond any model this tool runs (at most ${max})`, "config.json is damaged or belongs to another kind of model");
    }
    return v;
  };
  const num = (key: string, dflt: number): number => {
    const v = json[key] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new InputError(file, key, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (key: string, dflt: boolean): boolean => {
    const v = json[key] ?? dflt;
    if (typeof v !== "boolean") throw new InputError(file, key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const hiddenSize = int("hidden_size");
  const intermediateSize = int("intermediate_size");
  const numLayers = int("num_hidden_layers");
  const numHeads = int("num_attention_heads");
  const vocabSize = int("vocab_size");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new InputError(file, "num_key_value_heads", `${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  }
  if (json.head_dim === undefined || json.head_dim === null) {
    if (hiddenSize % numHeads !== 0) {
      throw new InputError(file, "head_dim", `missing, and hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`);
    }
  }
  const headDim = int("head_dim", hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw new InputError(file, "head_dim", `${headDim} is odd; rotary embeddings rotate pairs`);
  const act = json.hidden_act ?? "silu";
  if (act !== "silu" && act !== "swish") throw new UnsupportedModelError(file, "hidden_act", String(act), ["silu"]);
  const attentionBias = bool("attention_bias", false);
  const qkvBias = modelType === "qwen2" ? true : attentionBias;
  const slidingWindow = parseSlidingWindow(json, modelType, file);
  return {
    modelType,
    architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings: int("max_position_embeddings", d.maxPos),
    rmsNormEps: num("rms_norm_eps", d.eps),
    ropeTheta: num("rope_theta", d.theta),
    ropeScaling: parseRopeScaling(json.rope_scaling, file),
    qkvBias,
    oBias: modelType === "llama" && attentionBias,
    mlpBias: modelType === "llama" && bool("mlp_bias", false),
    tieWordEmbeddings: bool("tie_word_embeddings", d.tie),
    slidingWindow,
    bosTokenId: optionalId(json.bos_token_id, file, "bos_token_id", vocabSize),
    eosTokenIds: idList(json.eos_token_id, file, "eos_token_id", vocabSize),
    torchDtype: typeof json.torch_dtype === "string" ? json.torch_dtype : typeof json.dtype === "string" ? json.dtype : null,
  };
}

function parseSlidingWindow(json: Record<string, unknown>, mt: ModelType, file: string): number | null {
  if (mt === "qwen2" && json.use_sliding_window !== true) return null;
  const v = json.sliding_window;
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0 || v > CONFIG_LIMITS.sliding_window) throw new InputError(file, "sliding_window", `must be a positive integer (at most ${CONFIG_LIMITS.sliding_window}) or null, got ${JSON.stringify(v)}`);
  return v;
}

function parseRopeScaling(v: unknown, file: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v)) throw new InputError(file, "rope_scaling", "must be an object or null");
  const o = v as Record<string, unknown>;
  const type = o.rope_type ?? o.type;
  if (type === "default") return null;
  const pos = (k: string): number => {
    const x = o[k];
    if (typeof x !== "number" || !Number.isFinite(x) || x <= 0) throw new InputError(file, `rope_scaling.${k}`, `must be a positive number, got ${JSON.stringify(x)}`);
    return x;
  };
  if (type === "linear") return { type, factor: pos("factor") };
  if (type === "llama3") {
    return {
      type,
      factor: pos("factor"),
      lowFreqFactor: pos("low_freq_factor"),
      highFreqFactor: pos("high_freq_factor"),
      originalMaxPositionEmbeddings: pos("original_max_position_embeddings"),
    };
  }
  throw new UnsupportedModelError(file, "rope_scaling.rope_type", String(type), SUPPORTED_ROPE_SCALING);
}

function optionalId(v: unknown, file: string, key: string, vocabSize: number): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new InputError(file, key, `must be a token id, got ${JSON.stringify(v)}`);
  if (v >= vocabSize) throw new InputError(file, key, `token id ${v} is outside the vocabulary (vocab_size ${vocabSize})`, "config.json is damaged or belongs to another model");
  return v;
}

function idList(v: unknown, file: string, key: string, vocabSize: number): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (list.length > 64) throw new InputError(file, key, `${list.length} ids; a model has a few stop tokens`);
  return list.map((x) => optionalId(x, file, key, vocabSize)!);
}

/** Model folder (or its config.json) -> LlamaConfig. */
export async function loadConfig(p: string): Promise<LlamaConfig> {
  // a folder, or a path that is not a file: its config.json (named in the error when missing)
  const isFile = await fsp.stat(p).then((st) => st.isFile(), () => false);
  const file = isFile ? p : path.join(p, "config.json");
  const json = await readJsonObject(file, {
    missingHint: "pass a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)",
    maxBytes: MAX_CONFIG_BYTES, maxDepth: MAX_CONFIG_DEPTH,
  });
  return parseConfig(json as Record<string, unknown>, file);
}

/** Bounds of a config.json file: its size and how deeply its JSON nests (a written copy must round-trip). */
const MAX_CONFIG_BYTES = 16 << 20;
const MAX_CONFIG_DEPTH = 64;


/** Parameters the config implies (embedding + layers + final norm + untied lm_head). */
export function parameterCount(c: LlamaConfig): number {
  const D = c.hiddenSize, I = c.intermediateSize, qRows = c.numHeads * c.headDim, kvRows = c.numKvHeads * c.headDim;
  let layer = D * qRows * 2 + D * kvRows * 2 + 3 * D * I + 2 * D;
  if (c.qkvBias) layer += qRows + 2 * kvRows;
  if (c.oBias) layer += D;
  if (c.mlpBias) layer += 2 * I + D;
  return c.vocabSize * D * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * layer + D;
}

// --- the tensors of a checkpoint --------------------------------------------------------------

export interface ExpectedTensor {
  readonly name: string;
  readonly role: TensorRole;
  /** Row-major, HF orientation: linears are [out, in]. */
  readonly shape: readonly number[];
  /** lm_head of a tied model: may be absent (and is then embed_tokens). */
  readonly optional: boolean;
}

/** Config -> every tensor the checkpoint must hold, with shapes, in forward order. */
export function expectedTensors(c: LlamaConfig): ExpectedTensor[] {
  const D = c.hiddenSize, I = c.intermediateSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  const out: ExpectedTensor[] = [];
  const add = (role: TensorRole, shape: number[], optional = false) => out.push({ name: tensorName(role), role, shape, optional });
  add({ layer: null, role: "embed_tokens", param: "weight" }, [c.vocabSize, D]);
  const linShape: Record<(typeof LINEAR_ROLES)[number], number[]> = {
    q_proj: [q, D], k_proj: [kv, D], v_proj: [kv, D], o_proj: [D, q], gate_proj: [I, D], up_proj: [I, D], down_proj: [D, I],
  };
  for (let l = 0; l < c.numLayers; l++) {
    add({ layer: l, role: "input_layernorm", param: "weight" }, [D]);
    for (const r of LINEAR_ROLES) {
      add({ layer: l, role: r, param: "weight" }, linShape[r]);
      const bias = r === "o_proj" ? c.oBias : (ATTN_ROLES as readonly string[]).includes(r) ? c.qkvBias : c.mlpBias;
      if (bias) add({ layer: l, role: r, param: "bias" }, [linShape[r][0]]);
      if (r === "o_proj") add({ layer: l, role: "post_attention_layernorm", param: "weight" }, [D]);
    }
  }
  add({ layer: null, role: "norm", param: "weight" }, [D]);
  add({ layer: null, role: "lm_head", param: "weight" }, [c.vocabSize, D], c.tieWordEmbeddings);
  return out;
}

/**
 * (config, tensors present {name, shape}, file for errors) -> the names that are not part of the model.
 * A missing tensor or a wrong shape is an InputError naming the tensor.
 */
export function checkTensors(c: LlamaConfig, present: readonly { name: string; shape: readonly number[] }[], file: string): string[] {
  const have = new Map(present.map((t) => [t.name, t.shape]));
  for (const e of expectedTensors(c)) {
    const shape = have.get(e.name);
    if (!shape) {
      if (e.optional) continue;
      throw new InputError(file, e.name, "tensor is missing from the checkpoint", "config.json and the weights must come from the same model");
    }
    if (shape.length !== e.shape.length || shape.some((d, i) => d !== e.shape[i])) {
      throw new InputError(file, e.name, `shape ${JSON.stringify(shape)} != ${JSON.stringify(e.shape)} implied by config.json`,
        "config.json and the weights must come from the same model");
    }
  }
  const known = new Set(expectedTensors(c).map((e) => e.name));
  return present.map((t) => t.name).filter((n) => !known.has(n) && !IGNORED_TENSOR_RE.test(n));
}

/** Tensor dtypes a floating-point checkpoint may hold for the model's tensors. */
export const FLOAT_DTYPES = ["F32", "F16", "BF16"] as const;

/**
 * Checks a checkpoint against its config before any work: the layer count first (so a damaged
 * num_hidden_layers is refused without building a list of its size), then every expected tensor's
 * presence, shape and (with `floatOnly`) floating-point dtype. Returns the names that are not part
 * of the model, for a warning. Errors are InputErrors naming the config field or the tensor.
 */
export function validateCheckpoint(
  c: LlamaConfig,
  present: readonly { name: string; shape: readonly number[]; dtype?: string }[],
  files: { config: string; weights: string },
  opts: { floatOnly?: boolean; quantized?: boolean } = {},
): string[] {
  let maxLayer = -1;
  for (const t of present) {
    const m = /^model\.layers\.(\d+)\./.exec(t.name);
    if (m) maxLayer = Math.max(maxLayer, Number(m[1]));
  }
  if (maxLayer + 1 !== c.numLayers) {
    throw new InputError(files.config, "num_hidden_layers",
      `${c.numLayers} layers, but ${files.weights} holds ${maxLayer < 0 ? "no layer tensors" : `layers 0..${maxLayer}`}`,
      "config.json and the weights must come from the same model");
  }
  if (opts.quantized) return []; // packed linears: their tensors are checked when read (quant/model_format.ts)
  const extra = checkTensors(c, present, files.weights);
  if (opts.floatOnly) {
    const byName = new Map(present.map((t) => [t.name, t.dtype]));
    for (const e of expectedTensors(c)) {
      const dt = byName.get(e.name);
      if (dt !== undefined && !(FLOAT_DTYPES as readonly string[]).includes(dt)) {
        throw new InputError(files.weights, e.name, `dtype ${dt}, but a floating-point checkpoint (${FLOAT_DTYPES.join(", ")}) is needed`,
          "quantize the original fp16/bf16/fp32 checkpoint");
      }
    }
  }
  return extra;
}
