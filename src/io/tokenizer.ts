// io/tokenizer.ts — text <-> token ids through @huggingface/tokenizers (tokenizer.json), with BOS/EOS
// handling taken from tokenizer_config.json (add_bos_token / add_eos_token, bos_token / eos_token).
// The library does the BPE/normalization; this file only loads files, resolves special tokens and
// makes BOS/EOS explicit so calibration/eval data can put exactly one BOS per document.
// The GGUF reader builds the same object from GGUF's tokenizer arrays (io/gguf.ts).

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { InputError } from "../errors.ts";
import { readJsonObject } from "./file.ts";

export interface EncodeOptions {
  /** Prepend BOS; default: the tokenizer's own rule (add_bos_token, or what tokenizer.json's post-processor does). */
  readonly bos?: boolean;
  /** Append EOS; default: add_eos_token (false for Llama-family models). */
  readonly eos?: boolean;
}

export class TextTokenizer {
  private constructor(
    private readonly tk: Tokenizer,
    /** Where it came from, for error messages. */
    readonly source: string,
    readonly bosId: number | null,
    readonly eosId: number | null,
    readonly addBos: boolean,
    readonly addEos: boolean,
    /** Vocabulary size including added tokens: 1 + the largest id (the embedding rows its ids need). */
    readonly vocabSize: number,
  ) {}

  /**
   * (tokenizer.json object, tokenizer_config.json object, source name) -> tokenizer.
   * BOS/EOS ids: tokenizer_config's bos_token/eos_token (string or {content}) looked up in the vocab,
   * else `fallback` ids (config.json's bos_token_id/eos_token_id).
   */
  static fromJSON(
    tokenizerJson: Record<string, unknown>,
    tokenizerConfig: Record<string, unknown>,
    source: string,
    fallback: { bosId?: number | null; eosId?: number | null } = {},
    configSource = source,
  ): TextTokenizer {
    checkTokenizerJson(tokenizerJson, source);
    checkTokenizerConfig(tokenizerConfig, configSource);
    let tk: Tokenizer;
    try {
      tk = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new InputError(source, "model", `@huggingface/tokenizers cannot load it (${(e as Error).message})`,
        "the tokenizer.json may use a feature the JS library lacks; check @huggingface/tokenizers' README");
    }
    const lookup = (key: string): number | null => {
      const content = specialContent(tokenizerConfig[key]);
      if (content === null) return null;
      const id = tk.token_to_id(content);
      if (id === undefined) throw new InputError(source, key, `special token ${JSON.stringify(content)} is not in the vocabulary`);
      return id;
    };
    const bosId = lookup("bos_token") ?? fallback.bosId ?? null;
    const eosId = lookup("eos_token") ?? fallback.eosId ?? null;
    let addBos: boolean;
    if (typeof tokenizerConfig.add_bos_token === "boolean") addBos = tokenizerConfig.add_bos_token;
    else addBos = bosId !== null && tk.encode("a").ids[0] === bosId; // Llama 3 style: the post-processor adds it
    const addEos = tokenizerConfig.add_eos_token === true;
    const vocabSize = idBound(tokenizerJson);
    return new TextTokenizer(tk, source, bosId, eosId, addBos, addEos, vocabSize);
  }

  /** Model folder (tokenizer.json + optional tokenizer_config.json + config.json for fallback ids) -> tokenizer. */
  static async fromHF(dir: string): Promise<TextTokenizer> {
    const tjPath = path.join(dir, "tokenizer.json");
    const tj = await readJsonObject(tjPath, { missingHint: "a Hugging Face model folder holds tokenizer.json next to config.json" });
    const tc = (await readJsonObject(path.join(dir, "tokenizer_config.json"), { required: false })) ?? {};
    const cfg = (await readJsonObject(path.join(dir, "config.json"), { required: false })) ?? {};
    const id = (v: unknown) => (typeof v === "number" ? v : Array.isArray(v) && typeof v[0] === "number" ? v[0] : null);
    return TextTokenizer.fromJSON(tj!, tc, tjPath, { bosId: id(cfg.bos_token_id), eosId: id(cfg.eos_token_id) }, path.join(dir, "tokenizer_config.json"));
  }

  /** text -> ids [n]: the text's tokens with BOS/EOS added as `opts` (or the tokenizer's defaults) say. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.tk.encode(text, { add_special_tokens: false }).ids;
    const bos = opts.bos ?? this.addBos;
    const eos = opts.eos ?? this.addEos;
    if (bos) {
      if (this.bosId === null) throw new InputError(this.source, "bos_token", "BOS requested but the tokenizer defines none");
      ids.unshift(this.bosId);
    }
    if (eos) {
      if (this.eosId === null) throw new InputError(this.source, "eos_token", "EOS requested but the tokenizer defines none");
      ids.push(this.eosId);
    }
    return ids;
  }

  /** ids [n] -> text; special tokens (BOS/EOS/...) are dropped unless skipSpecial is false. */
  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    return this.tk.decode([...ids], { skip_special_tokens: opts.skipSpecial ?? true });
  }

  /** piece -> id (undefined if absent). */
  tokenToId(piece: string): number | undefined {
    return this.tk.token_to_id(piece);
  }
  /** id -> piece (undefined if out of range). */
  idToToken(id: number): string | undefined {
    return this.tk.id_to_token(id);
  }
}

/** Model types of tokenizer.json (the Hugging Face tokenizers library's models). */
const TOKENIZER_MODELS = ["BPE", "Unigram", "WordPiece", "WordLevel"];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isId = (v: unknown): boolean => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * What the JS library takes on trust in tokenizer.json, checked first: `model` an object of a known
 * type, vocabulary ids non-negative integers, added tokens {id, content}. A damaged file is an
 * InputError naming the field instead of a tokenizer that maps text to nonsense ids.
 */
function checkTokenizerJson(tj: Record<string, unknown>, source: string): void {
  const model = tj.model;
  if (!isObject(model)) throw new InputError(source, "model", "missing or not an object", "the file is damaged or not a Hugging Face tokenizer.json");
  if (model.type !== undefined && !TOKENIZER_MODELS.includes(model.type as string)) {
    throw new InputError(source, "model.type", `${JSON.stringify(model.type)} is not a tokenizer model (${TOKENIZER_MODELS.join(", ")})`);
  }
  const vocab = model.vocab;
  if (isObject(vocab)) {
    for (const [piece, id] of Object.entries(vocab)) {
      if (!isId(id)) throw new InputError(source, `model.vocab[${JSON.stringify(piece)}]`, `id ${JSON.stringify(id)} is not a non-negative integer`);
    }
  } else if (!Array.isArray(vocab)) {
    throw new InputError(source, "model.vocab", "missing, or neither a map of piece -> id nor a list");
  }
  if ((Array.isArray(vocab) ? vocab.length : Object.keys(vocab).length) === 0) throw new InputError(source, "model.vocab", "the vocabulary is empty");
  if (isObject(vocab) && (model.type === "BPE" || (model.type === undefined && model.merges !== undefined))) checkMerges(model, vocab, source);
  const added = tj.added_tokens;
  if (added === undefined || added === null) return;
  if (!Array.isArray(added)) throw new InputError(source, "added_tokens", "not a list");
  added.forEach((a: unknown, i) => {
    if (!isObject(a) || !isId(a.id) || typeof a.content !== "string" || a.content === "") {
      throw new InputError(source, `added_tokens[${i}]`, `${JSON.stringify(a)?.slice(0, 80)} is not {id: non-negative integer, content: non-empty string}`);
    }
  });
}

/**
 * BPE merges as the tokenizers library (Rust) loads them: "a b" (one space) or ["a", "b"], with a, b
 * and their concatenation in the vocabulary. The JS library skips a bad merge silently, so a damaged
 * file would tokenize here and fail to load anywhere else.
 */
function checkMerges(model: Record<string, unknown>, vocab: Record<string, unknown>, source: string): void {
  const merges = model.merges;
  if (merges === undefined || merges === null) return;
  if (!Array.isArray(merges)) throw new InputError(source, "model.merges", "not a list");
  const has = (t: string) => Object.prototype.hasOwnProperty.call(vocab, t);
  const prefix = typeof model.continuing_subword_prefix === "string" ? model.continuing_subword_prefix : "";
  merges.forEach((m: unknown, i) => {
    const pair = typeof m === "string" ? m.split(" ") : m;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
      throw new InputError(source, `model.merges[${i}]`, `${JSON.stringify(m)?.slice(0, 80)} is not "a b" or ["a", "b"]`);
    }
    const [a, b] = pair as [string, string];
    const merged = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
    for (const t of [a, b, merged]) {
      if (!has(t)) throw new InputError(source, `model.merges[${i}]`, `${JSON.stringify(t)} of merge ${JSON.stringify(m)} is not in the vocabulary`);
    }
  });
}

/** tokenizer_config.json's special tokens are strings or {content: string}; its add_* flags booleans. */
function checkTokenizerConfig(tc: Record<string, unknown>, source: string): void {
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const v = tc[key];
    if (v !== undefined && v !== null && specialContent(v) === null) {
      throw new InputError(source, key, `${JSON.stringify(v)?.slice(0, 80)} is neither a token string nor {content: string}`);
    }
  }
  for (const key of ["add_bos_token", "add_eos_token"]) {
    const v = tc[key];
    if (v !== undefined && v !== null && typeof v !== "boolean") throw new InputError(source, key, `must be true or false, got ${JSON.stringify(v)}`);
  }
}

/**
 * 1 + the largest id of the vocabulary and the added tokens (checked by checkTokenizerJson), from the
 * JSON: the library's get_vocab() walks every id up to the largest, so a damaged id of 1e9 takes minutes.
 */
function idBound(tj: Record<string, unknown>): number {
  const vocab = (tj.model as Record<string, unknown>).vocab;
  let n = Array.isArray(vocab) ? vocab.length : 0;
  if (isObject(vocab)) for (const id of Object.values(vocab)) n = Math.max(n, (id as number) + 1);
  for (const a of (tj.added_tokens as { id: number }[] | null | undefined) ?? []) n = Math.max(n, a.id + 1);
  return n;
}

/** A special-token entry ("<s>" or {content: "<s>", ...}) -> its text, or null. */
function specialContent(v: unknown): string | null {
  const content = typeof v === "string" ? v : isObject(v) ? v.content : undefined;
  return typeof content === "string" ? content : null;
}

/** Strict UTF-8; a byte order mark is kept, so JSON.parse refuses it as Python's json does. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

