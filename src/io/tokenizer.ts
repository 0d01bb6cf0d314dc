// io/tokenizer.ts — text <-> token ids through @huggingface/tokenizers (tokenizer.json), with BOS/EOS
// handling taken from tokenizer_config.json (add_bos_token / add_eos_token, bos_token / eos_token).
// The library does the BPE/normalization; this file only loads files, resolves special tokens and
// makes BOS/EOS explicit so calibration/eval data can put exactly one BOS per document.
// The GGUF reader builds the same object from GGUF's tokenizer arrays (io/gguf.ts).

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { InputError } from "../errors.ts";

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
    /** Vocabulary size including added tokens. */
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
  ): TextTokenizer {
    let tk: Tokenizer;
    try {
      tk = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new InputError(source, "model", `@huggingface/tokenizers cannot load it (${(e as Error).message})`,
        "the tokenizer.json may use a feature the JS library lacks; check @huggingface/tokenizers' README");
    }
    const lookup = (key: string): number | null => {
      const v = tokenizerConfig[key];
      const content = typeof v === "string" ? v : typeof v === "object" && v !== null ? (v as { content?: unknown }).content : undefined;
      if (typeof content !== "string") return null;
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
    const vocabSize = tk.get_vocab(true).size;
    return new TextTokenizer(tk, source, bosId, eosId, addBos, addEos, vocabSize);
  }

  /** Model folder (tokenizer.json + optional tokenizer_config.json + config.json for fallback ids) -> tokenizer. */
  static async fromHF(dir: string): Promise<TextTokenizer> {
    const tjPath = path.join(dir, "tokenizer.json");
    const tj = await readJson(tjPath, true);
    const tc = (await readJson(path.join(dir, "tokenizer_config.json"), false)) ?? {};
    const cfg = (await readJson(path.join(dir, "config.json"), false)) ?? {};
    const id = (v: unknown) => (typeof v === "number" ? v : Array.isArray(v) && typeof v[0] === "number" ? v[0] : null);
    return TextTokenizer.fromJSON(tj!, tc, tjPath, { bosId: id(cfg.bos_token_id), eosId: id(cfg.eos_token_id) });
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

async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, "utf8");
  } catch {
    if (!required) return null;
    throw new InputError(file, undefined, "not found", "a Hugging Face model folder holds tokenizer.json next to config.json");
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new InputError(file, undefined, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new InputError(file, undefined, "not a JSON object");
  return v as Record<string, unknown>;
}
