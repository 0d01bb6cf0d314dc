// bench/fuzz.ts — structure-aware fuzzing of every reader and of `wgq inspect` / `wgq quantize`.
//   npx tsx bench/fuzz.ts [--cases 10000] [--seed N] [--workers 2] [--case ID[,ID…]] [--examples 5]
// Prints the figures (cases, typed errors, accepted, crashes, hangs, outputs written from invalid
// input) overall, per target and per file kind, the first examples of every crash / hang / invalid
// output with its mutation and message, and writes everything to bench/results/fuzz.json.
// A case is determined by (seed, id): `--seed S --case ID` replays one.
// Mutations, oracle and tables: bench/fuzz_lib.ts; workers: bench/fuzz_pool.ts, bench/fuzz_worker.ts.

import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { formatFindings, formatTable, OUTCOMES } from "./fuzz_lib.ts";
import { runFuzz } from "./fuzz_pool.ts";

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: npx tsx bench/fuzz.ts [--cases 10000] [--seed N] [--workers 2] [--case ID[,ID…]] [--examples 5]\n`);
  process.exit(1);
}

const opts = { cases: 10_000, seed: 1, workers: 2, examples: 5, ids: undefined as number[] | undefined };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const v = argv[++i];
  const int = (min: number) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) usage(`${a} needs an integer >= ${min}, got ${v}`);
    return n;
  };
  if (a === "--cases") opts.cases = int(1);
  else if (a === "--seed") opts.seed = int(0);
  else if (a === "--workers") opts.workers = int(1);
  else if (a === "--examples") opts.examples = int(0);
  else if (a === "--case") opts.ids = (v ?? "").split(",").map((x) => (Number.isSafeInteger(Number(x)) && x !== "" ? Number(x) : usage(`--case needs case ids, got ${v}`)));
  else usage(`unknown argument ${a}`);
}

// Ctrl-C / kill: exit through 'exit', where the pool kills its workers and removes its temporary folder
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));

const total = opts.ids?.length ?? opts.cases;
const counts: Record<string, number> = Object.fromEntries(OUTCOMES.map((o) => [o, 0]));
let last = 0;
const tty = process.stderr.isTTY;
const run = await runFuzz({
  cases: opts.cases, seed: opts.seed, workers: opts.workers, ids: opts.ids,
  onResult: (r, done) => {
    counts[r.outcome]++;
    if (r.outcome === "crash" || r.outcome === "hang" || r.outcome === "invalid-output") {
      process.stderr.write(`${tty ? "\r\x1b[K" : ""}${r.outcome} #${r.id} ${r.kind} -> ${r.target}: ${r.mutation}\n`);
    }
    const now = performance.now();
    if (done === total || now - last > (tty ? 250 : 15_000)) {
      last = now;
      const line = `${done}/${total} cases: ${OUTCOMES.map((o) => `${counts[o]} ${o}`).join(", ")}`;
      process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
    }
  },
});
if (tty) process.stderr.write("\n");

const f = run.figures;
const out: string[] = [
  `fuzz: ${run.results.length} cases, seed ${run.seed}, ${run.workers} workers (${run.workerStarts} started), ${run.seconds.toFixed(1)} s`,
  "",
  formatTable("target", f.byTarget, f.overall),
  "",
  formatTable("file kind", f.byKind, f.overall),
  "",
  "(accepted, invalid): accepted although the fuzzer's oracle says the input is invalid (readers check their format only, so",
  "this is informational); (typed, valid): a typed error on an input the oracle accepts. Neither counts as a failure.",
  "",
  formatFindings(run.results, opts.examples),
];
process.stdout.write(out.join("\n") + "\n");

const dir = fileURLToPath(new URL("./results/", import.meta.url));
mkdirSync(dir, { recursive: true });
const file = path.join(dir, "fuzz.json");
writeFileSync(file, JSON.stringify({
  command: `npx tsx bench/fuzz.ts ${process.argv.slice(2).join(" ")}`.trim(),
  date: new Date().toISOString(), seed: run.seed, workers: run.workers, workerStarts: run.workerStarts, seconds: run.seconds,
  figures: run.figures, results: run.results,
}, null, 1) + "\n");
process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
process.exitCode = f.overall.crash + f.overall.hang + f.overall["invalid-output"] > 0 ? 1 : 0;
