// Every wgq command on tiny inputs: help texts, --json shapes, exit codes for bad input.
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, existsSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readSafetensorsF32 } from "../helpers/files.ts";

const WGQ = fileURLToPath(new URL("../../bin/wgq.mjs", import.meta.url));
const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));
const SAMPLE = fileURLToPath(new URL("../../../shared/data/tinystories-valid-sample.txt", import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [WGQ, ...args], { encoding: "utf8", timeout: 300_000 });
const tmp = mkdtempSync(join(tmpdir(), "wgq-cli-"));

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

  it("quantize --json, then eval --json and generate --json on the result; re-quantizing into it needs --force", () => {
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

    const e = run("eval", "--model", out, "--ref", STORIES, "--data", SAMPLE, "--max-windows", "2", "--json");
    expect(e.status, e.stderr).toBe(0);
    const lines = e.stdout.trim().split("\n");
    expect(lines.length).toBe(1);
    const ej = JSON.parse(lines[0]);
    for (const k of ["ppl", "tokens", "kl", "top1", "tokens_per_s"]) expect(typeof ej[k], k).toBe("number");
    expect(ej.tokens).toBe(510);
    expect(ej.kl).toBeGreaterThan(0);

    const g = run("generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "8", "--json");
    expect(g.status, g.stderr).toBe(0);
    const gj = JSON.parse(g.stdout);
    expect(gj.ids.length).toBeGreaterThan(0);
    expect(gj.text).toMatch(/^Once upon a time/);
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

  it("qat trains a few steps, saves a packed model that eval reads, with the loss curve in report.json", () => {
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
    const e = run("eval", "--model", out, "--data", SAMPLE, "--max-windows", "2", "--json", "--quiet");
    expect(e.status, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).ppl).toBeGreaterThan(1);
  });

  it("demo --preset tiny --json runs the whole pipeline on a synthetic model", () => {
    const d = run("demo", "--preset", "tiny", "--json", "--group-size", "32");
    expect(d.status, d.stderr).toBe(0);
    const j = JSON.parse(d.stdout);
    expect(j.model.synthetic).toBe(true);
    expect(j.quantized.map((x: { name: string }) => x.name)).toEqual(["int4 RTN", "int4 AWQ"]);
    for (const x of j.quantized) expect(x.kl).toBeGreaterThan(0);
    expect(j.gemv.int4_ms).toBeGreaterThan(0);
  });
});

describe("Ctrl-C", () => {
  it("stops a quantization cleanly: exit 130, no partial output folder, a message naming what was not written", async () => {
    const { spawn } = await import("node:child_process");
    const parent = mkdtempSync(join(tmpdir(), "wgq-int-"));
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
