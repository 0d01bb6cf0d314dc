// train/qat_checkpoint.ts — resumable QAT progress: a JSON manifest plus raw f32 tensor files in a
// state folder (AtomicOutput.state()), each written atomically (io/output.ts writeFileAtomic: temp
// name, fsync, rename, fsync of the folder); the manifest is written last, so it only ever names
// complete files.
//
//   <dir>/qat.json          manifest: format, the settings that must match to resume, the position
//                           reached (step or block), the data draws made, the loss curve, ...
//   <dir>/<kind>-<n>.bin    tensors named in the manifest ({name, offset, numel} each, little-endian
//                           f32, checked by size and sha256 on load)
//
// Files the manifest no longer names are removed after each save. Nothing here touches the GPU:
// qat.ts reads its tensors to the host and hands them over.

import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { UsageError } from "../errors.ts";
import { removeStaleTemps, writeFileAtomic } from "../io/output.ts";

/** Where QAT saves its progress and whether to continue from it. */
export interface QatCheckpoint {
  /** The state folder (created by the caller). */
  dir: string;
  /** The folder holds the progress of an interrupted run: continue from its last checkpoint. */
  resumed: boolean;
  /** e2e: save every this many steps (default: the held-out interval); 0: only when training ends. */
  every?: number;
  /** Settings of the caller that must match to resume (model, training text, init, ...), by option name. */
  settings?: Record<string, Setting>;
  /** Notices (starting over, resuming at step n); default stderr. */
  log?: (line: string) => void;
}

export type Setting = string | number | boolean | null;

/** A saved checkpoint was made with other settings: resuming would not give the same result. */
export class CheckpointMismatchError extends UsageError {
  constructor(
    readonly dir: string,
    /** The first differing setting (option name). */
    readonly setting: string,
    readonly saved: Setting | undefined,
    readonly current: Setting | undefined,
    others: string[] = [],
  ) {
    super(
      `--resume: the interrupted run's progress was made with ${describe(setting, saved)}, this run has ${describe(setting, current)}` +
        (others.length ? ` (also differing: ${others.join(", ")})` : ""),
      "rerun with the settings of the interrupted run, or without --resume to start over (its progress is then discarded)",
    );
  }
}

function describe(setting: string, v: Setting | undefined): string {
  if (v === undefined) return `no ${setting}`;
  if (typeof v === "boolean") return v ? setting : `no ${setting}`;
  return `${setting} ${typeof v === "string" ? v : String(v)}`;
}

export const MANIFEST = "qat.json";
const FORMAT = "wgq-qat-checkpoint";
const VERSION = 1;
/** Tensor files this module writes (and removes once no manifest names them). */
const OWN_FILE = /^[a-z]+-\d+\.bin$/;

export interface TensorEntry {
  name: string;
  /** Byte offset in the file. */
  offset: number;
  numel: number;
  shape?: number[];
}

export interface FileEntry {
  file: string;
  bytes: number;
  sha256: string;
  tensors: TensorEntry[];
}

/** A point of the loss curve as stored (NaN losses as null). */
export interface SavedPoint {
  block: number | null;
  step: number;
  loss: number | null;
  held_out?: number | null;
}

export interface Manifest {
  format: typeof FORMAT;
  version: number;
  mode: "e2e" | "block";
  settings: Record<string, Setting>;
  /** Random draws made so far (batch picks): replayed on resume. */
  draws: number;
  curve: SavedPoint[];
  /** Tensor files by role: "state" (e2e parameters and moments), "best", "x", "block-<l>". */
  files: Record<string, FileEntry>;
  /** e2e: steps done, optimizer step, held-out scores, patience counter, training finished. */
  step?: number;
  optStep?: number;
  before?: number;
  best?: number;
  bestStep?: number;
  since?: number;
  done?: boolean;
  /** block: the last block finished (its output is file "x"). */
  block?: number;
}

/** A named f32 tensor to save; `data` is called once, in order, while the file is written. */
export interface TensorSource {
  name: string;
  shape?: number[];
  data: () => Promise<Float32Array>;
}

/** Writes tensors one after another into dir/file atomically; returns its manifest entry. */
export async function writeTensors(dir: string, file: string, tensors: readonly TensorSource[]): Promise<FileEntry> {
  const hash = createHash("sha256");
  const entries: TensorEntry[] = [];
  let offset = 0;
  await writeFileAtomic(path.join(dir, file), async (write) => {
    for (const t of tensors) {
      const data = await t.data();
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      await write(bytes);
      hash.update(bytes);
      entries.push({ name: t.name, offset, numel: data.length, ...(t.shape ? { shape: t.shape } : {}) });
      offset += bytes.length;
    }
  });
  return { file, bytes: offset, sha256: hash.digest("hex"), tensors: entries };
}

/**
 * Saves the manifest (atomically, after the files it names are in place), then removes the files
 * of earlier checkpoints and stray temporaries.
 */
export async function saveManifest(dir: string, m: Omit<Manifest, "format" | "version">): Promise<void> {
  const full: Manifest = { format: FORMAT, version: VERSION, ...m };
  await writeFileAtomic(path.join(dir, MANIFEST), JSON.stringify(full) + "\n");
  await removeStaleTemps(dir);
  const keep = new Set([MANIFEST, ...Object.values(m.files).map((f) => f.file)]);
  for (const n of await fsp.readdir(dir)) {
    if (!keep.has(n) && OWN_FILE.test(n)) await fsp.rm(path.join(dir, n), { force: true });
  }
}

/** Tensors of a loaded checkpoint by file role and name. */
export class LoadedCheckpoint {
  constructor(readonly manifest: Manifest, readonly dir: string, private readonly data: Map<string, Map<string, Float32Array>>) {}
  has(role: string, name: string): boolean {
    return !!this.data.get(role)?.has(name);
  }
  tensor(role: string, name: string): Float32Array {
    const t = this.data.get(role)?.get(name);
    if (!t) throw new UsageError(`the checkpoint in ${this.dir} has no tensor ${name} in ${role}`, "rerun without --resume to start over");
    return t;
  }
  /** The tensors of a file role with their saved shapes. */
  entries(role: string): TensorEntry[] {
    return this.manifest.files[role]?.tensors ?? [];
  }
}

function log(ck: QatCheckpoint, line: string): void {
  (ck.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(line);
}

/** Reads and parses the manifest; null (with a notice) when there is none or it is unusable. */
async function readManifest(ck: QatCheckpoint): Promise<Manifest | null> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(ck.dir, MANIFEST), "utf8");
  } catch {
    log(ck, "resume: no QAT checkpoint was saved before the run was interrupted; training starts from step 0");
    return null;
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (m.format !== FORMAT || m.version !== VERSION || typeof m.settings !== "object" || !Array.isArray(m.curve) || typeof m.files !== "object") throw new Error("not a QAT checkpoint of this version");
    return m;
  } catch (e) {
    log(ck, `resume: the saved QAT checkpoint is unusable (${(e as Error).message}); training starts from step 0`);
    return null;
  }
}

/** Settings named first when several differ (the others follow in their order). */
const FIRST = ["--model", "--mode", "--init", "--train", "--bits", "--group-size", "--sym"];

/**
 * The tensors of a checkpoint file, read one by one (the file is checked against its size and
 * sha256 on the way); a string says what is wrong with it.
 */
async function readTensors(file: string, f: FileEntry): Promise<Map<string, Float32Array> | string> {
  const h = await fsp.open(file, "r").catch(() => null);
  if (!h) return "missing";
  try {
    if ((await h.stat()).size !== f.bytes) return "damaged (size)";
    const hash = createHash("sha256");
    const out = new Map<string, Float32Array>();
    let at = 0;
    for (const t of f.tensors) {
      if (t.offset !== at) return "damaged (layout)";
      const a = new Float32Array(t.numel);
      const bytes = new Uint8Array(a.buffer);
      for (let off = 0; off < bytes.length; ) {
        const { bytesRead } = await h.read(bytes, off, Math.min(bytes.length - off, 1 << 26), t.offset + off);
        if (bytesRead === 0) return "damaged (short)";
        off += bytesRead;
      }
      hash.update(bytes);
      out.set(t.name, a);
      at += bytes.length;
    }
    if (at !== f.bytes || hash.digest("hex") !== f.sha256) return "damaged (checksum)";
    return out;
  } finally {
    await h.close();
  }
}

/** Throws CheckpointMismatchError when a setting of `settings` differs from the saved one. */
function compareSettings(dir: string, saved: Record<string, Setting>, settings: Record<string, Setting>): void {
  const diff: string[] = [];
  for (const [k, v] of Object.entries(settings)) if (saved[k] !== v) diff.push(k);
  for (const k of Object.keys(saved)) if (!(k in settings) && !diff.includes(k)) diff.push(k);
  const rank = (k: string) => (FIRST.includes(k) ? FIRST.indexOf(k) : FIRST.length);
  diff.sort((a, b) => rank(a) - rank(b));
  if (diff.length) throw new CheckpointMismatchError(dir, diff[0], saved[diff[0]], settings[diff[0]], diff.slice(1));
}

/**
 * Checks the saved progress against `settings` (a part of them may be given, e.g. before the
 * initial weights are computed): throws CheckpointMismatchError on a difference. Does nothing when
 * the run does not resume or nothing usable was saved.
 */
export async function checkCheckpoint(ck: QatCheckpoint | undefined, settings: Record<string, Setting>): Promise<void> {
  if (!ck?.resumed) return;
  let m: Manifest;
  try {
    m = JSON.parse(await fsp.readFile(path.join(ck.dir, MANIFEST), "utf8")) as Manifest;
  } catch {
    return;
  }
  if (m?.format !== FORMAT || typeof m.settings !== "object") return;
  const subset: Record<string, Setting> = {};
  for (const k of Object.keys(settings)) subset[k] = m.settings[k];
  compareSettings(ck.dir, subset, settings);
}

/**
 * Loads the checkpoint to continue from: null when the run does not resume or nothing usable was
 * saved (a notice says training starts over). Throws CheckpointMismatchError when the saved
 * settings differ from `settings`.
 */
export async function loadCheckpoint(ck: QatCheckpoint | undefined, mode: "e2e" | "block", settings: Record<string, Setting>): Promise<LoadedCheckpoint | null> {
  if (!ck?.resumed) return null;
  const m = await readManifest(ck);
  if (!m) return null;
  compareSettings(ck.dir, m.settings, settings);
  if (m.mode !== mode) throw new CheckpointMismatchError(ck.dir, "--mode", m.mode, mode);
  const int = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  const num = (v: unknown) => typeof v === "number";
  const consistent = int(m.draws) && (mode === "e2e"
    ? int(m.step) && int(m.optStep) && int(m.bestStep) && int(m.since) && num(m.before) && num(m.best) && !!m.files.best && (m.done === true || !!m.files.state)
    : int(m.block) && !!m.files.x);
  if (!consistent) {
    log(ck, `resume: the saved QAT checkpoint is unusable (${MANIFEST} is incomplete); training starts from step 0`);
    return null;
  }
  const data = new Map<string, Map<string, Float32Array>>();
  for (const [role, f] of Object.entries(m.files)) {
    const byName = await readTensors(path.join(ck.dir, f.file), f);
    if (typeof byName === "string") {
      log(ck, `resume: the QAT checkpoint's file ${f.file} is ${byName}; training starts from step 0`);
      return null;
    }
    data.set(role, byName);
  }
  return new LoadedCheckpoint(m, ck.dir, data);
}

/** Notice for a run that resumes. */
export function announce(ck: QatCheckpoint, what: string): void {
  log(ck, `resume: ${what}`);
}

/** sha256 (hex, first 16 digits) of token streams, for the settings. */
export function tokensHash(...streams: ArrayLike<number>[]): string {
  const h = createHash("sha256");
  for (const s of streams) {
    const u = Uint32Array.from(s as ArrayLike<number>);
    h.update(new Uint8Array(u.buffer));
    h.update("|");
  }
  return h.digest("hex").slice(0, 16);
}

export function curveToSaved<T extends { block: number | null; step: number; loss: number; held_out?: number }>(curve: readonly T[]): SavedPoint[] {
  return curve.map((p) => {
    const s: SavedPoint = { block: p.block, step: p.step, loss: Number.isFinite(p.loss) ? p.loss : null };
    if (p.held_out !== undefined) s.held_out = Number.isFinite(p.held_out) ? p.held_out : null;
    return s;
  });
}

export function curveFromSaved(curve: readonly SavedPoint[]): { block: number | null; step: number; loss: number; held_out?: number }[] {
  return curve.map((p) => {
    const c: { block: number | null; step: number; loss: number; held_out?: number } = { block: p.block, step: p.step, loss: p.loss ?? NaN };
    if (p.held_out !== undefined) c.held_out = p.held_out ?? NaN;
    return c;
  });
}
