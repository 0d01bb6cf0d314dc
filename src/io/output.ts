// io/output.ts — where a command may write, and how: the one guard every writing command uses, and
// the atomic output (a folder, or a single file) written through a hidden partial folder beside it.
//
// The guard compares real paths (symlinks, "..", "." and "" resolved; inodes for hard links), and
// refuses an output that is, contains, or lies inside any input, or that is the current folder,
// the home folder or "/". An existing output is replaced only with `force`, and only when the tool
// itself wrote it: a folder carrying the marker file MARKER, or a file the caller recognises as its
// own. Nothing else is ever deleted.
//
// A partial folder `.<name>.partial-<pid>-<hex>` holds the output while it is written, plus the
// marker, plus resumable progress under `state/` (see AtomicOutput.state). commit() renames it into
// place. A partial folder left by a killed run is reported and removed by the next run into the
// same place, or adopted by that run when it resumes. SIGINT, SIGTERM and SIGHUP remove the partial
// folder of a run in progress unless it holds resumable progress (then it is kept for --resume).

import { existsSync, promises as fsp, realpathSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { OutputError, UsageError } from "../errors.ts";
import { AtomicFile, inodeKey } from "./file.ts";

/** Name of the marker file that identifies a folder written by webgpu-quant. */
export const MARKER = ".wgq-output";
/** Folder inside a partial output that holds resumable progress. */
export const STATE_DIR = "state";

export interface GuardOptions {
  /** Every path the command reads: model folders, shards, calibration/evaluation text, stats files. */
  readonly inputs: readonly string[];
  /** Replace an existing output the tool wrote before. */
  readonly force?: boolean;
  /** "dir": the output is a folder (holds MARKER); "file": a single file. */
  readonly kind: "dir" | "file";
  /** For kind "file": does this existing file carry the tool's own mark (e.g. safetensors metadata)? */
  readonly ownFile?: (file: string) => Promise<boolean>;
  /** The option that named the output, for messages ("--out"). */
  readonly option?: string;
}

/** `p` with every symlink of its longest existing prefix resolved ("" and "." are the current folder). */
export function realPathOf(p: string): string {
  let abs = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      const real = realpathSync(abs);
      return rest.length ? path.join(real, ...rest.reverse()) : real;
    } catch {
      const parent = path.dirname(abs);
      if (parent === abs) return path.join(abs, ...rest.reverse());
      rest.push(path.basename(abs));
      abs = parent;
    }
  }
}

/** Is `inner` equal to `outer` or below it (both real, absolute)? */
function within(inner: string, outer: string): boolean {
  if (inner === outer) return true;
  const rel = path.relative(outer, inner);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
}


/** dev:ino of an input and, for a folder, of the files directly inside it. */
async function inputInodes(real: string): Promise<Set<string>> {
  const out = new Set<string>();
  const st = await fsp.stat(real).catch(() => null);
  if (!st) return out;
  out.add(inodeKey(st));
  if (st.isDirectory()) {
    const names = await fsp.readdir(real).catch(() => [] as string[]);
    for (const n of names) {
      const s = await fsp.stat(path.join(real, n)).catch(() => null);
      if (s?.isFile()) out.add(inodeKey(s));
    }
  }
  return out;
}

/**
 * Checks that `out` may be written. Returns its absolute real path. Throws OutputError (exit 2)
 * with one sentence when it may not.
 */
export async function guardOutput(out: string, opts: GuardOptions): Promise<string> {
  const opt = opts.option ?? "--out";
  if (typeof out !== "string" || out.trim() === "") {
    throw new OutputError(`${opt} ${JSON.stringify(String(out ?? ""))}`, "an empty path names the current folder, which is never an output", `name a new ${opts.kind === "dir" ? "folder" : "file"}, e.g. ${opt} out/model-int4`);
  }
  const lst = await fsp.lstat(path.resolve(out)).catch(() => null);
  if (lst?.isSymbolicLink()) {
    throw new OutputError(out, "is a symbolic link; an output is never written through a link", `give the real path (${realPathOf(out)}) or a new name`);
  }
  const real = realPathOf(out);
  const forbidden: [string, string][] = [["/", "the root folder"], [realPathOf(os.homedir()), "the home folder"], [realPathOf(process.cwd()), "the current folder"]];
  for (const [p, what] of forbidden) {
    if (within(p, real)) {
      throw new OutputError(out, p === real ? `is ${what}` : `contains ${what} (${p})`, `write to a new folder, e.g. ${opt} out/model-int4`);
    }
  }
  const outInodes = lst ? await inputInodes(real) : new Set<string>();
  for (const input of opts.inputs) {
    if (!input) continue;
    const ri = realPathOf(input);
    if (within(ri, real) || within(real, ri)) {
      const rel = real === ri ? "is the input" : within(ri, real) ? "contains the input" : "lies inside the input";
      throw new OutputError(out, `${rel} ${input}; inputs are never overwritten`, `write the output elsewhere, e.g. ${opt} ${path.join(path.dirname(ri), `${path.basename(ri)}-out`)}`);
    }
    if (outInodes.size) {
      for (const k of await inputInodes(ri)) {
        if (outInodes.has(k)) throw new OutputError(out, `is another name (a hard link) of the input ${input}; inputs are never overwritten`, "write the output elsewhere");
      }
    }
  }
  if (lst) {
    if (!opts.force) {
      throw new OutputError(out, "already exists", `choose another ${opt}, or pass --force to replace an output wgq wrote before`);
    }
    if (opts.kind === "dir") {
      if (!lst.isDirectory()) throw new OutputError(out, "exists and is not a folder; --force replaces only folders wgq wrote", `choose another ${opt}`);
      if (!existsSync(path.join(real, MARKER))) {
        throw new OutputError(out, `exists and was not written by wgq (no ${MARKER} inside); --force replaces only outputs wgq wrote`, `choose another ${opt}, or remove the folder yourself`);
      }
    } else {
      if (!lst.isFile()) throw new OutputError(out, "exists and is not a regular file", `choose another ${opt}`);
      const own = opts.ownFile ? await opts.ownFile(real).catch(() => false) : false;
      if (!own) throw new OutputError(out, "exists and was not written by wgq; --force replaces only outputs wgq wrote", `choose another ${opt}, or remove the file yourself`);
    }
  }
  const parent = path.dirname(real);
  const pst = await fsp.stat(parent).catch(() => null);
  if (pst && !pst.isDirectory()) throw new OutputError(out, `cannot be created: ${parent} is not a folder`, `choose another ${opt}`);
  return real;
}

// --- partial folders ---------------------------------------------------------------------------

interface MarkerInfo {
  producer: "webgpu-quant";
  command: string;
  pid: number;
  created: string;
}

const PARTIAL_RE = /^\.(.+)\.partial-(\d+)-[0-9a-f]+$/;

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Partial folders of `dest` left in its parent: [{path, pid, alive, marked}]. */
async function partialsOf(dest: string): Promise<{ path: string; pid: number; alive: boolean; marked: boolean; mtime: number }[]> {
  const parent = path.dirname(dest);
  const base = path.basename(dest);
  const names = await fsp.readdir(parent).catch(() => [] as string[]);
  const out = [];
  for (const n of names) {
    const m = PARTIAL_RE.exec(n);
    if (!m || m[1] !== base) continue;
    const p = path.join(parent, n);
    const st = await fsp.lstat(p).catch(() => null);
    if (!st?.isDirectory()) continue;
    const pid = Number(m[2]);
    out.push({ path: p, pid, alive: pidAlive(pid), marked: existsSync(path.join(p, MARKER)), mtime: st.mtimeMs });
  }
  return out.sort((a, b) => b.mtime - a.mtime);
}

/** Outputs being written now: cleaned up on SIGINT/SIGTERM/SIGHUP. */
const live = new Set<AtomicOutput>();
let handlersInstalled = false;
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

function installInterruptCleanup(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of Object.keys(SIGNAL_EXIT) as (keyof typeof SIGNAL_EXIT)[]) {
    process.on(sig, () => {
      for (const d of live) {
        if (d.hasProgress()) {
          process.stderr.write(`\ninterrupted: ${d.dest} was not written; its progress is kept in ${d.tmp} (rerun the same command with --resume to continue)\n`);
        } else {
          rmSync(d.tmp, { recursive: true, force: true });
          process.stderr.write(`\ninterrupted: ${d.dest} was not written (no partial output left behind)\n`);
        }
      }
      process.exit(SIGNAL_EXIT[sig]);
    });
  }
}

export interface AtomicOutputOptions extends Omit<GuardOptions, "kind"> {
  /** Which command writes (stored in the marker). */
  readonly command: string;
  /** Continue from the progress of an interrupted run into the same place, when there is one. */
  readonly resume?: boolean;
  /** Where notices go (stale partial folders found, progress resumed); default stderr. */
  readonly log?: (line: string) => void;
}

/**
 * An output written atomically. kind "dir": files go to `file(name)` inside the partial folder,
 * which commit() renames onto `dest`. kind "file": the single file is written to `file()` and
 * commit() renames it onto `dest`, then removes the partial folder. abort() (or a crash) leaves
 * `dest` untouched.
 */
export class AtomicOutput {
  #committed = false;
  private constructor(
    /** Absolute real path of the output. */
    readonly dest: string,
    /** The partial folder. */
    readonly tmp: string,
    readonly kind: "dir" | "file",
    readonly replace: boolean,
    /** Progress was adopted from an interrupted run. */
    readonly resumed: boolean,
  ) {}

  static async create(dest: string, kind: "dir" | "file", opts: AtomicOutputOptions): Promise<AtomicOutput> {
    const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
    const real = await guardOutput(dest, { ...opts, kind });
    const parent = path.dirname(real);
    await fsp.mkdir(parent, { recursive: true }).catch((e) => {
      throw new OutputError(dest, `its folder ${parent} cannot be created (${(e as NodeJS.ErrnoException).code ?? String(e)})`, "choose an output in a folder you can write to");
    });
    let adopted: string | null = null;
    for (const p of await partialsOf(real)) {
      if (p.alive) {
        throw new OutputError(dest, `another wgq run (pid ${p.pid}) is writing it now (${p.path})`, "wait for that run to finish, or stop it first");
      }
      if (!p.marked) {
        log(`note: ${p.path} looks like a partial output but has no ${MARKER}; left alone`);
        continue;
      }
      if (opts.resume && !adopted && existsSync(path.join(p.path, STATE_DIR))) {
        adopted = p.path;
        continue;
      }
      log(`removing ${p.path}: the partial output of an interrupted run (pid ${p.pid})`);
      await fsp.rm(p.path, { recursive: true, force: true });
    }
    const tmp = path.join(parent, `.${path.basename(real)}.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      if (adopted) {
        await fsp.rename(adopted, tmp);
        log(`resuming from the progress saved in ${adopted}`);
      } else {
        await fsp.mkdir(tmp);
      }
      const marker: MarkerInfo = { producer: "webgpu-quant", command: opts.command, pid: process.pid, created: new Date().toISOString() };
      await fsp.writeFile(path.join(tmp, MARKER), JSON.stringify(marker) + "\n");
    } catch (e) {
      throw new OutputError(dest, `cannot write in ${parent} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, "choose an output in a folder you can write to");
    }
    const d = new AtomicOutput(real, tmp, kind, !!opts.force, adopted !== null);
    installInterruptCleanup();
    live.add(d);
    return d;
  }

  /** Path of `name` inside the output being written; for kind "file", the file itself. */
  file(name?: string): string {
    if (this.kind === "file") return path.join(this.tmp, name ?? path.basename(this.dest));
    if (!name) throw new OutputError(this.dest, "a folder output needs a file name");
    return path.join(this.tmp, name);
  }

  /** Folder for resumable progress inside the partial folder (created on first use). */
  async state(): Promise<string> {
    const d = path.join(this.tmp, STATE_DIR);
    await fsp.mkdir(d, { recursive: true });
    return d;
  }

  /** Whether resumable progress has been saved. */
  hasProgress(): boolean {
    return existsSync(path.join(this.tmp, STATE_DIR));
  }

  async writeJson(name: string, v: unknown): Promise<void> {
    await fsp.writeFile(this.file(name), JSON.stringify(v, null, 2) + "\n");
  }

  /** Copies files of a source folder (those present) into the output; copies are user-writable. */
  async copyFiles(srcDir: string, names: readonly string[]): Promise<void> {
    for (const f of names) {
      try {
        await fsp.copyFile(path.join(srcDir, f), this.file(f));
        await fsp.chmod(this.file(f), 0o644);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
  }

  /** Moves the finished output into place (replacing a previous wgq output when allowed). */
  async commit(): Promise<void> {
    if (this.#committed) return;
    this.#committed = true;
    live.delete(this);
    await fsp.rm(path.join(this.tmp, STATE_DIR), { recursive: true, force: true });
    const src = this.kind === "dir" ? this.tmp : this.file();
    const exists = await fsp.lstat(this.dest).then(() => true, () => false);
    if (exists && !this.replace) throw new OutputError(this.dest, "appeared while this run was writing it; nothing was replaced", "choose another --out");
    if (exists) {
      const old = `${this.tmp}.old`;
      await fsp.rename(this.dest, old);
      await fsp.rename(src, this.dest);
      await fsp.rm(old, { recursive: true, force: true });
    } else {
      await fsp.rename(src, this.dest);
    }
    if (this.kind === "file") await fsp.rm(this.tmp, { recursive: true, force: true });
  }

  /** Deletes the partial folder (progress included); idempotent. */
  async abort(): Promise<void> {
    live.delete(this);
    if (this.#committed) return;
    this.#committed = true;
    await fsp.rm(this.tmp, { recursive: true, force: true });
  }

  /** Leaves the partial folder and its progress for --resume (used when a run fails midway). */
  keep(): void {
    live.delete(this);
    this.#committed = true;
  }
}


// --- resumable progress ------------------------------------------------------------------------

/**
 * Writes `file` atomically, for progress files under `state/`: a temp name beside it, fsync,
 * rename, then fsync of the folder, so that a kill (or a crash) leaves either the old file or the
 * new one, whole. `data` is the bytes, a text, or a callback that streams the bytes in parts.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array | ((write: (bytes: Uint8Array) => Promise<void>) => Promise<void>),
): Promise<void> {
  const f = await AtomicFile.create(file);
  try {
    if (typeof data === "function") await data((b) => f.write(b));
    else await f.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
  } catch (e) {
    await f.abort();
    throw e;
  }
  await f.commit();
  await syncFolder(path.dirname(file));
}

/** fsync of a folder (its entries: files created, renamed or removed); ignored where unsupported. */
export async function syncFolder(dir: string): Promise<void> {
  const fh = await fsp.open(dir, "r").catch(() => null);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    /* some file systems cannot fsync a folder */
  } finally {
    await fh.close();
  }
}

/** Removes the temp files a killed write left in a progress folder (`.NAME.tmp-PID-HEX`). */
export async function removeStaleTemps(dir: string): Promise<void> {
  for (const n of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (/^\..+\.tmp-\d+-[0-9a-f]+$/.test(n)) await fsp.rm(path.join(dir, n), { force: true });
  }
}

/**
 * Refuses to resume from progress saved under other settings: compares `saved` with `current`
 * key by key (as JSON) and throws a UsageError (exit 1) naming the first setting that differs.
 * `labels` gives each key its name for people (an option such as "--group-size"); `where` is the
 * folder holding the progress.
 */
export function checkResumeSettings(where: string, saved: Record<string, unknown>, current: Record<string, unknown>, labels: Record<string, string> = {}): void {
  for (const key of new Set([...Object.keys(current), ...Object.keys(saved)])) {
    const a = JSON.stringify(saved[key] ?? null), b = JSON.stringify(current[key] ?? null);
    if (a === b) continue;
    const show = (v: string) => (v.length > 40 ? `${v.slice(0, 37)}…` : v);
    throw new UsageError(
      `--resume: the progress saved in ${where} was made with another ${labels[key] ?? key} (${show(a)}; this run: ${show(b)}); nothing was resumed`,
      "rerun with the same settings to continue from it, or without --resume to discard it and start over",
    );
  }
}
