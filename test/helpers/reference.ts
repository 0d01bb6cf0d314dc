// test/helpers/reference.ts — reference numbers computed in the tests, independently of the code
// under test: round-to-nearest quantization by the documented rules, a reader of the saved packed
// format (README "Formats", src/quant/formats.ts' layout comment), the evaluation protocol of
// ../shared/notes/reference-numbers.md, and perplexity / KL / top-1 from the float64 CPU forward
// pass (src/ref/llama.ts).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LlamaConfig } from "../../src/model/config.ts";
import { lossRef, RefLlama } from "../../src/ref/llama.ts";

// ---------------------------------------------------------------------------------------------
// binary16
// ---------------------------------------------------------------------------------------------

/** Round to nearest, ties to even. */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** The binary16 value nearest to x (ties to even), as a number; overflow gives ±Infinity. */
export function toF16(x: number): number {
  const a = Math.abs(x);
  if (!Number.isFinite(a) || a >= 65520) return Number.isNaN(x) ? NaN : Math.sign(x) * Infinity;
  // the binade of a (2^e <= a < 2^(e+1); subnormals share the quantum of e = −14, 2^-24)
  let e = a < 2 ** -14 ? -14 : Math.floor(Math.log2(a));
  if (a >= 2 ** -14) {
    if (2 ** e > a) e--; // log2 rounded across a power of two
    if (2 ** (e + 1) <= a) e++;
  }
  const q = 2 ** (e - 10);
  return Math.sign(x) * rint(a / q) * q;
}

/** binary16 bits -> value. */
export function f16Bits(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}

// ---------------------------------------------------------------------------------------------
// Round-to-nearest, by the rules of README / src/quant/formats.ts, dequantized
// ---------------------------------------------------------------------------------------------

/**
 * W (N, K) -> RTN-quantized, dequantized W' (N, K):
 *   int8:        per row, s = f16(max|w| / 127), q = clamp(rint(w / s), −127, 127), w' = q·s
 *   int4/3 asym: per group of G along K, s = f16(max((max − min) / L, 1e-5)) with L = 15 (int4) or
 *                7 (int3), z = clamp(rint(−min / s), 0, L), q = clamp(rint(w / s) + z, 0, L), w' = (q − z)·s
 *   int4 sym:    s = f16(max|w| / 7), q = clamp(rint(w / s), −8, 7), w' = q·s
 */
export function rtnDequant(w: Float32Array, N: number, K: number, o: { bits: 3 | 4 | 8; G?: number; sym?: boolean }): Float32Array {
  const G = o.bits === 8 ? K : o.G!;
  const L = o.bits === 8 ? 127 : o.bits === 4 ? 15 : 7;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k0 = 0; k0 < K; k0 += G) {
      const k1 = Math.min(k0 + G, K);
      let mn = Infinity, mx = -Infinity;
      for (let k = k0; k < k1; k++) {
        mn = Math.min(mn, w[n * K + k]);
        mx = Math.max(mx, w[n * K + k]);
      }
      const sym = o.bits === 8 || o.sym;
      const lv = o.bits === 8 ? 127 : o.sym ? (o.bits === 4 ? 7 : 3) : L;
      const s = sym ? toF16(Math.max(-mn, mx) / lv) : toF16(Math.max(Math.fround(mx - mn) / L, Math.fround(1e-5)));
      const z = sym ? 0 : Math.min(Math.max(rint(-mn / s), 0), L);
      const lo = sym ? -(o.bits === 8 ? 127 : lv + 1) : 0, hi = sym ? lv : L;
      for (let k = k0; k < k1; k++) {
        const q = s === 0 ? 0 : Math.min(Math.max(rint(w[n * K + k] / s) + z, lo), hi);
        out[n * K + k] = (q - z) * s;
      }
    }
  }
  return out;
}

/** The block linears of a Llama checkpoint (what `wgq quantize` quantizes), by HF weight name. */
export function blockLinears(c: LlamaConfig): string[] {
  const names: string[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    for (const m of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) {
      names.push(`model.layers.${l}.${m}.weight`);
    }
  }
  return names;
}

/** [N, K] of every block linear, from the config. */
export function linearShapes(c: LlamaConfig): Map<string, number[]> {
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, H = c.hiddenSize, I = c.intermediateSize;
  const dims: Record<string, number[]> = {
    "self_attn.q_proj": [q, H], "self_attn.k_proj": [kv, H], "self_attn.v_proj": [kv, H], "self_attn.o_proj": [H, q],
    "mlp.gate_proj": [I, H], "mlp.up_proj": [I, H], "mlp.down_proj": [H, I],
  };
  return new Map(blockLinears(c).map((n) => [n, dims[n.replace(/^model\.layers\.\d+\./, "").replace(/\.weight$/, "")]]));
}

/** fp weights with every block linear replaced by its RTN-dequantized copy. */
export function rtnModel(fp: ReadonlyMap<string, Float32Array>, c: LlamaConfig, o: { bits: 3 | 4 | 8; G?: number; sym?: boolean }, shapes: ReadonlyMap<string, number[]>): Map<string, Float32Array> {
  const out = new Map(fp);
  for (const name of blockLinears(c)) {
    const [N, K] = shapes.get(name)!;
    out.set(name, rtnDequant(fp.get(name)!, N, K, o));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// safetensors (any dtype) and the saved packed format
// ---------------------------------------------------------------------------------------------

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Buffer;
}

/** Every tensor of a safetensors file: dtype, shape and its raw little-endian bytes. */
export function readSafetensorsRaw(file: string): Map<string, RawTensor> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes: buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]) });
  }
  return out;
}

/** Tensor shapes of a model folder's model.safetensors, by name. */
export function tensorShapes(dir: string): Map<string, number[]> {
  return new Map([...readSafetensorsRaw(join(dir, "model.safetensors"))].map(([n, t]) => [n, t.shape]));
}

/**
 * A model folder written by wgq (quantize, qat) -> every weight as f32, packed linears dequantized.
 * Layout (README "Formats"): <name>.qweight I32 [N, words], int4/int3 element k at bits 4·(k % 8)
 * of word k / 8, int8 element k a two's-complement byte at bits 8·(k % 4) of word k / 4;
 * <name>.scales F16 [N, groups]; <name>.qzeros I32 [N, ceil(groups / 8)] (asymmetric int4/int3:
 * zero point of group g at bits 4·(g % 8) of word g / 8; symmetric int4 has the implicit zero 8).
 * w = (q − z)·s (int8: q·s). K, the number of inputs, is taken from `shapes` (the fp model's).
 */
export function readSavedModel(dir: string, shapes: ReadonlyMap<string, number[]>): Map<string, Float32Array> {
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { quantization_config?: { bits: number; group_size: number | null; sym: boolean } };
  const qc = cfg.quantization_config;
  const raw = readSafetensorsRaw(join(dir, "model.safetensors"));
  const out = new Map<string, Float32Array>();
  const asF32 = (t: RawTensor): Float32Array => {
    if (t.dtype === "F32") return new Float32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength));
    if (t.dtype === "F16") return Float32Array.from({ length: t.bytes.length / 2 }, (_, i) => f16Bits(t.bytes.readUInt16LE(2 * i)));
    throw new Error(`unexpected dtype ${t.dtype}`);
  };
  for (const [name, t] of raw) {
    if (name.endsWith(".scales") || name.endsWith(".qzeros")) continue;
    if (!name.endsWith(".qweight")) {
      out.set(name, asF32(t));
      continue;
    }
    if (!qc) throw new Error(`${dir}: packed tensor ${name} without quantization_config`);
    const base = name.slice(0, -".qweight".length);
    const [N, K] = shapes.get(`${base}.weight`)!;
    const words = t.shape[1];
    const scales = asF32(raw.get(`${base}.scales`)!);
    const ng = scales.length / N;
    const G = qc.bits === 8 ? K : qc.group_size!;
    const zt = raw.get(`${base}.qzeros`);
    const w = new Float32Array(N * K);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const g = Math.floor(k / G);
        const s = scales[n * ng + g];
        let v: number;
        if (qc.bits === 8) {
          v = t.bytes.readInt8(4 * (n * words + (k >> 2)) + (k & 3)) * s;
        } else {
          const q = (t.bytes.readUInt32LE(4 * (n * words + (k >> 3))) >>> (4 * (k & 7))) & 15;
          const zw = zt ? zt.shape[1] : 0;
          const z = zt ? (zt.bytes.readUInt32LE(4 * (n * zw + (g >> 3))) >>> (4 * (g & 7))) & 15 : 8;
          v = (q - z) * s;
        }
        w[n * K + k] = v;
      }
    }
    out.set(`${base}.weight`, w);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Evaluation protocol (../shared/notes/reference-numbers.md) on the CPU
// ---------------------------------------------------------------------------------------------

/** Plain text -> stories: split on blank lines, trimmed, empty ones dropped. */
export function stories(text: string): string[] {
  return text.split(/\n[ \t\r]*\n/).map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * [BOS] + encode(story) for each story, concatenated, stopping once `atLeast` tokens are there.
 * `encode` gives the ids of a text without BOS.
 */
export function storyStream(docs: readonly string[], encode: (text: string) => number[], atLeast = Infinity): number[] {
  const out: number[] = [];
  for (const d of docs) {
    if (out.length >= atLeast) break;
    out.push(1, ...encode(d));
  }
  return out;
}

export interface RefScores {
  ppl: number;
  /** mean KL(ref || model), nats; NaN without a reference model */
  kl: number;
  /** top-1 agreement with the reference model (with one), else next-token accuracy */
  top1: number;
  tokens: number;
}

/**
 * Each window evaluated from position 0 on the float64 CPU forward pass; positions 0 .. T−2 of a
 * window of T tokens are scored (each predicts the next token). `refWeights`: KL and top-1
 * agreement against that model.
 */
export function scoreWindows(c: LlamaConfig, weights: ReadonlyMap<string, Float32Array>, wins: readonly (readonly number[])[], refWeights?: ReadonlyMap<string, Float32Array>): RefScores {
  let nll = 0, kl = 0, top1 = 0, n = 0;
  const maxLen = Math.max(...wins.map((w) => w.length));
  for (const win of wins) {
    const logits = new RefLlama(c, weights, maxLen).forward(win);
    const ref = refWeights ? new RefLlama(c, refWeights, maxLen).forward(win) : undefined;
    for (const row of lossRef(logits, win, win.length, c.vocabSize, ref)) {
      nll += row.nll;
      kl += row.kl;
      top1 += row.top1;
      n++;
    }
  }
  return { ppl: Math.exp(nll / n), kl: refWeights ? kl / n : NaN, top1: top1 / n, tokens: n };
}

/** Greedy decoding on the float64 CPU forward pass: up to maxTokens ids after the prompt, stopping before a stop id. */
export function greedyRef(c: LlamaConfig, weights: ReadonlyMap<string, Float32Array>, prompt: readonly number[], maxTokens: number, stopIds: readonly number[]): number[] {
  const m = new RefLlama(c, weights, prompt.length + maxTokens);
  let logits = m.forward(prompt);
  const out: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const last = logits.subarray(logits.length - c.vocabSize);
    let best = 0;
    for (let v = 1; v < c.vocabSize; v++) if (last[v] > last[best]) best = v;
    if (stopIds.includes(best)) break;
    out.push(best);
    if (i + 1 < maxTokens) logits = m.forward([best]);
  }
  return out;
}

/** |a − b| / |b| */
export function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}
