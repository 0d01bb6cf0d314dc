// cli/util.ts — option parsers, progress display and interrupt handling shared by the commands.

import { InvalidArgumentError } from "commander";
import cliProgress from "cli-progress";
import { UsageError } from "../errors.ts";
import type { LlamaConfig } from "../model/config.ts";

export function intOption(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function floatOption(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
    return n;
  };
}

/** Whether stderr is an interactive terminal (bin/wgq.mjs passes it through WGQ_STDERR_TTY). */
export function stderrIsTTY(): boolean {
  return !!process.stderr.isTTY || process.env.WGQ_STDERR_TTY === "1";
}

/**
 * Progress of one phase on stderr: a cli-progress bar with ETA on a terminal, one line per 10 %
 * otherwise; null label = silent. Call with (done, total, detail?).
 */
export function progressLine(label: string | null): ((done: number, total: number, detail?: string) => void) | null {
  if (!label) return null;
  if (stderrIsTTY()) {
    const bar = new cliProgress.SingleBar(
      { format: `${label.padEnd(9)} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} | {detail}`, stream: process.stderr, hideCursor: true, etaBuffer: 20, noTTYOutput: false },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return (done, total, detail = "") => {
      if (!started) {
        bar.start(total, 0, { detail });
        started = true;
      }
      bar.setTotal(total);
      bar.update(done, { detail });
      if (done >= total) bar.stop();
    };
  }
  const t0 = performance.now();
  let lastDecile = -1;
  return (done, total, detail) => {
    const d = Math.floor((10 * done) / total);
    if (d === lastDecile) return;
    lastDecile = d;
    const el = (performance.now() - t0) / 1000;
    const eta = done ? (el / done) * (total - done) : 0;
    process.stderr.write(`${label} ${done}/${total} (${((100 * done) / total).toFixed(0)} %, ${el.toFixed(1)} s, ETA ${eta.toFixed(1)} s)${detail ? ` ${detail}` : ""}\n`);
  };
}

/**
 * Refuses token counts beyond the model's max_position_embeddings (RoPE positions it never saw)
 * unless `allow` (--allow-long-context). `lengths`: [option name, tokens] pairs.
 */
export function checkContextLength(config: LlamaConfig, source: string, lengths: readonly [string, number][], allow: boolean | undefined): void {
  if (allow) return;
  for (const [option, n] of lengths) {
    if (n > config.maxPositionEmbeddings) {
      throw new UsageError(`${option} ${n} is longer than the model's context (max_position_embeddings ${config.maxPositionEmbeddings} in ${source})`,
        `use ${option} ${config.maxPositionEmbeddings} or less, or pass --allow-long-context to run past the positions the model was trained on`);
    }
  }
}
