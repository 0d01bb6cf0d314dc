// model/eval.ts — perplexity, KL divergence and top-1 agreement on the GPU.
//
// Protocol (fixed): each document is encoded as [BOS] + tokens; documents are concatenated into
// one stream; the stream is cut into non-overlapping windows of ctx tokens (the last one may be
// shorter); each window is evaluated from position 0; every token of a window after the first is
// scored. PPL = exp(mean NLL); KL = mean over the same positions of KL(p_ref || p), in nats.
// Per window only four scalars come back from the GPU, and the result of a NaN/±Inf check of the
// logits (model and reference): a non-finite logit throws NonFiniteError (exit code 2) naming the
// window and the token position, so a perplexity or KL is never computed from NaN or Inf.

import type { GpuContext } from "../gpu/context.ts";
import { CommandBatch } from "../gpu/encoder.ts";
import { lossBuffers, nextTokenLoss, readLossTotals } from "../nn/loss.ts";
import { NonFiniteError, UsageError } from "../errors.ts";
import { describeNonFinite, FiniteChecks, rowOf } from "../nn/finite.ts";
import type { Encoder } from "../io/data.ts";
import type { LlamaModel } from "./llama.ts";

export interface EvalResult {
  ppl: number;
  /** Scored tokens. */
  tokens: number;
  windows: number;
  meanNll: number;
  /** Mean KL(p_ref || p) in nats; null without a reference model. */
  kl: number | null;
  /** Fraction of positions whose argmax equals the reference argmax (with ref) or the next token (without). */
  top1: number;
  seconds: number;
  /** Tokens through the model(s) per second (window tokens / wall time). */
  tokensPerSecond: number;
}

/** Documents -> one token stream, each document opened by BOS. */
export function tokenStream(tok: Encoder, docs: readonly string[]): number[] {
  const out: number[] = [];
  for (const d of docs) for (const id of tok.encode(d, { bos: true })) out.push(id);
  return out;
}

/** Stream -> non-overlapping windows of `ctx` tokens, the last one possibly shorter (>= 2 tokens). */
export function windows(stream: readonly number[], ctx: number, maxWindows = Infinity): number[][] {
  if (!Number.isInteger(ctx) || ctx < 2) throw new UsageError(`--ctx must be an integer >= 2 (got ${ctx})`);
  const out: number[][] = [];
  for (let i = 0; i < stream.length && out.length < maxWindows; i += ctx) {
    const w = stream.slice(i, i + ctx);
    if (w.length >= 2) out.push(w);
  }
  return out;
}

/**
 * Evaluates `model` (and `ref`) on the windows. Full-length windows go through the model
 * `perForward` at a time as packed sequences; both models must be opened with
 * maxTokens >= perForward * window length.
 */
export async function evaluate(
  ctx: GpuContext,
  model: LlamaModel,
  wins: readonly number[][],
  opts: { ref?: LlamaModel; perForward?: number; onWindow?: (done: number, total: number) => void } = {},
): Promise<EvalResult> {
  if (!wins.length) throw new UsageError("nothing to evaluate: no windows of at least 2 tokens");
  const L = Math.max(...wins.map((w) => w.length));
  const per = Math.max(1, opts.perForward ?? 1);
  const { rows, sums } = lossBuffers(ctx, L * per);
  const checks = new FiniteChecks<"the model" | "the reference model">(ctx, { slots: 2, label: "eval.finite" });
  let nll = 0, kl = 0, top1 = 0, tokens = 0, seen = 0;
  const t0 = performance.now();
  try {
    for (let i = 0; i < wins.length; ) {
      // Full windows in groups of `per`; a shorter window alone.
      let n = 1;
      while (n < per && i + n < wins.length && wins[i].length === L && wins[i + n].length === L) n++;
      const group = wins.slice(i, i + n);
      const ids = group.flat();
      const seq = n > 1 ? L : 0;
      let refLogits;
      if (opts.ref) {
        opts.ref.reset();
        refLogits = await opts.ref.forward(ids, { seq });
      }
      model.reset();
      const logits = await model.forward(ids, { seq });
      const batch = new CommandBatch(ctx.gpu, "eval.loss");
      checks.reset();
      await checks.record(batch, logits, "the model");
      if (refLogits) await checks.record(batch, refLogits, "the reference model");
      await nextTokenLoss(ctx, batch, logits, model.ids(ids.length), rows.view("loss.rows", [ids.length, 4], 0), sums, refLogits, seq);
      batch.submit();
      const r = await readLossTotals(sums);
      for (const f of await checks.read()) {
        // row of the (packed) forward -> window and token position in it
        const { row } = rowOf(f.bad.first, f.shape);
        const w = i + (seq ? Math.floor(row / seq) : 0);
        const pos = seq ? row % seq : row;
        throw new NonFiniteError(`eval window ${w} of ${wins.length}, token position ${pos}`,
          `the logits of ${f.tag} are not finite: ${describeNonFinite(f.bad, f.shape, (_, col) => `token position ${pos} (vocabulary id ${col})`)}`);
      }
      nll += r.nll;
      kl += r.kl;
      top1 += r.top1;
      tokens += r.tokens;
      seen += ids.length;
      i += n;
      opts.onWindow?.(i, wins.length);
    }
  } finally {
    rows.destroy();
    sums.destroy();
    checks.destroy();
  }
  const seconds = (performance.now() - t0) / 1000;
  const meanNll = nll / tokens;
  if (!Number.isFinite(meanNll) || (opts.ref && !Number.isFinite(kl / tokens))) {
    // finite logits give finite losses; this guards the sums themselves
    throw new NonFiniteError("eval", `the mean NLL (${meanNll}) or KL (${opts.ref ? kl / tokens : "-"}) over ${tokens} scored tokens is not finite although every logit was`);
  }
  return {
    ppl: Math.exp(meanNll), tokens, windows: wins.length, meanNll,
    kl: opts.ref ? kl / tokens : null, top1: top1 / tokens, seconds, tokensPerSecond: seen / seconds,
  };
}
