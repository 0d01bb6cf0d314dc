// test/helpers/llama2c.ts — an independent CPU port of Karpathy's llama2.c `run.c` (inference of a
// Llama-2 model in pure C): its checkpoint reader, forward pass, greedy sampler, generation loop
// and BPE tokenizer (encode / decode), for checking the project against the original program on
// the original llama2.c files (../shared/models/stories260K/llama2c/).
//
// It shares nothing with src/: it reads llama2.c's own formats, rotates interleaved pairs
// (2i, 2i + 1) as run.c does (the HF checkpoint the project reads has permuted q/k rows instead),
// and computes in float32 like the C code: every product, sum and transcendental result is rounded
// to float32 (Math.fround) in run.c's order of operations (sequential sums, no FMA).
//
// Checkpoint: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len), then float32 token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
// wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim), w1 (L, hidden, dim),
// w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim), two skipped freq_cis blocks
// (seq_len · head_size / 2 floats each), then wcls (vocab, dim) only when the header's vocab_size
// is negative (a positive vocab_size means the classifier is the embedding).
// Tokenizer: int32 max_token_length, then per token float32 score, int32 length, the bytes.
import { readFileSync } from "node:fs";

const f = Math.fround;

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** vocab_size > 0 in the header: the classifier is the token embedding. */
  sharedWeights: boolean;
}

interface Weights {
  tokenEmbedding: Float32Array;
  rmsAtt: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  rmsFfn: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
  w3: Float32Array;
  rmsFinal: Float32Array;
  wcls: Float32Array;
}

/** run.c rmsnorm: o = weight * (x / sqrt(mean x² + 1e-5)), in float32. */
function rmsnorm(o: Float32Array, x: Float32Array, weight: Float32Array, wOff: number, size: number): void {
  let ss = 0;
  for (let j = 0; j < size; j++) ss = f(ss + f(x[j] * x[j]));
  ss = f(ss / size);
  ss = f(ss + f(1e-5));
  ss = f(1 / f(Math.sqrt(ss)));
  for (let j = 0; j < size; j++) o[j] = f(weight[wOff + j] * f(ss * x[j]));
}

/** run.c softmax over x[off .. off + size). */
function softmax(x: Float32Array, off: number, size: number): void {
  let max = x[off];
  for (let i = 1; i < size; i++) if (x[off + i] > max) max = x[off + i];
  let sum = 0;
  for (let i = 0; i < size; i++) {
    x[off + i] = f(Math.exp(f(x[off + i] - max)));
    sum = f(sum + x[off + i]);
  }
  for (let i = 0; i < size; i++) x[off + i] = f(x[off + i] / sum);
}

/** run.c matmul: W (d, n) @ x (n,) -> xout (d,); W starts at wOff. */
function matmul(xout: Float32Array, x: Float32Array, w: Float32Array, wOff: number, n: number, d: number): void {
  for (let i = 0; i < d; i++) {
    let val = 0;
    const row = wOff + i * n;
    for (let j = 0; j < n; j++) val = f(val + f(w[row + j] * x[j]));
    xout[i] = val;
  }
}

/** The model of run.c: Transformer = Config + TransformerWeights + RunState (with its KV cache). */
export class Llama2cTransformer {
  readonly x: Float32Array;
  readonly xb: Float32Array;
  readonly xb2: Float32Array;
  readonly hb: Float32Array;
  readonly hb2: Float32Array;
  readonly q: Float32Array;
  readonly keyCache: Float32Array;
  readonly valueCache: Float32Array;
  readonly att: Float32Array;
  readonly logits: Float32Array;

  private constructor(readonly config: Llama2cConfig, readonly w: Weights) {
    const p = config;
    const kvDim = (p.dim * p.nKvHeads) / p.nHeads;
    this.x = new Float32Array(p.dim);
    this.xb = new Float32Array(p.dim);
    this.xb2 = new Float32Array(p.dim);
    this.hb = new Float32Array(p.hiddenDim);
    this.hb2 = new Float32Array(p.hiddenDim);
    this.q = new Float32Array(p.dim);
    this.keyCache = new Float32Array(p.nLayers * p.seqLen * kvDim);
    this.valueCache = new Float32Array(p.nLayers * p.seqLen * kvDim);
    this.att = new Float32Array(p.nHeads * p.seqLen);
    this.logits = new Float32Array(p.vocabSize);
  }

  /** run.c read_checkpoint + memory_map_weights. */
  static read(file: string): Llama2cTransformer {
    const buf = readFileSync(file);
    const h = (i: number) => buf.readInt32LE(4 * i);
    const rawVocab = h(5);
    const config: Llama2cConfig = {
      dim: h(0), hiddenDim: h(1), nLayers: h(2), nHeads: h(3), nKvHeads: h(4),
      // negative vocab size is llama2.c's way of signalling unshared classifier weights
      vocabSize: Math.abs(rawVocab), seqLen: h(6), sharedWeights: rawVocab > 0,
    };
    const p = config;
    const headSize = p.dim / p.nHeads;
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.byteLength));
    let ptr = 0;
    const take = (n: number) => {
      if (ptr + n > data.length) throw new Error(`${file}: ${data.length} floats after the header, the config needs more (at ${ptr} + ${n})`);
      const a = data.subarray(ptr, ptr + n);
      ptr += n;
      return a;
    };
    const L = p.nLayers;
    const w: Partial<Weights> = {};
    w.tokenEmbedding = take(p.vocabSize * p.dim);
    w.rmsAtt = take(L * p.dim);
    w.wq = take(L * p.dim * (p.nHeads * headSize));
    w.wk = take(L * p.dim * (p.nKvHeads * headSize));
    w.wv = take(L * p.dim * (p.nKvHeads * headSize));
    w.wo = take(L * (p.nHeads * headSize) * p.dim);
    w.rmsFfn = take(L * p.dim);
    w.w1 = take(L * p.dim * p.hiddenDim);
    w.w2 = take(L * p.hiddenDim * p.dim);
    w.w3 = take(L * p.dim * p.hiddenDim);
    w.rmsFinal = take(p.dim);
    take(p.seqLen * headSize / 2); // what used to be freq_cis_real
    take(p.seqLen * headSize / 2); // what used to be freq_cis_imag
    w.wcls = p.sharedWeights ? w.tokenEmbedding : take(p.vocabSize * p.dim);
    return new Llama2cTransformer(config, w as Weights);
  }

  /** run.c forward: one token at position pos -> logits (vocab,) (a view, overwritten by the next call). */
  forward(token: number, pos: number): Float32Array {
    const p = this.config, w = this.w;
    const x = this.x;
    const dim = p.dim;
    const kvDim = (p.dim * p.nKvHeads) / p.nHeads;
    const kvMul = p.nHeads / p.nKvHeads;
    const hiddenDim = p.hiddenDim;
    const headSize = dim / p.nHeads;
    x.set(w.tokenEmbedding.subarray(token * dim, (token + 1) * dim));

    for (let l = 0; l < p.nLayers; l++) {
      rmsnorm(this.xb, x, w.rmsAtt, l * dim, dim);
      const loff = l * p.seqLen * kvDim;
      const k = this.keyCache.subarray(loff + pos * kvDim, loff + (pos + 1) * kvDim);
      const v = this.valueCache.subarray(loff + pos * kvDim, loff + (pos + 1) * kvDim);
      matmul(this.q, this.xb, w.wq, l * dim * dim, dim, dim);
      matmul(k, this.xb, w.wk, l * dim * kvDim, dim, kvDim);
      matmul(v, this.xb, w.wv, l * dim * kvDim, dim, kvDim);

      // RoPE: rotate pairs (i, i + 1) of q (and of k while i < kv_dim) in each head
      for (let i = 0; i < dim; i += 2) {
        const headDim = i % headSize;
        const freq = f(1 / f(Math.pow(10000, f(headDim / headSize))));
        const val = f(pos * freq);
        const fcr = f(Math.cos(val));
        const fci = f(Math.sin(val));
        const rotn = i < kvDim ? 2 : 1;
        for (let r = 0; r < rotn; r++) {
          const vec = r === 0 ? this.q : k;
          const v0 = vec[i], v1 = vec[i + 1];
          vec[i] = f(f(v0 * fcr) - f(v1 * fci));
          vec[i + 1] = f(f(v0 * fci) + f(v1 * fcr));
        }
      }

      const scale = f(Math.sqrt(headSize));
      for (let h = 0; h < p.nHeads; h++) {
        const qo = h * headSize;
        const ao = h * p.seqLen;
        for (let t = 0; t <= pos; t++) {
          const ko = loff + t * kvDim + Math.floor(h / kvMul) * headSize;
          let score = 0;
          for (let i = 0; i < headSize; i++) score = f(score + f(this.q[qo + i] * this.keyCache[ko + i]));
          this.att[ao + t] = f(score / scale);
        }
        softmax(this.att, ao, pos + 1);
        const xo = h * headSize;
        this.xb.fill(0, xo, xo + headSize);
        for (let t = 0; t <= pos; t++) {
          const vo = loff + t * kvDim + Math.floor(h / kvMul) * headSize;
          const a = this.att[ao + t];
          for (let i = 0; i < headSize; i++) this.xb[xo + i] = f(this.xb[xo + i] + f(a * this.valueCache[vo + i]));
        }
      }

      matmul(this.xb2, this.xb, w.wo, l * dim * dim, dim, dim);
      for (let i = 0; i < dim; i++) x[i] = f(x[i] + this.xb2[i]);

      rmsnorm(this.xb, x, w.rmsFfn, l * dim, dim);
      matmul(this.hb, this.xb, w.w1, l * dim * hiddenDim, dim, hiddenDim);
      matmul(this.hb2, this.xb, w.w3, l * dim * hiddenDim, dim, hiddenDim);
      for (let i = 0; i < hiddenDim; i++) {
        let val = this.hb[i];
        val = f(val * f(1 / f(1 + f(Math.exp(-val)))));
        val = f(val * this.hb2[i]);
        this.hb[i] = val;
      }
      matmul(this.xb, this.hb, w.w2, l * dim * hiddenDim, hiddenDim, dim);
      for (let i = 0; i < dim; i++) x[i] = f(x[i] + this.xb[i]);
    }

    rmsnorm(x, x, w.rmsFinal, 0, dim);
    matmul(this.logits, x, w.wcls, 0, p.dim, p.vocabSize);
    return this.logits;
  }
}

/** run.c sample_argmax: the first index of the largest value. */
export function argmax(v: ArrayLike<number>): number {
  let maxI = 0;
  let maxP = v[0];
  for (let i = 1; i < v.length; i++) {
    if (v[i] > maxP) {
      maxI = i;
      maxP = v[i];
    }
  }
  return maxI;
}

/**
 * run.c generate with temperature 0: feed the prompt tokens one position at a time (forcing the
 * next prompt token while inside the prompt), then take the argmax, for `steps` positions in all;
 * stop when the model emits BOS (1). Returns the tokens produced after the prompt (BOS excluded).
 */
export function generateGreedy(t: Llama2cTransformer, promptTokens: readonly number[], steps: number): number[] {
  if (promptTokens.length < 1) throw new Error("expected at least 1 prompt token");
  const out: number[] = [];
  let token = promptTokens[0];
  let pos = 0;
  while (pos < steps) {
    const logits = t.forward(token, pos);
    let next: number;
    if (pos < promptTokens.length - 1) {
      next = promptTokens[pos + 1];
    } else {
      next = argmax(logits);
      if (next !== 1) out.push(next);
    }
    pos++;
    if (next === 1) break;
    token = next;
  }
  return out;
}

/** run.c Tokenizer: pieces are byte strings (here JS strings of code units 0..255, latin1). */
export class Llama2cTokenizer {
  readonly vocab: string[] = [];
  readonly scores: Float32Array;
  readonly maxTokenLength: number;
  readonly #lookup = new Map<string, number>();

  /** run.c build_tokenizer: the vocabulary size comes from the model's config. */
  constructor(file: string, readonly vocabSize: number) {
    const buf = readFileSync(file);
    this.maxTokenLength = buf.readInt32LE(0);
    this.scores = new Float32Array(vocabSize);
    let o = 4;
    for (let i = 0; i < vocabSize; i++) {
      if (o + 8 > buf.length) throw new Error(`${file}: ends at token ${i} of ${vocabSize}`);
      this.scores[i] = buf.readFloatLE(o);
      const len = buf.readInt32LE(o + 4);
      o += 8;
      if (len < 0 || o + len > buf.length) throw new Error(`${file}: token ${i} has a bad length ${len}`);
      this.vocab.push(buf.toString("latin1", o, o + len));
      o += len;
    }
    // run.c looks pieces up by binary search in the strcmp-sorted vocabulary; a map over the
    // same byte strings finds the same id (the vocabulary has no duplicate pieces: checked here).
    for (let i = 0; i < vocabSize; i++) {
      if (this.#lookup.has(this.vocab[i])) throw new Error(`${file}: piece ${JSON.stringify(this.vocab[i])} appears twice`);
      this.#lookup.set(this.vocab[i], i);
    }
  }

  #strLookup(s: string): number {
    return this.#lookup.get(s) ?? -1;
  }

  /** run.c encode: UTF-8 text -> ids (BOS = 1 first when bos, EOS = 2 last when eos). */
  encode(text: string, bos: boolean, eos: boolean): number[] {
    const bytes = Buffer.from(text, "utf8");
    const tokens: number[] = [];
    if (bos) tokens.push(1);
    // add_dummy_prefix: a leading " " token when the text is not empty
    if (bytes.length > 0) tokens.push(this.#strLookup(" "));
    let buf: number[] = [];
    for (let c = 0; c < bytes.length; c++) {
      // a byte that is not a UTF-8 continuation byte starts a new code point
      if ((bytes[c] & 0xc0) !== 0x80) buf = [];
      buf.push(bytes[c]);
      // while the next byte is a continuation byte, keep appending (at most 4 bytes)
      if (c + 1 < bytes.length && (bytes[c + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
      const id = this.#strLookup(String.fromCharCode(...buf));
      if (id !== -1) {
        tokens.push(id);
      } else {
        // byte fallback: the first 3 ids are <unk>, <s>, </s>
        for (const b of buf) tokens.push(b + 3);
      }
      buf = [];
    }
    // merge the best-scoring consecutive pair (the leftmost on ties) until none merges
    for (;;) {
      let bestScore = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = 0; i < tokens.length - 1; i++) {
        const id = this.#strLookup(this.vocab[tokens[i]] + this.vocab[tokens[i + 1]]);
        if (id !== -1 && this.scores[id] > bestScore) {
          bestScore = this.scores[id];
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx === -1) break;
      tokens.splice(bestIdx, 2, bestId);
    }
    if (eos) tokens.push(2);
    return tokens;
  }

  /** run.c decode: the bytes printed for `token` after `prevToken`. */
  decode(prevToken: number, token: number): number[] {
    let piece = this.vocab[token];
    // following BOS, sentencepiece's decoder strips a leading space
    if (prevToken === 1 && piece[0] === " ") piece = piece.slice(1);
    // raw byte tokens look like '<0x0A>' (sscanf "<0x%02hhX>")
    const m = /^<0x([0-9A-Fa-f]{1,2})/.exec(piece);
    if (m) return [parseInt(m[1], 16)];
    return Array.from(piece, (ch) => ch.charCodeAt(0));
  }

  /**
   * What run.c prints for `tokens` following `prevToken` (safe_printf: single-byte pieces that
   * are neither printable nor whitespace are skipped), as UTF-8 text.
   */
  decodeText(prevToken: number, tokens: readonly number[]): string {
    const bytes: number[] = [];
    let prev = prevToken;
    for (const t of tokens) {
      const piece = this.decode(prev, t);
      const b = piece[0];
      const printable = piece.length !== 1 || (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d);
      if (piece.length > 0 && printable) bytes.push(...piece);
      prev = t;
    }
    return Buffer.from(bytes).toString("utf8");
  }
}

export const LLAMA2C_DIR = new URL("../../../shared/models/stories260K/llama2c/", import.meta.url);
