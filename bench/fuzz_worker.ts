// bench/fuzz_worker.ts — one fuzz worker process, started by bench/fuzz_pool.ts as
//   node --import tsx --import bench/fuzz_hooks.mjs bench/fuzz_worker.ts <corpus> <scratch> <seed>
// It runs cases one at a time, in-process: the readers directly, `wgq inspect` / `wgq quantize`
// through the CLI's own commands (one shared GPU context, see fuzz_gpu.ts). The parent times each
// case and kills the worker on a hang; a dead worker is a crash.
//   parent -> worker: {type: "case", id} | {type: "exit"}
//   worker -> parent: {type: "ready"} | {type: "start", id} | {type: "result", result} | {type: "fatal", message}

import { existsSync, promises as fsp, readdirSync } from "node:fs";
import * as path from "node:path";
import { Command, CommanderError } from "commander";
import { WgqError } from "../src/errors.ts";
import { SafetensorsCheckpoint } from "../src/io/safetensors.ts";
import { GGUFFile, configFromGGUF, tokenizerFromGGUF } from "../src/io/gguf.ts";
import { TextTokenizer } from "../src/io/tokenizer.ts";
import { evalWindows, packCalibrationFallback, readDocuments, tokenizeDocuments } from "../src/io/data.ts";
import { loadConfig, parameterCount } from "../src/model/config.ts";
import { inspectCommand } from "../src/cli/commands/inspect.ts";
import { quantizeCommand } from "../src/cli/commands/quantize.ts";
import { openedContext, releaseContext } from "./fuzz_gpu.ts";
import {
  AWQ_SAMPLES, AWQ_SEQ_LEN, type CasePlan, type CaseResult, type Outcome, SAMPLE_TEXT, corpusTokenizer, isCli, loadCorpus, modelVerdict,
  planCase, readerVerdict,
} from "./fuzz_lib.ts";

const [corpusDir, scratch, seedArg] = process.argv.slice(2);
const seed = Number(seedArg);
const corpus = loadCorpus(corpusDir);
const oracleTokenizer = corpusTokenizer(corpus);
const send = (m: unknown) => process.send!(m);
/** Cases before the worker exits to be replaced by a fresh one (bounds anything leaked). */
const RECYCLE_AFTER = 400;

// --- output capture and process.exit ------------------------------------------------------------

let captured = "";
const keep = (s: unknown) => {
  captured += String(s);
  if (captured.length > 1 << 16) captured = captured.slice(-(1 << 15));
};
const realStdout = process.stdout.write.bind(process.stdout);
const realStderr = process.stderr.write.bind(process.stderr);
const realExit = process.exit.bind(process);

class ExitCalled extends Error {
  constructor(readonly code: number) {
    super(`process.exit(${code}) called`);
  }
}

function capture(on: boolean): void {
  const sink = ((chunk: unknown, ...rest: unknown[]) => {
    keep(chunk);
    const cb = rest.find((x) => typeof x === "function") as (() => void) | undefined;
    cb?.();
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = on ? sink : realStdout;
  process.stderr.write = on ? sink : realStderr;
  process.exit = on ? (((code?: number) => { throw new ExitCalled(code ?? 0); }) as typeof process.exit) : realExit;
}

/** An error -> one line plus the first stack frames (for crash reports). */
function describe(e: unknown): string {
  if (!(e instanceof Error)) return `non-Error thrown: ${String(e).slice(0, 200)}`;
  const frames = (e.stack ?? "").split("\n").filter((l) => l.trim().startsWith("at ")).slice(0, 4).map((l) => l.trim().replace(/file:\/\/\S*?\/work\/main\//, ""));
  return [`${e.name}: ${e.message.slice(0, 300)}`, ...frames].join("\n");
}

// --- the CLI, in-process ------------------------------------------------------------------------

/** argv -> exit code as bin/wgq.mjs would give it; `unexpected` when main.ts would print "this is unexpected". */
async function runCli(args: string[]): Promise<{ exit: number; unexpected?: string }> {
  const out = { writeOut: keep, writeErr: keep };
  const program = new Command("wgq").exitOverride().configureOutput(out);
  for (const c of [inspectCommand(), quantizeCommand()]) program.addCommand(c.exitOverride().configureOutput(out));
  try {
    await program.parseAsync(args, { from: "user" });
    return { exit: 0 };
  } catch (e) {
    if (e instanceof CommanderError) return { exit: e.exitCode === 0 ? 0 : 1 };
    if (e instanceof ExitCalled) return { exit: e.code };
    if (e instanceof WgqError) {
      keep(`error: ${e.message}\n`);
      return { exit: e.exitCode };
    }
    return { exit: 1, unexpected: describe(e) };
  }
}

function cliArgs(plan: CasePlan, dir: string): string[] {
  const input = path.join(dir, plan.input);
  if (plan.target === "inspect") return ["inspect", input, "--json"];
  const args = ["quantize", "--model", input, "--out", path.join(dir, "out"), "--bits", "4", "--group-size", String(plan.groupSize), "--quiet"];
  if (plan.sym) args.push("--sym");
  if (plan.target === "quantize-awq") args.push("--method", "awq", "--calib", path.join(dir, plan.calib!), "--samples", String(AWQ_SAMPLES), "--seq-len", String(AWQ_SEQ_LEN));
  return args;
}

// --- the readers --------------------------------------------------------------------------------

let baseTokenizer: TextTokenizer | null = null;

async function runReader(plan: CasePlan, input: string): Promise<void> {
  switch (plan.target) {
    case "safetensors":
    case "sharded": {
      const ck = await SafetensorsCheckpoint.open(input);
      try {
        for (const n of ck.names()) {
          const t = ck.info(n);
          await ck.read(n, "raw");
          await ck.read(n, "f32");
          if (t.numel <= 1 << 16) await ck.read(n, "f16");
        }
      } finally {
        await ck.close();
      }
      return;
    }
    case "gguf": {
      const g = await GGUFFile.open(input);
      try {
        configFromGGUF(g);
        const tok = tokenizerFromGGUF(g);
        tok.decode(tok.encode(SAMPLE_TEXT));
        for (const n of g.tensors.keys()) {
          await g.read(n, "raw");
          await g.read(n, "f32");
        }
        for (const n of g.hfNames()) await g.readHF(n, "f32");
      } finally {
        await g.close();
      }
      return;
    }
    case "config":
      parameterCount(await loadConfig(input));
      return;
    case "tokenizer": {
      const tok = await TextTokenizer.fromHF(input);
      tok.decode(tok.encode(SAMPLE_TEXT));
      tok.encode(SAMPLE_TEXT, { bos: true, eos: false });
      return;
    }
    case "data": {
      baseTokenizer ??= await TextTokenizer.fromHF(path.join(corpusDir, "model"));
      const docs = tokenizeDocuments(baseTokenizer, await readDocuments(input));
      packCalibrationFallback(docs, { n: AWQ_SAMPLES, L: AWQ_SEQ_LEN, seed: 1, source: input });
      evalWindows(docs, AWQ_SEQ_LEN, input);
      return;
    }
    default:
      throw new Error(`fuzz: ${plan.target} is not a reader`);
  }
}

// --- cases --------------------------------------------------------------------------------------

let current: { id: number; plan: CasePlan; t0: number } | null = null;

async function writeCase(plan: CasePlan, dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  for (const [rel, bytes] of plan.files) {
    const p = path.join(dir, rel);
    if (bytes === null) await fsp.mkdir(p, { recursive: true });
    else await fsp.writeFile(p, bytes);
  }
}

async function runCase(id: number): Promise<CaseResult> {
  const plan = planCase(corpus, seed, id);
  const dir = path.join(scratch, `c${id}`);
  await writeCase(plan, dir);
  const input = path.join(dir, plan.input);
  send({ type: "start", id });
  current = { id, plan, t0: performance.now() };
  let outcome: Outcome;
  let message: string | undefined;
  let exitCode: number | undefined;
  let partialLeft: boolean | undefined;
  captured = "";
  if (isCli(plan.target)) {
    capture(true);
    let r: { exit: number; unexpected?: string };
    try {
      r = await runCli(cliArgs(plan, dir));
    } finally {
      capture(false);
    }
    exitCode = r.exit;
    const errorLines = captured.split("\n").filter((l) => /^(error|hint): /.test(l)).join("\n");
    if (r.unexpected) {
      outcome = "crash";
      message = `unexpected error (the CLI would print "this is unexpected"):\n${r.unexpected}`;
    } else if (![0, 1, 2, 3].includes(r.exit)) {
      outcome = "crash";
      message = `exit code ${r.exit}\n${captured.slice(-400)}`;
    } else {
      outcome = r.exit === 0 ? "accepted" : "typed";
      message = r.exit === 0 ? undefined : (errorLines || captured.trim().split("\n").slice(-2).join("\n")).slice(0, 400);
      if (r.exit !== 0 && !errorLines) {
        outcome = "crash";
        message = `exit ${r.exit} without an error: line\n${captured.slice(-400)}`;
      }
    }
  } else {
    try {
      await runReader(plan, input);
      outcome = "accepted";
    } catch (e) {
      if (e instanceof WgqError && (e.exitCode === 1 || e.exitCode === 2)) {
        outcome = "typed";
        message = `${e.name}: ${e.message}`.slice(0, 400);
      } else {
        outcome = "crash";
        message = describe(e);
      }
    }
  }
  const ms = performance.now() - current.t0;
  send({ type: "ran", id });
  // the oracle, after the target: whether an input the target accepted (or wrote an output from) is valid
  let verdict: { valid: boolean; why: string } | null = null;
  try {
    if (plan.target === "quantize" || plan.target === "quantize-awq") {
      verdict = modelVerdict(input, plan.target === "quantize-awq" ? path.join(dir, plan.calib!) : undefined);
      const wrote = existsSync(path.join(dir, "out"));
      if (wrote && !verdict.valid && outcome !== "crash") outcome = "invalid-output";
      if (exitCode !== 0) partialLeft = readdirSync(dir).some((n) => n.startsWith(".out.partial-"));
    } else if (!isCli(plan.target)) {
      verdict = readerVerdict(plan.target, input, oracleTokenizer);
    }
  } catch (e) {
    message = `${message ? `${message}\n` : ""}(the fuzzer's oracle failed: ${describe(e).split("\n")[0]})`;
  }
  // a device error raised by this case (uncaptured, or a lost device) is a crash of this case
  const ctx = openedContext();
  if (ctx) {
    try {
      const c = await ctx;
      c.gpu.check();
      if (c.gpu.stats.liveBytes > 512 << 20) releaseContext();
    } catch (e) {
      releaseContext();
      if (outcome !== "crash") {
        outcome = "crash";
        message = `the device reported an error after this case: ${describe(e)}`;
      }
    }
  }
  current = null;
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3 });
  return {
    id, kind: plan.kind, target: plan.target, mutation: plan.mutation, outcome, valid: verdict?.valid ?? null,
    ...(verdict && !verdict.valid ? { why: verdict.why } : {}),
    ...(exitCode !== undefined ? { exitCode } : {}), ...(message ? { message } : {}), ...(partialLeft ? { partialLeft } : {}), ms,
  };
}

// --- lifecycle ----------------------------------------------------------------------------------

function dieWith(kind: string, e: unknown): void {
  capture(false);
  if (current) {
    const { id, plan, t0 } = current;
    const r: CaseResult = { id, kind: plan.kind, target: plan.target, mutation: plan.mutation, outcome: "crash", valid: null, message: `${kind}: ${describe(e)}`, ms: performance.now() - t0 };
    send({ type: "result", result: r });
  } else {
    send({ type: "fatal", message: `${kind} outside a case: ${describe(e)}` });
  }
  setTimeout(() => realExit(70), 100);
}
process.on("uncaughtException", (e) => dieWith("uncaught exception", e));
// the parent is gone (killed): nothing will read the results
process.on("disconnect", () => realExit(0));
process.on("unhandledRejection", (e) => dieWith("unhandled rejection", e));

/** One valid RTN and one valid AWQ run: compiles the pipelines before any case is timed. */
async function warmUp(): Promise<void> {
  const dir = path.join(scratch, "warm");
  await fsp.mkdir(path.join(dir, "model"), { recursive: true });
  for (const [n, b] of corpus.model) await fsp.writeFile(path.join(dir, "model", n), b);
  await fsp.writeFile(path.join(dir, "calib.txt"), corpus.textShort);
  const model = path.join(dir, "model");
  for (const args of [
    ["quantize", "--model", model, "--out", path.join(dir, "rtn"), "--quiet"],
    ["quantize", "--model", model, "--out", path.join(dir, "awq"), "--quiet", "--method", "awq", "--calib", path.join(dir, "calib.txt"), "--samples", "2", "--seq-len", "32"],
  ]) {
    captured = "";
    capture(true);
    let r: { exit: number; unexpected?: string };
    try {
      r = await runCli(args);
    } finally {
      capture(false);
    }
    if (r.exit !== 0) throw new Error(`warm-up '${args.join(" ")}' failed (exit ${r.exit}): ${r.unexpected ?? captured.slice(-600)}`);
  }
  await fsp.rm(dir, { recursive: true, force: true });
}

let done = 0;
let queue: Promise<void> = Promise.resolve();
process.on("message", (m: { type: string; id?: number }) => {
  if (m.type === "exit") {
    queue = queue.then(() => realExit(0));
    return;
  }
  if (m.type !== "case") return;
  queue = queue.then(async () => {
    const result = await runCase(m.id!);
    const last = ++done >= RECYCLE_AFTER;
    send({ type: "result", result, last });
    if (last) setTimeout(() => realExit(0), 50);
  });
});

try {
  await warmUp();
  send({ type: "ready" });
} catch (e) {
  send({ type: "fatal", message: describe(e) });
  setTimeout(() => realExit(71), 100);
}
