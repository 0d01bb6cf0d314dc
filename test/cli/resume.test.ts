// --resume after a kill: `wgq quantize --method awq` and `wgq calibrate` killed with SIGKILL (the
// whole process group, as a crash or an OOM kill would) at seeded random points, then rerun with
// --resume: the output must be byte-identical to an uninterrupted run. Also: a kill before any
// progress, a resume under other settings (refused, exit 1, naming the setting), and a rerun
// without --resume (the stale partial folder is reported and removed).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const WGQ = fileURLToPath(new URL("../../bin/wgq.mjs", import.meta.url));
const STORIES = fileURLToPath(new URL("../../../shared/models/stories260K", import.meta.url));
const SAMPLE = fileURLToPath(new URL("../../../shared/data/tinystories-valid-sample.txt", import.meta.url));
const LAYERS = 5; // stories260K

const AWQ = ["quantize", "--method", "awq", "--model", STORIES, "--calib", SAMPLE, "--samples", "8", "--seq-len", "64", "--bits", "4", "--group-size", "32", "--quiet"];
const CALIB = ["calibrate", "--model", STORIES, "--calib", SAMPLE, "--samples", "16", "--seq-len", "32", "--batch", "2", "--quiet"];
const CALIB_BLOCKS = 16;

let tmp = "";
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "wgq-resume-"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const run = (...args: string[]) => spawnSync(process.execPath, [WGQ, ...args], { encoding: "utf8", timeout: 120_000 });

/** mulberry32: a small seeded generator, so each kill point can be reproduced from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Partial folders of `dest` (`.NAME.partial-PID-HEX` beside it). */
function partials(dest: string): string[] {
  const dir = join(dest, "..");
  const base = dest.slice(dir.length + 1);
  return readdirSync(dir).filter((n) => n.startsWith(`.${base}.partial-`)).map((n) => join(dir, n));
}

/** The progress count a partial folder's manifest records (0 when there is none yet). */
function saved(partial: string, manifest: string, field: string): number {
  try {
    return Number(JSON.parse(readFileSync(join(partial, "state", manifest), "utf8"))[field]) || 0;
  } catch {
    return 0;
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `wgq args` in its own process group; once `ready(partialFolder)` holds (polled every few
 * ms), waits `delayMs` more and kills the group with SIGKILL. Resolves when every process of the
 * run is gone: { killed: false } when the run ended on its own first.
 */
async function killWhen(args: string[], dest: string, ready: (partial: string) => boolean, delayMs = 0): Promise<{ killed: boolean; partial: string | null }> {
  const child = spawn(process.execPath, [WGQ, ...args], { detached: true, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  let done = false;
  void exited.then(() => (done = true));
  const t0 = Date.now();
  let partial: string | null = null;
  while (!done) {
    partial = partials(dest)[0] ?? null;
    // the marker is written right after the folder: a folder without it is not yet the run's
    if (partial && existsSync(join(partial, ".wgq-output")) && ready(partial)) break;
    if (Date.now() - t0 > 120_000) throw new Error(`no kill point reached in 120 s: ${stderr}`);
    await sleep(2);
  }
  if (done) {
    const code = await exited;
    expect(code, stderr).toBe(0);
    return { killed: false, partial: null };
  }
  if (delayMs) await sleep(delayMs);
  try {
    process.kill(-child.pid!, "SIGKILL");
  } catch {
    /* the group is gone already */
  }
  await exited;
  // the run's own pid is in the partial folder's name; wait until that process is gone too
  const pid = Number(/partial-(\d+)-/.exec(partial!)![1]);
  for (let i = 0; i < 2000 && alive(pid); i++) await sleep(10);
  expect(alive(pid)).toBe(false);
  return { killed: true, partial: partials(dest)[0] ?? null };
}

const same = (a: string, b: string) => Buffer.compare(readFileSync(a), readFileSync(b)) === 0;

describe("quantize --method awq --resume", () => {
  let ref = "";
  beforeAll(() => {
    ref = join(tmp, "awq-A");
    const r = run(...AWQ, "--out", ref);
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it("a kill before any block was saved: --resume starts from block 0 and gives the same model", async () => {
    const out = join(tmp, "awq-zero");
    const k = await killWhen([...AWQ, "--out", out], out, () => true);
    expect(k.killed).toBe(true);
    expect(k.partial).not.toBeNull();
    expect(saved(k.partial!, "awq.json", "completed")).toBe(0);
    const r = run(...AWQ, "--out", out, "--resume");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/AWQ starts from block 0/);
    expect(same(join(out, "model.safetensors"), join(ref, "model.safetensors"))).toBe(true);
    expect(partials(out)).toEqual([]);
  });

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: killed after a random number of saved blocks (plus a random delay), --resume gives the same bytes`, async () => {
      const rand = rng(seed);
      const want = 1 + Math.floor(rand() * (LAYERS - 1)); // 1 … 4 blocks saved, at least one left to run
      const delay = Math.floor(rand() * 150);
      const out = join(tmp, `awq-B${seed}`);
      const k = await killWhen([...AWQ, "--out", out], out, (p) => saved(p, "awq.json", "completed") >= want, delay);
      expect(k.killed, `the run ended before block ${want} was saved`).toBe(true);
      const at = saved(k.partial!, "awq.json", "completed");
      expect(at).toBeGreaterThanOrEqual(want);
      const r = run(...AWQ, "--out", out, "--resume");
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`--resume: ${at} of ${LAYERS} AWQ blocks were completed`));
      expect(same(join(out, "model.safetensors"), join(ref, "model.safetensors")), `seed ${seed}: killed after ${at} blocks (+${delay} ms)`).toBe(true);
      expect(partials(out)).toEqual([]);
      // the report holds every block, the resumed ones with the same choices
      const a = JSON.parse(readFileSync(join(ref, "report.json"), "utf8")).awq;
      const b = JSON.parse(readFileSync(join(out, "report.json"), "utf8")).awq;
      expect(b.map((x: { layer: number }) => x.layer)).toEqual([0, 1, 2, 3, 4]);
      expect(b.map((x: object) => ({ ...x, seconds: 0 }))).toEqual(a.map((x: object) => ({ ...x, seconds: 0 })));
    });
  }

  it("a resume under another --group-size is refused (exit 1, naming it); a run without --resume removes the stale progress", async () => {
    const out = join(tmp, "awq-mismatch");
    const k = await killWhen([...AWQ, "--out", out], out, (p) => saved(p, "awq.json", "completed") >= 1);
    expect(k.killed).toBe(true);
    const args = [...AWQ];
    args[args.indexOf("--group-size") + 1] = "64";
    const r = run(...args, "--out", out, "--resume");
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^error: --resume: .*--group-size \(32; this run: 64\)/m);
    expect(r.stderr).toMatch(/^hint: /m);
    expect(existsSync(out)).toBe(false);
    expect(partials(out).length).toBe(1); // the progress is kept for a rerun with the right settings
    const fresh = run(...AWQ, "--out", out);
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(fresh.stderr).toMatch(/removing .*\.partial-\d+-[0-9a-f]+: the partial output of an interrupted run/);
    expect(partials(out)).toEqual([]);
    expect(same(join(out, "model.safetensors"), join(ref, "model.safetensors"))).toBe(true);
  });
});

describe("calibrate --resume", () => {
  let ref = "";
  beforeAll(() => {
    ref = join(tmp, "calib-A.safetensors");
    const r = run(...CALIB, "--out", ref);
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it("a kill before any batch was saved: --resume starts from the first batch, same file", async () => {
    const out = join(tmp, "calib-zero.safetensors");
    const k = await killWhen([...CALIB, "--out", out], out, () => true);
    expect(k.killed).toBe(true);
    expect(saved(k.partial!, "calibrate.json", "done")).toBe(0);
    const r = run(...CALIB, "--out", out, "--resume");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/starting from the first batch/);
    expect(same(out, ref)).toBe(true);
    expect(partials(out)).toEqual([]);
  });

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: killed after a random number of saved batches, --resume gives the same bytes`, async () => {
      const rand = rng(100 + seed);
      const want = 2 * (1 + Math.floor(rand() * 4)); // 2, 4, 6 or 8 of 16 blocks (batches of 2)
      const delay = Math.floor(rand() * 10);
      let k = { killed: false, partial: null as string | null };
      let out = "";
      // batches take milliseconds: if the run finished before the kill, try again
      for (let attempt = 0; attempt < 3 && !k.killed; attempt++) {
        out = join(tmp, `calib-B${seed}-${attempt}.safetensors`);
        k = await killWhen([...CALIB, "--out", out], out, (p) => saved(p, "calibrate.json", "done") >= want, delay);
      }
      expect(k.killed).toBe(true);
      const at = saved(k.partial!, "calibrate.json", "done");
      expect(at).toBeGreaterThanOrEqual(want);
      const r = run(...CALIB, "--out", out, "--resume");
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`--resume: ${at} of ${CALIB_BLOCKS} calibration blocks were done`));
      expect(same(out, ref), `seed ${seed}: killed after ${at} blocks (+${delay} ms)`).toBe(true);
      expect(partials(out)).toEqual([]);
    });
  }

  it("a resume under another --batch is refused (exit 1, naming it)", async () => {
    const out = join(tmp, "calib-mismatch.safetensors");
    let k = { killed: false, partial: null as string | null };
    for (let attempt = 0; attempt < 3 && !k.killed; attempt++) {
      rmSync(out, { force: true });
      k = await killWhen([...CALIB, "--out", out], out, (p) => saved(p, "calibrate.json", "done") >= 2);
    }
    expect(k.killed).toBe(true);
    const args = [...CALIB];
    args[args.indexOf("--batch") + 1] = "4";
    const r = run(...args, "--out", out, "--resume");
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^error: --resume: .*--batch \(2; this run: 4\)/m);
    expect(existsSync(out)).toBe(false);
    expect(partials(out).length).toBe(1);
    const fresh = run(...CALIB, "--out", out);
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(fresh.stderr).toMatch(/removing .*: the partial output of an interrupted run/);
    expect(partials(out)).toEqual([]);
    expect(same(out, ref)).toBe(true);
  });
});
