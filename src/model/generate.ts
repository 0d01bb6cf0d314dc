// model/generate.ts — text generation with a KV cache: greedy or sampled (temperature, top-k,
// top-p) with a seed; stops at a stop token or after maxTokens. Prefill and decode speeds are
// reported separately. Only the last row of logits comes back per step; it is checked on the host
// (NaN/±Inf throw NonFiniteError naming the step and position), and a generation that produces no
// token throws EmptyGenerationError (both exit code 2).

import { EmptyGenerationError, NonFiniteError, UsageError } from "../errors.ts";
import { describeNonFinite, firstNonFinite } from "../nn/finite.ts";
import { rng } from "../common/random.ts";
import type { LlamaModel } from "./llama.ts";

export interface GenerateOptions {
  maxTokens: number;
  /** 0 = greedy (default). */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stopIds?: readonly number[];
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  ids: number[];
  stoppedBy: "stop-token" | "max-tokens";
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

/** prompt (ids, BOS included) -> new ids. The model must be opened with maxSeq >= prompt + maxTokens. */
export async function generate(model: LlamaModel, prompt: readonly number[], opts: GenerateOptions): Promise<GenerateResult> {
  if (!prompt.length) throw new UsageError("empty prompt");
  const temperature = opts.temperature ?? 0;
  if (temperature < 0 || !Number.isFinite(temperature)) throw new UsageError(`--temperature must be >= 0 (got ${temperature})`);
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 1) throw new UsageError(`--max-tokens must be an integer >= 1 (got ${opts.maxTokens})`);
  const V = model.config.vocabSize;
  const sample = sampler(temperature, opts.topK ?? 0, opts.topP ?? 1, opts.seed ?? 0);
  const stop = new Set(opts.stopIds ?? []);
  model.reset();
  const out: number[] = [];
  let t0 = performance.now();
  let logits = await model.forward(prompt);
  let last = (await logits.view("last", [V], (prompt.length - 1) * V * 4).toHost()) as Float32Array;
  checkLogits(last, 0, prompt.length - 1);
  const prefillS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  let stoppedBy: GenerateResult["stoppedBy"] = "max-tokens";
  let stopId = -1;
  for (let i = 0; i < opts.maxTokens; i++) {
    const id = sample(last);
    if (stop.has(id)) {
      stopId = id;
      stoppedBy = "stop-token";
      break;
    }
    out.push(id);
    opts.onToken?.(id);
    if (i + 1 === opts.maxTokens) break;
    logits = await model.forward([id]);
    last = (await logits.view("last", [V], 0).toHost()) as Float32Array;
    checkLogits(last, i + 1, prompt.length + i);
  }
  if (!out.length) {
    throw new EmptyGenerationError(`the first token chosen (id ${stopId}) is a stop token`);
  }
  const decodeS = (performance.now() - t0) / 1000;
  return { ids: out, stoppedBy, prefillTokensPerSecond: prompt.length / prefillS, decodeTokensPerSecond: out.length / Math.max(decodeS, 1e-9) };
}

/** Throws NonFiniteError when the logits of generation step `step` (the token at `position`) hold NaN/±Inf. */
function checkLogits(logits: Float32Array, step: number, position: number): void {
  const bad = firstNonFinite(logits);
  if (bad) {
    throw new NonFiniteError(`generate step ${step}, token position ${position}`,
      `the next-token logits are not finite: ${describeNonFinite(bad, [logits.length], () => `vocabulary id ${bad.first}`)}`);
  }
}

/** logits (V) -> token id: argmax at temperature 0, else softmax(l / T) restricted by top-k / top-p. */
export function sampler(temperature: number, topK: number, topP: number, seed: number): (logits: Float32Array) => number {
  const r = rng(seed);
  return (l) => {
    if (temperature === 0) {
      let best = 0;
      for (let v = 1; v < l.length; v++) if (l[v] > l[best]) best = v;
      return best;
    }
    let idx = Array.from(l.keys()).sort((a, b) => l[b] - l[a]);
    if (topK > 0) idx = idx.slice(0, topK);
    const m = l[idx[0]];
    let p = idx.map((v) => Math.exp((l[v] - m) / temperature));
    const z = p.reduce((a, b) => a + b, 0);
    p = p.map((x) => x / z);
    if (topP < 1) {
      let acc = 0, k = 0;
      while (k < p.length && acc < topP) acc += p[k++];
      idx = idx.slice(0, k);
      p = p.slice(0, k);
      const z2 = p.reduce((a, b) => a + b, 0);
      p = p.map((x) => x / z2);
    }
    let u = r();
    for (let i = 0; i < p.length; i++) if ((u -= p[i]) <= 0) return idx[i];
    return idx[idx.length - 1];
  };
}
