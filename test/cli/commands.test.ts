// Every wgq command on tiny inputs: help texts, --json shapes, exit codes for bad input. The
// numbers the commands print (perplexity, KL, top-1, held-out loss, generated ids) are checked
// against references computed here, independently: the float64 CPU forward pass on weights
// quantized by the documented rules or read back from the saved files (test/helpers/reference.ts),
// tokens from llama2.c's tokenizer, and greedy decoding by a port of llama2.c's run.c on the
// original checkpoint (test/helpers/llama2c.ts).
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig, type LlamaConfig } from "../../src/model/config.ts";
import { readSafetensorsF32 } from "../helpers/files.ts";
import { rng } from "../helpers/gpu.ts";
import { generateGreedy, LLAMA2C_DIR, Llama2cTokenizer, Llama2cTransformer } from "../helpers/llama2c.ts";
import { blockLinears, greedyRef, readSavedModel, rel, rtnModel, scoreWindows, stories, storyStream, tensorShapes } from "../helpers/reference.ts";

const WGQ = fileURLToPath(new URL("../../bin/wgq.mjs", import.meta.url));
const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));
const SAMPLE = fileURLToPath(new URL("../../../shared/data/tinystories-valid-sample.txt", import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [WGQ, ...args], { encoding: "utf8", timeout: 300_000 });
const tmp = mkdtempSync(join(tmpdir(), "wgq-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Tolerances against the float64 CPU references. Perplexity: 1e-5 relative (f32 GPU logits vs
// float64, ~1e-7 seen). Mean KL: 1e-3 relative — the KL of a quantized model is a small difference
// of log-probabilities (5e-4 nats per token for int8 on stories260K), each carrying the GPU's f32
// rounding (~1e-6 absolute; 2e-5 relative seen). Top-1 agreement: at most 2 positions may flip
// (a near tie of the two largest logits decided differently in f32 and float64).
const KL_REL = 1e-3;
const TOP1_POSITIONS = 2;

/** stories260K for the references: config, fp weights, tensor shapes, llama2.c's tokenizer. */
let stories260K: { c: LlamaConfig; fp: Map<string, Float32Array>; shapes: Map<string, number[]>; tok: Llama2cTokenizer } | null = null;
async function storiesRef() {
  stories260K ??= {
    c: await loadConfig(STORIES),
    fp: readSafetensorsF32(join(STORIES, "model.safetensors")),
    shapes: tensorShapes(STORIES),
    tok: new Llama2cTokenizer(fileURLToPath(new URL("tok512.bin", LLAMA2C_DIR)), 512),
  };
  return stories260K;
}

/** The first n windows of `ctx` tokens of a text's story stream (the evaluation protocol). */
function firstWindows(tok: Llama2cTokenizer, text: string, ctx: number, n: number): number[][] {
  const stream = storyStream(stories(text), (t) => tok.encode(t, false, false), ctx * n);
  return Array.from({ length: n }, (_, i) => stream.slice(i * ctx, (i + 1) * ctx));
}

/** Largest |a − b| over two weight maps' common block linears. */
function maxWeightDiff(a: ReadonlyMap<string, Float32Array>, b: ReadonlyMap<string, Float32Array>, names: readonly string[]): number {
  let worst = 0;
  for (const n of names) {
    const x = a.get(n)!, y = b.get(n)!;
    expect(x.length, n).toBe(y.length);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  }
  return worst;
}

describe("wgq command line", () => {
  it("--help lists every command, and each command's help has examples", () => {
    const top = run("--help");
    expect(top.status).toBe(0);
    const commands = ["doctor", "inspect", "calibrate", "quantize", "qat", "eval", "generate", "demo"];
    for (const c of commands) expect(top.stdout).toMatch(new RegExp(`^  ${c}\\b`, "m"));
    for (const c of commands) {
      const r = run(c, "--help");
      expect(r.status, c).toBe(0);
      expect(r.stdout, c).toMatch(/Examples:/);
    }
  });

  it("inspect --json; a missing path exits 2 with one sentence and a hint, no stack", () => {
    const r = run("inspect", STORIES, "--json");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.parameters ?? j.parameterCount ?? j.params).toBe(260032);
    const bad = run("inspect", join(tmp, "nope"));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^error: .*nope/m);
    expect(bad.stderr).toMatch(/^hint: /m);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it("a corrupt safetensors file and an unsupported architecture exit 2 naming the file and field", () => {
    const corrupt = join(tmp, "corrupt");
    mkdirSync(corrupt);
    copyFileSync(join(STORIES, "config.json"), join(corrupt, "config.json"));
    copyFileSync(join(STORIES, "tokenizer.json"), join(corrupt, "tokenizer.json"));
    writeFileSync(join(corrupt, "model.safetensors"), Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 123, 34, 120, 34]));
    const r = run("eval", "--model", corrupt, "--data", SAMPLE, "--max-windows", "1");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/model\.safetensors/);
    const gpt2 = join(tmp, "gpt2");
    mkdirSync(gpt2);
    writeFileSync(join(gpt2, "config.json"), JSON.stringify({ model_type: "gpt2", architectures: ["GPT2LMHeadModel"], n_embd: 64 }));
    const u = run("inspect", gpt2);
    expect(u.status).toBe(2);
    expect(u.stderr).toMatch(/gpt2/);
    expect(u.stderr).toMatch(/llama/);
  });

  it("quantize --json, then eval --json and generate --json on the result; re-quantizing into it needs --force", async () => {
    const out = join(tmp, "int8");
    const q = run("quantize", "--model", STORIES, "--bits", "8", "--out", out, "--json");
    expect(q.status, q.stderr).toBe(0);
    const rep = JSON.parse(q.stdout);
    expect(rep.bits).toBe(8);
    expect(rep.bytes_out).toBeLessThan(rep.bytes_in);
    expect(existsSync(join(out, "report.html"))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).quantization_config.bits).toBe(8);
    const again = run("quantize", "--model", STORIES, "--bits", "8", "--out", out);
    expect(again.status).toBe(2); // an unusable output is an input error (README exit codes)
    expect(again.stderr).toMatch(/already exists/);
    expect(readdirSync(tmp).filter((f) => f.includes("partial"))).toEqual([]);

    // The saved int8 weights are the documented per-row symmetric RTN of the fp weights, exactly.
    const { c, fp, shapes, tok } = await storiesRef();
    const q8 = rtnModel(fp, c, { bits: 8 }, shapes);
    expect(maxWeightDiff(readSavedModel(out, shapes), q8, blockLinears(c))).toBe(0);

    const e = run("eval", "--model", out, "--ref", STORIES, "--data", SAMPLE, "--max-windows", "2", "--json");
    expect(e.status, e.stderr).toBe(0);
    const lines = e.stdout.trim().split("\n");
    expect(lines.length).toBe(1);
    const ej = JSON.parse(lines[0]);
    for (const k of ["ppl", "tokens", "kl", "top1", "tokens_per_s"]) expect(typeof ej[k], k).toBe("number");
    expect(ej.tokens).toBe(510);
    expect(ej.kl).toBeGreaterThan(0);
    // Reference: the first two 256-token windows of the sample on the float64 CPU forward pass.
    const want = scoreWindows(c, q8, firstWindows(tok, readFileSync(SAMPLE, "utf8"), 256, 2), fp);
    console.log(`int8 eval, 2 windows: ppl ${ej.ppl} (reference ${want.ppl}), KL ${ej.kl} (reference ${want.kl}), top-1 ${ej.top1} (reference ${want.top1})`);
    expect(want.tokens).toBe(510);
    expect(rel(ej.ppl, want.ppl)).toBeLessThan(1e-5);
    expect(rel(ej.kl, want.kl)).toBeLessThan(KL_REL);
    expect(Math.abs(ej.top1 - want.top1) * want.tokens).toBeLessThanOrEqual(TOP1_POSITIONS + 1e-9);

    const g = run("generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "8", "--json");
    expect(g.status, g.stderr).toBe(0);
    const gj = JSON.parse(g.stdout);
    expect(gj.ids.length).toBeGreaterThan(0);
    expect(gj.text).toMatch(/^Once upon a time/);
    // greedy on the same int8 weights, on the CPU
    expect(gj.ids).toEqual(greedyRef(c, q8, tok.encode("Once upon a time", true, false), 8, [1, 2]));
  });

  it("generate --temperature 0 continues a prompt token for token as llama2.c's run.c does on the original checkpoint", async () => {
    const model = Llama2cTransformer.read(fileURLToPath(new URL("stories260K.bin", LLAMA2C_DIR)));
    const tok = new Llama2cTokenizer(fileURLToPath(new URL("tok512.bin", LLAMA2C_DIR)), model.config.vocabSize);
    const prompt = tok.encode("Once upon a time", true, false);
    const n = 80;
    const want = generateGreedy(model, prompt, prompt.length - 1 + n);
    const g = run("generate", "--model", STORIES, "--prompt", "Once upon a time", "--max-tokens", String(n), "--temperature", "0", "--json");
    expect(g.status, g.stderr).toBe(0);
    const gj = JSON.parse(g.stdout);
    const text = tok.decodeText(1, [...prompt.slice(1), ...want]);
    console.log(`llama2.c run.c port: ${JSON.stringify(text)}`);
    expect(want.length).toBe(n); // no BOS within n tokens: the comparison covers all n
    expect(gj.ids).toEqual(want);
    expect(gj.text).toBe(text);
    expect(gj.stopped_by).toBe("max-tokens");
  });

  it("calibrate writes statistics; eval of a missing data file exits 2", () => {
    const f = join(tmp, "stats.safetensors");
    const c = run("calibrate", "--model", STORIES, "--calib", SAMPLE, "--samples", "2", "--seq-len", "32", "--out", f, "--gram", "--quiet");
    expect(c.status, c.stderr).toBe(0);
    expect(existsSync(f)).toBe(true);
    // the Gram matrix XᵀX / tokens: symmetric, and its diagonal is mean x², computed by another kernel
    const st = readSafetensorsF32(f);
    const G = st.get("model.layers.1.down.gram")!, msq = st.get("model.layers.1.down.mean_sq")!;
    const K = msq.length;
    expect(G.length).toBe(K * K);
    let worst = 0;
    for (let i = 0; i < K; i++) {
      worst = Math.max(worst, Math.abs(G[i * K + i] - msq[i]) / msq[i]);
      for (let j = 0; j < i; j++) expect(G[i * K + j]).toBeCloseTo(G[j * K + i], 5);
    }
    expect(worst).toBeLessThan(1e-4);
    const m = run("eval", "--model", STORIES, "--data", join(tmp, "missing.txt"));
    expect(m.status).toBe(2);
    expect(m.stderr).toMatch(/missing\.txt/);
  });

  it("qat trains a few steps, saves a packed model that eval reads, with the loss curve in report.json", async () => {
    const out = join(tmp, "qat");
    const train = join(tmp, "qat-train.txt");
    writeFileSync(train, readFileSync(SAMPLE, "utf8").split(/\n\s*\n/).slice(0, 8).join("\n\n"));
    const q = run("qat", "--model", STORIES, "--train", train, "--bits", "4", "--group-size", "32", "--steps", "3", "--batch", "2",
      "--seq-len", "32", "--eval-every", "2", "--holdout", "0.25", "--out", out, "--quiet");
    expect(q.status, q.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(rep.method).toBe("qat");
    expect(rep.qat.curve.filter((p: { step: number }) => p.step > 0).length).toBe(3);
    expect(rep.qat.held_out.before).toBeGreaterThan(0);
    // Before training, the held-out loss is the KL (--loss kd) of the RTN int4 g32 starting point
    // from the fp model over the held-out documents (the last 2 of 8), in windows of 32 inputs and
    // 32 targets (33 tokens, stride 32), every position scored.
    const { c, fp, shapes, tok } = await storiesRef();
    const hold = storyStream(stories(readFileSync(train, "utf8")).slice(6), (t) => tok.encode(t, false, false));
    const holdWins: number[][] = [];
    for (let i = 0; i + 33 <= hold.length; i += 32) holdWins.push(hold.slice(i, i + 33));
    const before = scoreWindows(c, rtnModel(fp, c, { bits: 4, G: 32, sym: false }, shapes), holdWins, fp);
    console.log(`qat held-out loss before training ${rep.qat.held_out.before} (reference KL ${before.kl} over ${before.tokens} positions)`);
    expect(rel(rep.qat.held_out.before, before.kl)).toBeLessThan(KL_REL);
    const e = run("eval", "--model", out, "--data", SAMPLE, "--max-windows", "2", "--json", "--quiet");
    expect(e.status, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).ppl).toBeGreaterThan(1);
    // eval of the saved model: the CPU forward pass on its weights as read back from the files
    const want = scoreWindows(c, readSavedModel(out, shapes), firstWindows(tok, readFileSync(SAMPLE, "utf8"), 256, 2));
    console.log(`qat model eval, 2 windows: ppl ${JSON.parse(e.stdout).ppl} (reference ${want.ppl})`);
    expect(rel(JSON.parse(e.stdout).ppl, want.ppl)).toBeLessThan(1e-5);
  });

  it("demo --preset tiny --json runs the whole pipeline on a synthetic model", async () => {
    const out = join(tmp, "demo");
    const d = run("demo", "--preset", "tiny", "--json", "--group-size", "32", "--out", out);
    expect(d.status, d.stderr).toBe(0);
    const j = JSON.parse(d.stdout);
    expect(j.model.synthetic).toBe(true);
    expect(j.quantized.map((x: { name: string }) => x.name)).toEqual(["int4 RTN", "int4 AWQ"]);
    for (const x of j.quantized) expect(x.kl).toBeGreaterThan(0);
    expect(j.gemv.int4_ms).toBeGreaterThan(0);
    // References on the kept models: the demo's evaluation tokens (seed 1: Zipf draws of
    // rng(1 + 7), 4·64 calibration tokens then 16 windows of 64), scored on the float64 CPU
    // forward pass — the RTN model quantized here by the documented rules (the saved one must be
    // exactly that), the AWQ model as read back from its files.
    const fpDir = join(out, "fp");
    const c = await loadConfig(fpDir);
    const fp = readSafetensorsF32(join(fpDir, "model.safetensors"));
    const shapes = tensorShapes(fpDir);
    const r = rng(1 + 7);
    const zipf = () => Math.min(c.vocabSize - 1, Math.floor(Math.exp(r() * Math.log(c.vocabSize)) - 1));
    for (let i = 0; i < 4 * 64; i++) zipf();
    const stream = Array.from({ length: 16 * 64 }, zipf);
    const wins = Array.from({ length: 16 }, (_, i) => stream.slice(i * 64, (i + 1) * 64));
    const rtn = rtnModel(fp, c, { bits: 4, G: 32, sym: false }, shapes);
    expect(maxWeightDiff(readSavedModel(join(out, "rtn-int4"), shapes), rtn, blockLinears(c))).toBe(0);
    const want = {
      fp: scoreWindows(c, fp, wins),
      "int4 RTN": scoreWindows(c, rtn, wins, fp),
      "int4 AWQ": scoreWindows(c, readSavedModel(join(out, "awq-int4"), shapes), wins, fp),
    };
    console.log(`demo: fp ppl ${j.fp.ppl} (reference ${want.fp.ppl}); ${j.quantized.map((x: { name: "int4 RTN" | "int4 AWQ"; kl: number; top1: number }) => `${x.name} KL ${x.kl} (reference ${want[x.name].kl}), top-1 ${x.top1} (reference ${want[x.name].top1})`).join("; ")}`);
    expect(rel(j.fp.ppl, want.fp.ppl)).toBeLessThan(1e-5);
    for (const x of j.quantized as { name: "int4 RTN" | "int4 AWQ"; kl: number; top1: number; ppl: number }[]) {
      expect(rel(x.kl, want[x.name].kl), x.name).toBeLessThan(KL_REL);
      expect(rel(x.ppl, want[x.name].ppl), x.name).toBeLessThan(1e-5);
      expect(Math.abs(x.top1 - want[x.name].top1) * want[x.name].tokens, x.name).toBeLessThanOrEqual(TOP1_POSITIONS + 1e-9);
    }
    // what the demo is for: AWQ protects the planted outlier channels that RTN rounds away
    expect(want["int4 AWQ"].kl).toBeLessThan(want["int4 RTN"].kl);
  });
});

describe("Ctrl-C", () => {
  it("stops a quantization cleanly: exit 130, no partial output folder, a message naming what was not written", async () => {
    const { spawn } = await import("node:child_process");
    const parent = join(tmp, "interrupted");
    mkdirSync(parent);
    const out = join(parent, "awq");
    const child = spawn(process.execPath, [WGQ, "quantize", "--model", STORIES, "--method", "awq", "--bits", "4", "--group-size", "32", "--calib", SAMPLE, "--samples", "8", "--seq-len", "64", "--out", out, "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    // Wait until the output folder is being written (its hidden partial sibling exists), then interrupt.
    for (let i = 0; i < 200 && !readdirSync(parent).some((f) => f.includes("partial")); i++) await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(parent).some((f) => f.includes("partial"))).toBe(true);
    child.kill("SIGINT");
    const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted: .*awq was not written/);
    expect(readdirSync(parent)).toEqual([]);
  });
});
