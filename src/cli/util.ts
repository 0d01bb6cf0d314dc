// cli/util.ts — option parsers and a progress line shared by the commands.

import { InvalidArgumentError } from "commander";

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

/** A progress reporter on stderr: one updating line on a terminal, a line per 10 % otherwise; null = silent. */
export function progressLine(label: string | null): ((done: number, total: number) => void) | null {
  if (!label) return null;
  const tty = process.stderr.isTTY || process.env.WGQ_STDERR_TTY === "1";
  const t0 = performance.now();
  let lastDecile = -1;
  return (done, total) => {
    const el = (performance.now() - t0) / 1000;
    const eta = done ? (el / done) * (total - done) : 0;
    const msg = `${label} ${done}/${total} (${((100 * done) / total).toFixed(0)} %, ${el.toFixed(1)} s, ETA ${eta.toFixed(1)} s)`;
    if (tty) process.stderr.write(`\r${msg}${done === total ? "\n" : ""}`);
    else {
      const d = Math.floor((10 * done) / total);
      if (d !== lastDecile) {
        lastDecile = d;
        process.stderr.write(msg + "\n");
      }
    }
  };
}
