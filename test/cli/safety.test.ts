// The output guard and input validation of the writing commands, run as a user would (the wgq CLI):
// inputs are never modified or deleted, whatever the flags; bad checkpoints are refused before any
// work with exit code 2 and a sentence naming the file and the tensor or field.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SafetensorsCheckpoint, writeSafetensors, type HostTensor } from "../../src/io/safetensors.ts";

const WGQ = fileURLToPath(new URL("../../bin/wgq.mjs", import.meta.url));
const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));
const SAMPLE = fileURLToPath(new URL("../../../shared/data/tinystories-valid-sample.txt", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "wgq-safety-"));
// HOME points at a folder of the test's own: should the guard ever regress, a refused "--out ~ --force"
// case must not be able to reach the real home folder.
const HOME = join(tmp, "home");
mkdirSync(HOME);
writeFileSync(join(HOME, "keep.txt"), "the user's files");
const run = (cwd: string, ...args: string[]) =>
  spawnSync(process.execPath, [WGQ, ...args], { cwd, encoding: "utf8", timeout: 120_000, env: { ...process.env, HOME } });

/** Every file below `dir` (links not followed) -> sha256, for "nothing changed" checks. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, n.name);
      if (n.isDirectory()) walk(p, `${rel}${n.name}/`);
      else if (n.isFile()) out[`${rel}${n.name}`] = createHash("sha256").update(readFileSync(p)).digest("hex");
      else out[`${rel}${n.name}`] = "link";
    }
  };
  walk(dir, "");
  return out;
}

/** A writable copy of stories260K in a fresh folder under tmp: returns { parent, model }. */
function modelCopy(name: string): { parent: string; model: string } {
  const parent = join(tmp, name);
  mkdirSync(parent);
  const model = join(parent, "M");
  cpSync(STORIES, model, { recursive: true });
  return { parent, model };
}

let tensors: HostTensor[] = [];
beforeAll(async () => {
  const ck = await SafetensorsCheckpoint.open(STORIES);
  for (const n of ck.names()) tensors.push(await ck.read(n, "raw"));
  await ck.close();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A model folder with stories260K's config/tokenizer and the given tensors (and config edits). */
async function variant(name: string, edit: (t: HostTensor[]) => HostTensor[], config: Record<string, unknown> = {}): Promise<string> {
  const dir = join(tmp, name);
  mkdirSync(dir);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) copyFileSync(join(STORIES, f), join(dir, f));
  const cfg = { ...JSON.parse(readFileSync(join(STORIES, "config.json"), "utf8")), ...config };
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  await writeSafetensors(join(dir, "model.safetensors"), edit(tensors.slice()));
  return dir;
}

describe("outputs never touch inputs", () => {
  it("calibrate --out inside the model folder is refused (with and without --force); the weights are unchanged", () => {
    const { parent, model } = modelCopy("calib-in");
    const before = snapshot(parent);
    for (const force of [[], ["--force"]]) {
      const r = run(parent, "calibrate", "--model", model, "--calib", SAMPLE, "--samples", "2", "--seq-len", "32", "--out", join(model, "model.safetensors"), ...force);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error: .*model\.safetensors: lies inside the input/m);
      expect(r.stderr).not.toMatch(/unexpected/);
    }
    // the calibration text is an input too
    const copy = join(parent, "text.txt");
    copyFileSync(SAMPLE, copy);
    const before2 = snapshot(parent);
    const r = run(parent, "calibrate", "--model", model, "--calib", copy, "--samples", "2", "--seq-len", "32", "--out", copy, "--force");
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/is the input/);
    expect(snapshot(parent)).toEqual(before2);
    delete before2["text.txt"];
    expect(before2).toEqual(before);
  });

  it("quantize --force refuses every spelling of an input, its parent, the current folder, home and /", () => {
    const { parent, model } = modelCopy("quant-in");
    symlinkSync(parent, join(tmp, "link-to-parent"));
    const before = snapshot(parent);
    const cases: [string, string, RegExp][] = [
      [tmp, join(tmp, "link-to-parent", "M"), /is the input/],
      [tmp, parent, /contains the input/],
      [tmp, join(model, "model.safetensors"), /lies inside the input/],
      [tmp, join(model, "sub", "..", "..", "M"), /is the input/],
      [parent, "", /empty path/],
      [model, ".", /is the current folder|is the input/],
      [model, "..", /contains the current folder|contains the input/],
      [tmp, HOME, /is the home folder/],
      [HOME, join(HOME, ".."), /contains the home folder|contains the current folder/],
      [tmp, join(tmp, "link-to-parent"), /symbolic link/],
    ];
    const home = snapshot(HOME);
    for (const [cwd, out, msg] of cases) {
      const r = run(cwd, "quantize", "--model", model, "--bits", "4", "--out", out, "--force", "--quiet");
      expect(r.status, `--out '${out}' from ${cwd}: ${r.stderr}`).toBe(2);
      expect(r.stderr, out).toMatch(msg);
      expect(r.stderr.split("\n").filter((l) => l.startsWith("error: ")).length, out).toBe(1);
      expect(snapshot(parent), out).toEqual(before);
      expect(snapshot(HOME), out).toEqual(home);
    }
    // "/" without --force: refused by name (with --force it is refused the same way, but a test
    // should not bet the machine on that)
    const root = run(tmp, "quantize", "--model", model, "--bits", "4", "--out", "/", "--quiet");
    expect(root.status, root.stderr).toBe(2);
    expect(root.stderr).toMatch(/is the root folder/);
    // the calibration and evaluation texts are inputs too
    const text = join(parent, "calib.txt");
    copyFileSync(SAMPLE, text);
    const r = run(tmp, "quantize", "--model", model, "--method", "awq", "--calib", text, "--samples", "2", "--seq-len", "32", "--out", text, "--force", "--quiet");
    expect(r.status, r.stderr).toBe(2);
    expect(readFileSync(text)).toEqual(readFileSync(SAMPLE));
  });

  it("--force replaces only an output wgq wrote; other folders and files are left as they are", () => {
    const { parent, model } = modelCopy("force");
    const mine = join(parent, "Q");
    expect(run(parent, "quantize", "--model", model, "--bits", "8", "--out", mine, "--quiet").status).toBe(0);
    expect(existsSync(join(mine, ".wgq-output"))).toBe(true);
    const again = run(parent, "quantize", "--model", model, "--bits", "8", "--out", mine, "--quiet");
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
    const forced = run(parent, "quantize", "--model", model, "--bits", "4", "--out", mine, "--quiet", "--force");
    expect(forced.status, forced.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(mine, "config.json"), "utf8")).quantization_config.bits).toBe(4);

    const theirs = join(parent, "photos");
    mkdirSync(theirs);
    writeFileSync(join(theirs, "cat.jpg"), "not a model");
    const file = join(parent, "notes.txt");
    writeFileSync(file, "keep me");
    const before = snapshot(parent);
    for (const out of [theirs, file]) {
      const r = run(parent, "quantize", "--model", model, "--bits", "4", "--out", out, "--force", "--quiet");
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/not written by wgq|not a folder/);
    }
    const st = run(parent, "calibrate", "--model", model, "--calib", SAMPLE, "--samples", "2", "--seq-len", "32", "--out", file, "--force", "--quiet");
    expect(st.status, st.stderr).toBe(2);
    expect(snapshot(parent)).toEqual(before);
  });

  it("an output under a file, or in a folder that cannot be created, exits 2 with a sentence", () => {
    const { parent, model } = modelCopy("parent");
    writeFileSync(join(parent, "plain"), "x");
    const r = run(parent, "quantize", "--model", model, "--out", join(parent, "plain", "Q"), "--quiet");
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error: .*plain.*is not a folder/m);
    expect(r.stderr).not.toMatch(/unexpected/);
  });

  it("stale partial folders of a killed run are reported and removed; unmarked look-alikes are left alone", () => {
    const { parent, model } = modelCopy("stale");
    const stale = join(parent, ".Q.partial-999999-abcdef01");
    mkdirSync(stale);
    writeFileSync(join(stale, ".wgq-output"), JSON.stringify({ producer: "webgpu-quant", command: "quantize", pid: 999999 }));
    writeFileSync(join(stale, "model.safetensors"), "half written");
    const alike = join(parent, ".Q.partial-999998-abcdef02");
    mkdirSync(alike);
    writeFileSync(join(alike, "mine.txt"), "not wgq's");
    const r = run(parent, "quantize", "--model", model, "--bits", "8", "--out", join(parent, "Q"));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removing .*\.Q\.partial-999999-abcdef01.*interrupted run/);
    expect(r.stderr).toMatch(/\.Q\.partial-999998-abcdef02.*left alone/);
    expect(existsSync(stale)).toBe(false);
    expect(readFileSync(join(alike, "mine.txt"), "utf8")).toBe("not wgq's");
  });

  it("SIGHUP stops a run like Ctrl-C: exit 129 and no partial output left", async () => {
    const { parent, model } = modelCopy("hup");
    const child = spawn(process.execPath, [WGQ, "quantize", "--model", model, "--method", "awq", "--calib", SAMPLE, "--samples", "64", "--seq-len", "256", "--out", join(parent, "Q"), "--quiet"], { cwd: parent, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    for (let i = 0; i < 400 && !readdirSync(parent).some((f) => f.includes("partial")); i++) await new Promise((r) => setTimeout(r, 25));
    child.kill("SIGHUP");
    const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
    expect(code, stderr).toBe(129);
    expect(stderr).toMatch(/interrupted: .*Q was not written/);
    expect(readdirSync(parent).sort()).toEqual(["M"]);
  });
});

describe("checkpoints are checked against config.json before any work", () => {
  const quantize = (model: string) => {
    const out = join(tmp, `out-${Math.random().toString(16).slice(2)}`);
    const r = run(tmp, "quantize", "--model", model, "--bits", "4", "--out", out, "--quiet");
    return { ...r, wrote: existsSync(out) };
  };

  it("a missing tensor, a missing layer, a wrong shape, a wrong dtype or junk tensors: exit 2 naming the tensor, no output", async () => {
    const cases: [string, (t: HostTensor[]) => HostTensor[], Record<string, unknown>, RegExp][] = [
      ["missing-tensor", (t) => t.filter((x) => x.name !== "model.layers.3.mlp.up_proj.weight"), {}, /model\.layers\.3\.mlp\.up_proj\.weight.*missing/],
      ["missing-layer", (t) => t.filter((x) => !x.name.startsWith("model.layers.4.")), {}, /num_hidden_layers.*5 layers.*layers 0\.\.3/],
      ["wrong-shape", (t) => t.map((x) => (x.name === "model.layers.1.self_attn.k_proj.weight" ? { ...x, shape: [64, 32] } : x)), {}, /k_proj\.weight.*shape \[64,32\]/],
      ["wrong-dtype", (t) => t.map((x) => (x.name === "model.norm.weight" ? { ...x, dtype: "I32" as const, data: new Int32Array(x.data.length) } : x)), {}, /model\.norm\.weight.*dtype I32/],
      ["junk", (t) => t.map((x, i) => ({ ...x, name: `junk.${i}` })), {}, /num_hidden_layers|missing/],
      ["config-mismatch", (t) => t, { hidden_size: 128, head_dim: 16 }, /model\.embed_tokens\.weight.*shape/],
    ];
    for (const [name, edit, cfg, msg] of cases) {
      const dir = await variant(name, edit, cfg);
      const r = quantize(dir);
      expect(r.status, `${name}: ${r.stderr}`).toBe(2);
      expect(r.stderr, name).toMatch(msg);
      expect(r.stderr, name).not.toMatch(/unexpected/);
      expect(r.wrote, name).toBe(false);
    }
  });

  it("num_hidden_layers 100000000 is refused at once, without allocating", async () => {
    const dir = await variant("huge-layers", (t) => t, { num_hidden_layers: 100_000_000 });
    const t0 = performance.now();
    for (const cmd of [["quantize", "--model", dir, "--out", join(tmp, "never")], ["inspect", dir], ["eval", "--model", dir, "--data", SAMPLE]]) {
      const r = run(tmp, ...cmd);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/num_hidden_layers/);
    }
    expect(performance.now() - t0).toBeLessThan(60_000);
    const fits = await variant("layers-mismatch", (t) => t, { num_hidden_layers: 7 });
    const r = run(tmp, "eval", "--model", fits, "--data", SAMPLE, "--max-windows", "1");
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/num_hidden_layers.*7 layers.*layers 0\.\.4/);
  });

  it("config.json: ids outside the vocabulary, invalid UTF-8 and absurd nesting exit 2 naming the field, no output", async () => {
    const bos = await variant("bos-out", (t) => t, { bos_token_id: 512 });
    let r = quantize(bos);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/config\.json \[bos_token_id\]: token id 512 is outside the vocabulary \(vocab_size 512\)/);
    expect(r.wrote).toBe(false);
    const deep = await variant("deep", (t) => t);
    const cfg = readFileSync(join(deep, "config.json"), "utf8");
    writeFileSync(join(deep, "config.json"), cfg.replace(/}\s*$/, `, "x": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`));
    r = quantize(deep);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/config\.json: JSON nested 100001 levels deep/);
    expect(r.wrote).toBe(false);
    const utf = await variant("utf8", (t) => t);
    writeFileSync(join(utf, "config.json"), Buffer.concat([Buffer.from(cfg.replace(/}\s*$/, ', "name": "')), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]));
    r = quantize(utf);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/config\.json: is not valid UTF-8/);
    expect(r.wrote).toBe(false);
  });

  it("NaN/Inf in any tensor (copied ones too) and values beyond f16 for --bits 16: exit 2 naming the tensor, no output", async () => {
    const plant = (name: string, v: number) => (t: HostTensor[]) =>
      t.map((x) => {
        if (x.name !== name) return x;
        const d = Float32Array.from(x.data as Float32Array);
        d[d.length - 1] = v;
        return { ...x, data: d };
      });
    const cases: [string, string, number, string[]][] = [
      ["nan-norm", "model.norm.weight", NaN, []],
      ["inf-embed", "model.embed_tokens.weight", -Infinity, []],
      ["nan-block-norm", "model.layers.2.post_attention_layernorm.weight", NaN, []],
      ["nan-linear", "model.layers.4.mlp.down_proj.weight", NaN, ["--method", "awq", "--calib", SAMPLE, "--samples", "2", "--seq-len", "32"]],
      ["f16-overflow", "model.layers.0.input_layernorm.weight", 1e6, ["--bits", "16"]],
    ];
    for (const [dir, tensor, v, args] of cases) {
      const model = await variant(dir, plant(tensor, v));
      const out = join(tmp, `${dir}-out`);
      const r = run(tmp, "quantize", "--model", model, "--out", out, "--quiet", ...args);
      expect(r.status, `${dir}: ${r.stderr}`).toBe(2);
      expect(r.stderr, dir).toMatch(new RegExp(`model\\.safetensors \\[${tensor.replace(/\./g, "\\.")}\\]: `));
      expect(r.stderr, dir).toMatch(Number.isNaN(v) ? /NaN/ : v === 1e6 ? /beyond ±65504/ : /Inf/);
      expect(existsSync(out), dir).toBe(false);
    }
  });

  it("an unexpected extra tensor is named in a warning; the output is written without it", async () => {
    const dir = await variant("extra", (t) => [...t, { name: "model.vision_tower.weight", dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]);
    const out = join(tmp, "extra-out");
    const r = run(tmp, "quantize", "--model", dir, "--bits", "4", "--out", out, "--quiet");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: .*1 tensor\(s\) that are not part of the model.*model\.vision_tower\.weight/);
  });

  it("a damaged tokenizer.json is refused before anything is written, not copied into the output", async () => {
    const dir = await variant("bad-tokenizer", (t) => t);
    const tj = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
    const edits: [(t: Record<string, any>) => void, RegExp][] = [
      [(t) => (t.model.type = "NoSuchModel"), /tokenizer\.json \[model\.type\]/],
      [(t) => (t.model.vocab = 5), /tokenizer\.json \[model\.vocab\]/],
      [(t) => delete t.model, /tokenizer\.json \[model\]/],
      [(t) => (t.added_tokens = [{ id: 700, content: "<extra>", special: true }]), /tokenizer\.json.*more than config\.json's vocab_size 512/],
    ];
    let r;
    for (const [edit, msg] of edits) {
      const t = structuredClone(tj);
      edit(t);
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(t));
      r = quantize(dir);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.wrote).toBe(false);
    }
    writeFileSync(join(dir, "tokenizer.json"), "{ truncated");
    r = quantize(dir);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/tokenizer\.json/);
    expect(r.wrote).toBe(false);
  });

  it("an already quantized model is not quantized again", () => {
    const { parent, model } = modelCopy("requant");
    expect(run(parent, "quantize", "--model", model, "--bits", "8", "--out", join(parent, "Q"), "--quiet").status).toBe(0);
    const r = run(parent, "quantize", "--model", join(parent, "Q"), "--bits", "4", "--out", join(parent, "Q2"), "--quiet");
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/already quantized/);
    expect(statSync(join(parent, "Q")).isDirectory()).toBe(true);
  });
});

describe("context lengths beyond max_position_embeddings", () => {
  it("are refused with the option's name unless --allow-long-context is given", () => {
    const cases: string[][] = [
      ["calibrate", "--model", STORIES, "--calib", SAMPLE, "--samples", "1", "--seq-len", "600"],
      ["eval", "--model", STORIES, "--data", SAMPLE, "--ctx", "600", "--max-windows", "1"],
      ["generate", "--model", STORIES, "--prompt", "Once", "--max-tokens", "600"],
      ["quantize", "--model", STORIES, "--method", "awq", "--calib", SAMPLE, "--samples", "1", "--seq-len", "600", "--out", join(tmp, "long")],
      ["qat", "--model", STORIES, "--train", SAMPLE, "--seq-len", "600", "--out", join(tmp, "long-qat")],
    ];
    for (const c of cases) {
      const r = run(tmp, ...c);
      expect(r.status, `${c[0]}: ${r.stderr}`).toBe(1);
      expect(r.stderr, c[0]).toMatch(/longer than the model's context \(max_position_embeddings 512/);
      expect(r.stderr, c[0]).toMatch(/--allow-long-context/);
    }
    const ok = run(tmp, "calibrate", "--model", STORIES, "--calib", SAMPLE, "--samples", "1", "--seq-len", "600", "--allow-long-context", "--quiet");
    expect(ok.status, ok.stderr).toBe(0);
  });
});
