// bench/fuzz_pool.ts — the parent side of the fuzzer: builds the corpus (stories260K copied, resharded
// with the project's sharded writer, exported to GGUF with the project's GGUF writer, the calibration
// text), then runs cases on a pool of worker processes (bench/fuzz_worker.ts). Each case is timed
// here: past its limit the worker is killed (a hang) and replaced; a worker that dies mid-case is a
// crash. Everything lives in one temporary folder, removed at the end (and on exit).

import { fork, type ChildProcess } from "node:child_process";
import { promises as fsp, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { exportGGUF } from "../src/io/gguf.ts";
import { SafetensorsCheckpoint, writeShardedSafetensors } from "../src/io/safetensors.ts";
import { loadConfig } from "../src/model/config.ts";
import { type CaseResult, type Corpus, type Figures, MODEL_DIR, MODEL_FILES, TEXT_FILE, TIME_LIMIT_MS, figures, firstDocuments, loadCorpus, planCase } from "./fuzz_lib.ts";

const WORKER = fileURLToPath(new URL("./fuzz_worker.ts", import.meta.url));
const HOOKS = new URL("./fuzz_hooks.mjs", import.meta.url).href;
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
/** Time a worker may take to start (corpus, device, warm-up quantizations). */
const START_LIMIT_MS = 180_000;
/** Time the worker's own bookkeeping around a case may take (writing the mutant, the oracle). */
const BOOKKEEPING_LIMIT_MS = 60_000;

/** Writes the corpus folder that loadCorpus() reads. */
export async function buildCorpus(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, "model"), { recursive: true });
  await fsp.mkdir(path.join(dir, "shards"), { recursive: true });
  for (const f of MODEL_FILES) await fsp.writeFile(path.join(dir, "model", f), readFileSync(path.join(MODEL_DIR, f)));
  const ck = await SafetensorsCheckpoint.open(MODEL_DIR);
  try {
    const specs = ck.infos().map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
    await writeShardedSafetensors(path.join(dir, "shards"), specs, async (s) => (await ck.read(s.name, "raw")).data, { maxShardBytes: 300_000, metadata: { format: "pt" } });
    const json = (f: string) => JSON.parse(readFileSync(path.join(MODEL_DIR, f), "utf8")) as Record<string, unknown>;
    const tokenizer = { json: json("tokenizer.json"), config: json("tokenizer_config.json"), file: path.join(MODEL_DIR, "tokenizer.json") };
    const config = await loadConfig(MODEL_DIR);
    await exportGGUF(config, ck, tokenizer, path.join(dir, "stories260K.gguf"), { name: "stories260K" });
    await exportGGUF(config, ck, tokenizer, path.join(dir, "stories260K-f16.gguf"), { name: "stories260K", dtype: "F16" });
  } finally {
    await ck.close();
  }
  const text = readFileSync(TEXT_FILE, "utf8");
  await fsp.writeFile(path.join(dir, "calib.txt"), text);
  await fsp.writeFile(path.join(dir, "calib-short.txt"), firstDocuments(text, 12));
}

export interface FuzzOptions {
  /** cases 0..cases-1, unless `ids` names the cases to run */
  readonly cases: number;
  readonly seed: number;
  readonly workers: number;
  readonly ids?: readonly number[];
  /** multiplies every per-case time limit (default 1: 5 s per reader case, 20 s per CLI case) */
  readonly timeScale?: number;
  /** called after every case */
  readonly onResult?: (r: CaseResult, done: number, total: number) => void;
  /** worker stderr lines (Dawn's start-up warnings left out) */
  readonly onWorkerLog?: (line: string) => void;
}

export interface FuzzRun {
  readonly seed: number;
  readonly workers: number;
  readonly seconds: number;
  /** by case id */
  readonly results: CaseResult[];
  readonly figures: Figures;
  /** workers started in all (replacements after hangs, crashes and recycling included) */
  readonly workerStarts: number;
}

interface Slot {
  readonly index: number;
  child: ChildProcess;
  scratch: string;
  ready: boolean;
  /** the case in flight */
  busy: { id: number; timer: NodeJS.Timeout; settled: boolean } | null;
  stderr: string;
  exiting: boolean;
}

const NOISE = /^Warning: maxDynamic\w+PerPipelineLayout artificially reduced/;

export async function runFuzz(o: FuzzOptions): Promise<FuzzRun> {
  const t0 = performance.now();
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-fuzz-"));
  const slots: Slot[] = [];
  const cleanup = () => {
    for (const s of slots) if (s.child.exitCode === null) s.child.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  };
  process.once("exit", cleanup);
  try {
    const corpusDir = path.join(root, "corpus");
    await buildCorpus(corpusDir);
    const corpus = loadCorpus(corpusDir);
    const ids = o.ids ? [...o.ids] : Array.from({ length: o.cases }, (_, i) => i);
    return await new Promise<FuzzRun>((resolve, reject) => {
      run(o, root, corpusDir, corpus, ids, slots, t0, resolve, reject);
    });
  } finally {
    cleanup();
    process.off("exit", cleanup);
  }
}

function run(
  o: FuzzOptions, root: string, corpusDir: string, corpus: Corpus, ids: number[], slots: Slot[], t0: number,
  resolve: (r: FuzzRun) => void, reject: (e: Error) => void,
): void {
  const queue = [...ids];
  const total = ids.length;
  const results = new Map<number, CaseResult>();
  let starts = 0;
  let failedStarts = 0;
  let finished = false;
  let spawnCount = 0;

  /** What the worker's mutant would be, for results the worker could not send (hang, death). */
  const describeCase = (id: number) => {
    const p = planCase(corpus, o.seed, id);
    return { id, kind: p.kind, target: p.target, mutation: p.mutation };
  };

  const record = (r: CaseResult) => {
    if (results.has(r.id)) return;
    results.set(r.id, r);
    o.onResult?.(r, results.size, total);
  };

  const finish = () => {
    if (finished) return;
    finished = true;
    for (const s of slots) {
      s.exiting = true;
      if (s.child.connected) s.child.send({ type: "exit" });
    }
    const all = ids.map((id) => results.get(id)!);
    const seconds = (performance.now() - t0) / 1000;
    // let the workers close their devices; the caller's cleanup kills any that do not within 5 s
    const exited = slots.map((s) => (s.child.exitCode !== null || s.child.signalCode !== null ? Promise.resolve() : new Promise<void>((res) => s.child.once("exit", () => res()))));
    void Promise.race([Promise.all(exited), new Promise((res) => setTimeout(res, 5000))]).then(() => {
      resolve({ seed: o.seed, workers: o.workers, seconds, results: all, figures: figures(all), workerStarts: starts });
    });
  };

  const fail = (msg: string) => {
    if (finished) return;
    finished = true;
    for (const s of slots) s.child.kill("SIGKILL");
    reject(new Error(msg));
  };

  const dispatch = (s: Slot) => {
    if (finished || !s.ready || s.busy || s.exiting) return;
    const id = queue.shift();
    if (id === undefined) {
      if (slots.every((x) => !x.busy) && results.size === total) finish();
      return;
    }
    const timer = setTimeout(() => hang(s, id, BOOKKEEPING_LIMIT_MS, "preparing the case"), BOOKKEEPING_LIMIT_MS);
    s.busy = { id, timer, settled: false };
    s.child.send({ type: "case", id });
  };

  const hang = (s: Slot, id: number, limit: number, phase: string) => {
    if (!s.busy || s.busy.id !== id || s.busy.settled) return;
    s.busy.settled = true;
    record({ ...describeCase(id), outcome: "hang", valid: null, message: `no result ${phase} after ${limit / 1000} s; worker killed`, ms: limit });
    s.child.kill("SIGKILL");
  };

  const spawn = (index: number) => {
    const scratch = path.join(root, `w${index}-${spawnCount++}`);
    starts++;
    const child = fork(WORKER, [corpusDir, scratch, String(o.seed)], {
      execArgv: ["--import", TSX, "--import", HOOKS],
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    const s: Slot = { index, child, scratch, ready: false, busy: null, stderr: "", exiting: false };
    slots[index] = s;
    const startTimer = setTimeout(() => {
      if (!s.ready) fail(`fuzz worker did not start within ${START_LIMIT_MS / 1000} s:\n${s.stderr.slice(-2000)}`);
    }, START_LIMIT_MS);
    let rest = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      for (const l of lines) {
        if (NOISE.test(l)) continue;
        s.stderr = (s.stderr + l + "\n").slice(-8000);
        o.onWorkerLog?.(l);
      }
    });
    child.stdout!.resume();
    child.on("message", (m: { type: string; id?: number; result?: CaseResult; last?: boolean; message?: string }) => {
      if (m.type === "ready") {
        clearTimeout(startTimer);
        s.ready = true;
        failedStarts = 0;
        dispatch(s);
      } else if (m.type === "start" && s.busy && s.busy.id === m.id) {
        const id = m.id;
        const limit = TIME_LIMIT_MS(describeCase(id).target) * (o.timeScale ?? 1);
        clearTimeout(s.busy.timer);
        s.busy.timer = setTimeout(() => hang(s, id, limit, "from the target"), limit);
      } else if (m.type === "ran" && s.busy && s.busy.id === m.id) {
        const id = m.id;
        clearTimeout(s.busy.timer);
        s.busy.timer = setTimeout(() => hang(s, id, BOOKKEEPING_LIMIT_MS, "from the fuzzer's oracle (the target had finished)"), BOOKKEEPING_LIMIT_MS);
      } else if (m.type === "result" && m.result) {
        if (s.busy && s.busy.id === m.result.id) {
          clearTimeout(s.busy.timer);
          if (!s.busy.settled) record(m.result);
          s.busy = null;
        }
        if (m.last) s.exiting = true;
        else dispatch(s);
      } else if (m.type === "fatal") {
        fail(`fuzz worker failed: ${m.message}\n${s.stderr.slice(-2000)}`);
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(startTimer);
      rmSync(scratch, { recursive: true, force: true });
      if (finished) return;
      if (s.busy) {
        clearTimeout(s.busy.timer);
        if (!s.busy.settled) {
          record({ ...describeCase(s.busy.id), outcome: "crash", valid: null, message: `worker died during the case (${signal ?? `exit code ${code}`})\n${s.stderr.slice(-600)}`, ms: 0 });
        }
        s.busy = null;
      }
      if (!s.ready && ++failedStarts >= 3) {
        fail(`fuzz worker exits before it is ready (${signal ?? `exit code ${code}`}):\n${s.stderr.slice(-2000)}`);
        return;
      }
      if (queue.length > 0) spawn(index);
      else if (slots.every((x) => !x.busy) && results.size === total) finish();
    });
  };

  if (total === 0) {
    finish();
    return;
  }
  for (let i = 0; i < Math.max(1, Math.min(o.workers, total)); i++) spawn(i);
}
