// bench/stream.ts — does `wgq quantize` stream a model of any depth? Builds SYNTHETIC Llama
// checkpoints (random weights, real 1B shapes: hidden 2048, intermediate 5632, vocab 32000, 32 heads,
// 4 KV heads of 64, 2048 positions) with L blocks as sharded f16 safetensors, runs `wgq quantize`
// (RTN and AWQ, int4 g128) on each, and samples the peak RSS of the whole process tree (the wgq
// wrapper and its child, VmRSS summed every ~100 ms) and the wall time. A streaming quantizer keeps
// the peak RSS flat as L grows; one that holds every block grows by a fixed amount per block.
//
//   npx tsx bench/stream.ts [--layers 4,16] [--methods rtn,awq] [--awq-layers 4,8] [--dir /tmp/wgq-stream] [--keep] [--code LABEL]
//
// --layers: the depths RTN runs at; --awq-layers: those AWQ runs at (default 4,8: AWQ on lavapipe
// takes ~80 s per block with these settings, so L=16 alone would take over 20 minutes); --code: a
// label of the code measured, stored in the JSON (default: the checkout's commit).
// Writes bench/results/stream.json (same keys on every run, for before/after comparisons) and
// prints a Markdown table. Everything temporary lives under --dir: checkpoints ckpt-L<n>/ and
// outputs out-L<n>-<method>/, removed at the end unless --keep (a kept checkpoint is reused).

import { spawn } from "node:child_process";
import { promises as fsp, readdirSync, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { writeShardedSafetensors } from "../src/io/safetensors.ts";
import { expectedTensors, parseConfig } from "../src/model/config.ts";
import { syntheticConfigJson, syntheticTensor } from "../src/model/synthetic.ts";
import { f32ToF16Bits } from "../src/ref/f16.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const WGQ = path.join(ROOT, "bin", "wgq.mjs");
const TOKENIZER_DIR = path.resolve(ROOT, "../shared/models/stories260K");
const CALIB = path.resolve(ROOT, "../shared/data/tinystories-valid-sample.txt");
const RESULTS = path.join(ROOT, "bench", "results", "stream.json");
const SHARD_BYTES = 2e9;
const MARKER = ".stream-bench.json";
const SYNTH = { seed: 1, outliers: 4 };
const MiB = 2 ** 20;

// --- options -------------------------------------------------------------------------------------

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}
const ints = (s: string) => s.split(",").map((x) => Number(x)).filter((x) => Number.isInteger(x) && x > 0);
const layers = ints(option("--layers", "4,16"));
const methods = option("--methods", "rtn,awq").split(",").filter((m) => m === "rtn" || m === "awq");
// AWQ takes ~80 s per 1B-shaped block on lavapipe (2 cores), so its deepest default checkpoint is L=8
const awqLayers = ints(option("--awq-layers", "4,8"));
const dir = path.resolve(option("--dir", "/tmp/wgq-stream"));
const keep = process.argv.includes("--keep");
/** Paths this run made under --dir: the only ones it removes. */
const created: string[] = [];

const QUANTIZE_ARGS: Record<string, string[]> = {
  rtn: ["--method", "rtn", "--bits", "4", "--group-size", "128"],
  awq: ["--method", "awq", "--bits", "4", "--group-size", "128", "--calib", CALIB, "--samples", "1", "--seq-len", "64", "--clip-tokens", "64"],
};

// --- synthetic checkpoint ------------------------------------------------------------------------

function configJson(L: number): Record<string, unknown> {
  return { ...syntheticConfigJson("1b"), num_hidden_layers: L, num_key_value_heads: 4, max_position_embeddings: 2048,
    bos_token_id: 1, eos_token_id: 2, torch_dtype: "float16", tie_word_embeddings: false };
}

/** Writes ckpt-L<L>/ (or reuses a complete one from an earlier --keep run); returns its size on disk. */
async function buildCheckpoint(L: number): Promise<{ dir: string; bytes: number; seconds: number; reused: boolean }> {
  const ck = path.join(dir, `ckpt-L${L}`);
  const json = configJson(L);
  const marker = JSON.stringify({ config: json, synthetic: SYNTH });
  const existing = await fsp.readFile(path.join(ck, MARKER), "utf8").catch(() => null);
  if (existing === marker) {
    created.push(ck);
    return { dir: ck, bytes: await sizeOf(ck), seconds: 0, reused: true };
  }
  if (await exists(ck)) {
    if (existing === null) throw new Error(`${ck} exists and was not written by this bench; choose another --dir`);
    await fsp.rm(ck, { recursive: true });
  }
  created.push(ck);
  const t0 = performance.now();
  await fsp.mkdir(ck, { recursive: true });
  const c = parseConfig(json, `synthetic:1b-L${L}`);
  await fsp.writeFile(path.join(ck, "config.json"), JSON.stringify(json, null, 2) + "\n");
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await fsp.copyFile(path.join(TOKENIZER_DIR, f), path.join(ck, f));
  const specs = expectedTensors(c).map((t) => ({ name: t.name, dtype: "F16" as const, shape: t.shape }));
  // one tensor at a time: generated in f32, converted to f16, written, dropped
  await writeShardedSafetensors(ck, specs, (s) => {
    const a = syntheticTensor(c, s.name, SYNTH);
    const h = new Uint16Array(a.length);
    for (let i = 0; i < a.length; i++) h[i] = f32ToF16Bits(a[i]);
    return h;
  }, { maxShardBytes: SHARD_BYTES, metadata: { format: "pt", producer: "webgpu-quant bench/stream.ts (synthetic, random weights)" } });
  await fsp.writeFile(path.join(ck, MARKER), marker);
  return { dir: ck, bytes: await sizeOf(ck), seconds: (performance.now() - t0) / 1000, reused: false };
}

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(() => true, () => false);
}

async function sizeOf(d: string): Promise<number> {
  let n = 0;
  for (const f of await fsp.readdir(d)) if (f.endsWith(".safetensors")) n += (await fsp.stat(path.join(d, f))).size;
  return n;
}

// --- process-tree RSS ----------------------------------------------------------------------------

/** pid -> VmRSS summed over it and every descendant (bytes); processes gone mid-scan are skipped. */
function treeRss(root: number): number {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid)!.push(Number(e));
    } catch { /* exited */ }
  }
  let sum = 0;
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) sum += Number(m[1]) * 1024;
    } catch { /* exited */ }
    todo.push(...(children.get(pid) ?? []));
  }
  return sum;
}

interface RunResult { code: number | null; wall: number; peakRss: number; samples: number; stderr: string }

async function runSampled(args: string[]): Promise<RunResult> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [WGQ, ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr = (stderr + d).slice(-4000); });
  let peakRss = 0, samples = 0;
  const timer = setInterval(() => {
    peakRss = Math.max(peakRss, treeRss(child.pid!));
    samples++;
  }, 100);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearInterval(timer);
  return { code, wall: (performance.now() - t0) / 1000, peakRss, samples, stderr };
}

/** The first numeric field anywhere in the report whose key names a GPU peak (e.g. peak_gpu_bytes). */
function gpuPeak(report: unknown): number | null {
  if (report === null || typeof report !== "object") return null;
  for (const [k, v] of Object.entries(report)) {
    if (typeof v === "number" && /gpu/i.test(k) && /peak/i.test(k)) return v;
    if (/gpu/i.test(k) && v && typeof v === "object" && typeof (v as Record<string, unknown>).peak_bytes === "number") return (v as Record<string, number>).peak_bytes;
  }
  for (const v of Object.values(report)) {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const p = gpuPeak(v);
      if (p !== null) return p;
    }
  }
  return null;
}

// --- main ----------------------------------------------------------------------------------------

interface Row {
  layers: number; method: string; wall_s: number; peak_rss_mib: number; rss_per_layer_mib: number;
  gpu_peak_mib: number | null; checkpoint_mib: number; output_mib: number | null; seconds: Record<string, number> | null;
  rss_samples: number; exit_code: number | null; load_avg_1m: number;
}

const log = (s: string) => process.stderr.write(`${s}\n`);
await fsp.mkdir(dir, { recursive: true });
const rows: Row[] = [];
let device = "";
try {
  const checkpoints: Record<number, Awaited<ReturnType<typeof buildCheckpoint>>> = {};
  const needed = [...new Set([...layers, ...(methods.includes("awq") ? awqLayers : [])])].sort((a, b) => a - b);
  for (const L of needed) {
    checkpoints[L] = await buildCheckpoint(L);
    const ck = checkpoints[L];
    log(`checkpoint L=${L}: ${(ck.bytes / 2 ** 30).toFixed(2)} GiB f16 ${ck.reused ? "(reused)" : `built in ${ck.seconds.toFixed(0)} s`}`);
  }
  for (const method of methods) {
    for (const L of method === "awq" ? awqLayers : layers) {
      const out = path.join(dir, `out-L${L}-${method}`);
      if (await exists(out)) await fsp.rm(out, { recursive: true });
      created.push(out);
      log(`quantize L=${L} ${method} ...`);
      const load = os.loadavg()[0];
      const r = await runSampled(["quantize", "--model", checkpoints[L].dir, ...QUANTIZE_ARGS[method], "--out", out, "--quiet"]);
      if (r.code !== 0) log(`  failed (exit ${r.code}):\n${r.stderr}`);
      const report = await fsp.readFile(path.join(out, "report.json"), "utf8").then(JSON.parse, () => null);
      if (report?.device) device = report.device;
      const gpu = report ? gpuPeak(report) : null;
      const row: Row = {
        layers: L, method, wall_s: +r.wall.toFixed(1), peak_rss_mib: +(r.peakRss / MiB).toFixed(0),
        rss_per_layer_mib: +(r.peakRss / MiB / L).toFixed(1), gpu_peak_mib: gpu === null ? null : +(gpu / MiB).toFixed(0),
        checkpoint_mib: +(checkpoints[L].bytes / MiB).toFixed(0), output_mib: report ? +(report.bytes_out / MiB).toFixed(0) : null,
        seconds: report?.seconds ?? null, rss_samples: r.samples, exit_code: r.code, load_avg_1m: +load.toFixed(1),
      };
      rows.push(row);
      log(`  ${row.wall_s} s, peak RSS ${row.peak_rss_mib} MiB`);
      if (!keep) await fsp.rm(out, { recursive: true, force: true });
    }
  }
} finally {
  if (!keep) {
    for (const p of created) await fsp.rm(p, { recursive: true, force: true });
    await fsp.rmdir(dir).catch(() => { /* not empty: something else lives there */ });
  }
}

// growth of the peak RSS per extra block, between the smallest and the largest L of each method
const growth: Record<string, number | null> = {};
for (const m of methods) {
  const rs = rows.filter((r) => r.method === m && r.exit_code === 0).sort((a, b) => a.layers - b.layers);
  const [a, b] = [rs[0], rs[rs.length - 1]];
  growth[m] = a && b && b.layers > a.layers ? +((b.peak_rss_mib - a.peak_rss_mib) / (b.layers - a.layers)).toFixed(1) : null;
}

// the code measured: --code LABEL, else the checkout's commit (+ "-dirty" with uncommitted changes)
let commit = option("--code", "");
if (!commit) {
  try {
    const git = (...a: string[]) => execFileSync("git", a, { cwd: ROOT, encoding: "utf8" }).trim();
    commit = git("rev-parse", "--short", "HEAD") + (git("status", "--porcelain", "--untracked-files=no") ? "-dirty" : "");
  } catch {
    commit = "unknown";
  }
}
const result = {
  note: "SYNTHETIC models: random weights with real Llama 1B shapes; quality numbers are meaningless, memory and time are real",
  model: { hidden_size: 2048, intermediate_size: 5632, vocab_size: 32000, num_attention_heads: 32, num_key_value_heads: 4, head_dim: 64,
    max_position_embeddings: 2048, dtype: "f16", shard_bytes: SHARD_BYTES, synthetic: SYNTH },
  commands: Object.fromEntries(methods.map((m) => [m, `node bin/wgq.mjs quantize --model DIR ${QUANTIZE_ARGS[m].join(" ").replace(CALIB, "../shared/data/tinystories-valid-sample.txt")} --out OUT --quiet`])),
  rss: "peak over ~100 ms samples of VmRSS summed over the wgq process tree (shared pages counted once per process)",
  code: commit,
  machine: { device, cpus: os.cpus().length, mem_gib: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version },
  date: new Date().toISOString(),
  rows,
  rss_growth_mib_per_layer: growth,
};
await fsp.mkdir(path.dirname(RESULTS), { recursive: true });
await fsp.writeFile(RESULTS, JSON.stringify(result, null, 2) + "\n");

const lines = [
  "SYNTHETIC checkpoints (random weights, real Llama 1B shapes, f16 safetensors); " + (device ? `device: ${device}` : ""),
  "",
  "| checkpoint L | method | wall s | peak RSS MiB | RSS/L MiB | GPU peak MiB |",
  "|---:|---|---:|---:|---:|---:|",
  ...rows.map((r) => `| ${r.layers} | ${r.method}${r.exit_code === 0 ? "" : ` (exit ${r.exit_code})`} | ${r.wall_s.toFixed(1)} | ${r.peak_rss_mib} | ${r.rss_per_layer_mib.toFixed(1)} | ${r.gpu_peak_mib ?? "n/a"} |`),
  "",
  ...methods.map((m) => `${m}: peak RSS grows ${growth[m] ?? "n/a"} MiB per extra block (0 = streams)`),
];
console.log(lines.join("\n"));
log(`wrote ${path.relative(process.cwd(), RESULTS)}${keep ? `; kept ${dir}` : ""}`);
