// common/llama.ts — the Llama family's shared vocabulary: the typed config every reader produces
// (Hugging Face config.json: model/config.ts; GGUF metadata: io/gguf.ts) and the map between
// checkpoint tensor names and the project's roles. Types and name arithmetic only: no I/O, no GPU.

// --- config ------------------------------------------------------------------------------------

export const SUPPORTED_MODEL_TYPES = ["llama", "mistral", "qwen2"] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export type RopeScaling =
  | { readonly type: "linear"; readonly factor: number }
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    };

/** Everything the forward pass needs; dims in elements. D = hiddenSize, H/HKV heads, hd = headDim. */
export interface LlamaConfig {
  readonly modelType: ModelType;
  readonly architecture: string;
  /** D */
  readonly hiddenSize: number;
  /** FFN inner size (gate/up rows) */
  readonly intermediateSize: number;
  /** L */
  readonly numLayers: number;
  /** H */
  readonly numHeads: number;
  /** HKV (= H without GQA); H % HKV == 0 */
  readonly numKvHeads: number;
  /** hd; q rows = H*hd (may differ from D, e.g. when head_dim is given explicitly) */
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  /** q/k/v projections carry a bias (Qwen2; Llama with attention_bias) */
  readonly qkvBias: boolean;
  /** o_proj carries a bias (Llama with attention_bias) */
  readonly oBias: boolean;
  /** gate/up/down carry biases (Llama with mlp_bias) */
  readonly mlpBias: boolean;
  /** lm_head shares model.embed_tokens.weight */
  readonly tieWordEmbeddings: boolean;
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  /** dtype the checkpoint declares ("float32", "bfloat16", ...) or null */
  readonly torchDtype: string | null;
}

// --- tensor names -> roles ---------------------------------------------------------------------

export const ATTN_ROLES = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;
export const MLP_ROLES = ["gate_proj", "up_proj", "down_proj"] as const;
export const NORM_ROLES = ["input_layernorm", "post_attention_layernorm"] as const;
/** The linears a quantizer touches, in forward order. */
export const LINEAR_ROLES = [...ATTN_ROLES, ...MLP_ROLES] as const;
export type LayerRole = (typeof ATTN_ROLES)[number] | (typeof MLP_ROLES)[number] | (typeof NORM_ROLES)[number];
export type GlobalRole = "embed_tokens" | "norm" | "lm_head";

/** A tensor's place in the model: per-layer roles carry the layer index, global ones layer null. */
export type TensorRole =
  | { readonly layer: number; readonly role: LayerRole; readonly param: "weight" | "bias" }
  | { readonly layer: null; readonly role: GlobalRole; readonly param: "weight" };

const LAYER_RE = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.(weight|bias)$/;
const NORM_RE = /^model\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.weight$/;

/** Tensors some checkpoints carry that the model recomputes; skipped without complaint. */
export const IGNORED_TENSOR_RE = /(^|\.)rotary_emb\.inv_freq$/;

/** HF name -> role, or null for a name outside the Llama family's set. */
export function tensorRole(name: string): TensorRole | null {
  if (name === "model.embed_tokens.weight") return { layer: null, role: "embed_tokens", param: "weight" };
  if (name === "model.norm.weight") return { layer: null, role: "norm", param: "weight" };
  if (name === "lm_head.weight") return { layer: null, role: "lm_head", param: "weight" };
  let m = LAYER_RE.exec(name);
  if (m) {
    const [, layer, block, role, param] = m;
    const ok = block === "self_attn" ? (ATTN_ROLES as readonly string[]).includes(role) : (MLP_ROLES as readonly string[]).includes(role);
    if (!ok) return null;
    return { layer: Number(layer), role: role as LayerRole, param: param as "weight" | "bias" };
  }
  m = NORM_RE.exec(name);
  if (m) return { layer: Number(m[1]), role: m[2] as LayerRole, param: "weight" };
  return null;
}

/** Role -> HF name (inverse of tensorRole). */
export function tensorName(r: TensorRole): string {
  if (r.layer === null) return r.role === "embed_tokens" ? "model.embed_tokens.weight" : r.role === "norm" ? "model.norm.weight" : "lm_head.weight";
  const block = (ATTN_ROLES as readonly string[]).includes(r.role) ? "self_attn." : (MLP_ROLES as readonly string[]).includes(r.role) ? "mlp." : "";
  return `model.layers.${r.layer}.${block}${r.role}.${r.param}`;
}
