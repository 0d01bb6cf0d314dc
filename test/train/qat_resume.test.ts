// `wgq qat --resume`: a run killed (SIGKILL) after a checkpoint and resumed writes the same
// model.safetensors, byte for byte, as an uninterrupted run — e2e at seeded-random steps (and before
// the first checkpoint), block mode after a seeded-random block, --init awq during AWQ; a resume
// with other settings is refused naming the setting, and the progress is kept for a correct resume.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rng } from "../../src/ref/random.ts";
import type { Manifest } from "../../src/train/qat_checkpoint.ts";

const WGQ = fileURLToPath(new URL("../../bin/wgq.mjs", import.meta.url));
const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));
const SAMPLE = fileURLToPath(new URL("../../../shared/data/tinystories-valid-sample.txt", import.meta.url));
const STEPS = 12;

let tmp = "";
let train = "";
const e2e = () => [
  "qat", "--model", STORIES, "--train", train, "--init", "rtn", "--bits", "4", "--group-size", "32", "--steps", String(STEPS),
  "--eval-every", "3", "--batch", "2", "--seq-len", "64", "--seed", "7", "--trainable", "all", "--loss", "ce", "--lr", "1e-4", "--quiet",
];
const block = () => [
  "qat", "--model", STORIES, "--train", train, "--init", "rtn", "--bits", "4", "--group-size", "32", "--mode", "block", "--steps", "16",
  "--batch", "2", "--samples", "8", "--calib-seq-len", "64", "--seed", "7", "--quiet",
];

const run = (args: string[]) => spawnSync(process.execPath, [WGQ, ...args], { encoding: "utf8", timeout: 120_000 });

/** The partial folder of `out` (a run in progress or killed), or null. */
function partialOf(out: string): { path: string; pid: number } | null {
  const re = new RegExp(`^\\.${basename(out).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.partial-(\\d+)-[0-9a-f]+$`);
  for (const n of readdirSync(dirname(out))) {
    const m = re.exec(n);
    if (m) return { path: join(dirname(out), n), pid: Number(m[1]) };
  }
  return null;
}

function manifestOf(partial: string, file = "qat.json"): Manifest | null {
  try {
    return JSON.parse(readFileSync(join(partial, "state", file), "utf8")) as Manifest;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `wgq args`, polls its saved progress and SIGKILLs the training process as soon as `when`
 * holds (the wrapper then exits on its own). Returns the manifest left behind (null: none yet).
 */
async function killWhen(out: string, args: string[], when: (m: Manifest | null, partial: string) => boolean): Promise<Manifest | null> {
  const child = spawn(process.execPath, [WGQ, ...args, "--out", out], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  let exited = false;
  const exit = new Promise<number | null>((r) => child.on("close", (code) => {
    exited = true;
    r(code);
  }));
  const t0 = Date.now();
  for (;;) {
    if (exited) throw new Error(`the run ended before it could be killed:\n${stderr}`);
    if (Date.now() - t0 > 150_000) throw new Error("no kill point reached in time");
    const p = partialOf(out);
    if (p && existsSync(join(p.path, "state")) && when(manifestOf(p.path), p.path)) {
      process.kill(p.pid, "SIGKILL");
      break;
    }
    await sleep(20);
  }
  expect(await exit).not.toBe(0);
  expect(existsSync(out)).toBe(false);
  const p = partialOf(out);
  expect(p).not.toBeNull();
  return manifestOf(p!.path);
}

function same(a: string, b: string): boolean {
  return Buffer.compare(readFileSync(join(a, "model.safetensors")), readFileSync(join(b, "model.safetensors"))) === 0;
}

describe("wgq qat --resume", () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "wgq-qat-resume-"));
    const docs = readFileSync(SAMPLE, "utf8").split(/\n\s*\n/).filter((d) => d.trim()).slice(0, 40);
    train = join(tmp, "train.txt");
    writeFileSync(train, docs.join("\n\n") + "\n");
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("e2e: killed at seeded-random checkpoints (and before the first), resumed, byte-identical; a mismatching resume is refused", async () => {
    const A = join(tmp, "e2e-A");
    const a = run([...e2e(), "--out", A]);
    expect(a.status, a.stderr).toBe(0);
    const killed: number[] = [];
    for (const seed of [1, 2, 3]) {
      const B = join(tmp, `e2e-B${seed}`);
      const at = 1 + Math.floor(rng(seed)() * (STEPS - 1)); // a step 1..11, saved every step
      const m = await killWhen(B, [...e2e(), "--checkpoint-every", "1"], (mf) => !!mf && mf.step! >= at);
      expect(m?.done).toBe(false);
      killed.push(m!.step!);
      if (seed === 1) {
        // other settings: refused (exit 1) naming the setting; the progress stays for a correct resume
        const bad = run([...e2e().map((x) => (x === "7" ? "8" : x)), "--out", B, "--resume"]);
        expect(bad.status).toBe(1);
        expect(bad.stderr).toMatch(/--seed 7.*--seed 8/);
        expect(partialOf(B)).not.toBeNull();
        const bad2 = run([...e2e(), "--lr", "0.002", "--out", B, "--resume"]);
        expect(bad2.status).toBe(1);
        expect(bad2.stderr).toMatch(/--lr/);
      }
      const r = run([...e2e(), "--out", B, "--resume"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`continuing QAT from step ${m!.step} of ${STEPS}`));
      expect(same(A, B), `killed after step ${m!.step}`).toBe(true);
      expect(partialOf(B)).toBeNull();
    }
    // killed before any checkpoint: the resume starts from step 0 and says so
    const B0 = join(tmp, "e2e-B0");
    const m0 = await killWhen(B0, e2e(), () => true);
    const r0 = run([...e2e(), "--out", B0, "--resume"]);
    expect(r0.status, r0.stderr).toBe(0);
    if (!m0) expect(r0.stderr).toMatch(/starts from step 0/);
    expect(same(A, B0)).toBe(true);
    console.log(`e2e kill points (steps saved): ${killed.join(", ")}, ${m0 ? m0.step : "none"}`);
  }, 240_000);

  it("block mode: killed after a seeded-random block, resumed, byte-identical", async () => {
    const A = join(tmp, "block-A");
    const a = run([...block(), "--out", A]);
    expect(a.status, a.stderr).toBe(0);
    const B = join(tmp, "block-B");
    const at = Math.floor(rng(11)() * 4); // after block 0..3 of 5
    const m = await killWhen(B, block(), (mf) => !!mf && mf.block! >= at);
    expect(m!.block!).toBeLessThan(4);
    const r = run([...block(), "--out", B, "--resume"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`continuing QAT after block ${m!.block}`));
    expect(same(A, B), `killed after block ${m!.block}`).toBe(true);
    console.log(`block kill point: after block ${m!.block}`);
  }, 120_000);

  it("--init awq: killed during AWQ (after a completed block), resumed, byte-identical", async () => {
    const awq = () => [...e2e().map((x) => (x === "rtn" ? "awq" : x === String(STEPS) ? "6" : x)), "--samples", "8", "--calib-seq-len", "64"];
    const A = join(tmp, "awq-A");
    const a = run([...awq(), "--out", A]);
    expect(a.status, a.stderr).toBe(0);
    const B = join(tmp, "awq-B");
    const at = 1 + Math.floor(rng(5)() * 3); // 1..3 of 5 AWQ blocks done
    await killWhen(B, awq(), (_, partial) => ((manifestOf(partial, "awq/awq.json") as unknown as { completed?: number })?.completed ?? 0) >= at);
    const r = run([...awq(), "--out", B, "--resume"]);
    expect(r.status, r.stderr).toBe(0);
    expect(same(A, B)).toBe(true);
  }, 120_000);
});
