// io/file.ts — the two file primitives every reader/writer in io/ shares: bounded positioned reads
// (never a whole-file buffer) and atomic output files (temp file in the destination folder, renamed
// into place only when complete, refusing to overwrite a file some reader has open as input).
// It knows bytes and paths, nothing about formats.

import { promises as fsp, type Stats } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { InputError, OutputError } from "../errors.ts";

/** Largest single read() call: Node/libuv cap one read at INT32_MAX bytes; stay well below. */
const MAX_READ_CHUNK = 64 * 1024 * 1024;

// --- inputs ------------------------------------------------------------------------------------

/** dev:ino of every file currently open as an input; writers refuse to replace one of them. */
const openInputs = new Map<string, number>();

/** dev:ino of a file: the same file under any name. */
export function inodeKey(st: Stats): string {
  return `${st.dev}:${st.ino}`;
}

/** A read-only input file: size known at open, every read positioned and bounds-checked. */
export class InputFile {
  #closed = false;
  private constructor(
    readonly path: string,
    readonly size: number,
    private readonly fh: fsp.FileHandle,
    private readonly key: string,
  ) {}

  /** path -> open handle; a missing/unreadable file or a directory is an InputError. */
  static async open(file: string): Promise<InputFile> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new InputError(file, undefined, code === "ENOENT" ? "file not found" : `cannot open (${code ?? String(e)})`,
        code === "ENOENT" ? "check the path; a Hugging Face model folder holds config.json and *.safetensors" : undefined);
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new InputError(file, undefined, "not a regular file");
    }
    const key = inodeKey(st);
    openInputs.set(key, (openInputs.get(key) ?? 0) + 1);
    return new InputFile(file, st.size, fh, key);
  }

  /** (position, length) -> exactly `length` bytes; past the end is a truncation InputError naming `field`. */
  async read(position: number, length: number, field: string | undefined): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(out, position, field);
    return out;
  }

  /** Fill `dst` (byteLength bytes) from `position`, in chunks of at most 64 MiB. */
  async readInto(dst: Uint8Array, position: number, field: string | undefined): Promise<void> {
    if (this.#closed) throw new InputError(this.path, field, "read after close");
    if (!Number.isSafeInteger(position) || position < 0 || position + dst.byteLength > this.size) {
      throw new InputError(this.path, field,
        `truncated: needs bytes [${position}, ${position + dst.byteLength}) but the file has ${this.size}`,
        "the file is incomplete (interrupted download or copy?); download it again");
    }
    let done = 0;
    while (done < dst.byteLength) {
      const n = Math.min(MAX_READ_CHUNK, dst.byteLength - done);
      const { bytesRead } = await this.fh.read(dst, done, n, position + done);
      if (bytesRead === 0) {
        throw new InputError(this.path, field, `truncated: file ended at byte ${position + done} while reading`,
          "the file changed or is incomplete; download it again");
      }
      done += bytesRead;
    }
  }

  /** Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const n = (openInputs.get(this.key) ?? 1) - 1;
    if (n <= 0) openInputs.delete(this.key);
    else openInputs.set(this.key, n);
    await this.fh.close();
  }
}

// --- outputs -----------------------------------------------------------------------------------

/**
 * Throws OutputError when `dest` is (a link to) a file open as an input, or one of `protect`.
 * Compares inodes, so another spelling of the same path (../, symlink) is caught too.
 */
export async function assertNotInput(dest: string, protect: readonly string[] = []): Promise<void> {
  let st: Stats;
  try {
    st = await fsp.stat(dest);
  } catch {
    return; // does not exist yet: cannot be an input
  }
  const key = inodeKey(st);
  let isInput = openInputs.has(key);
  for (const p of protect) {
    if (isInput) break;
    try {
      isInput = inodeKey(await fsp.stat(p)) === key;
    } catch {
      /* a protected path that does not exist protects nothing */
    }
  }
  if (isInput) {
    throw new OutputError(dest, "refusing to overwrite an input file of this run",
      "write the output to another folder (e.g. MODEL-int4/) and keep the original model intact");
  }
}

/**
 * A file written sequentially into `<dir>/.<name>.tmp-<random>` and renamed onto `dest` by commit().
 * abort() (or a crash) leaves `dest` untouched.
 */
export class AtomicFile {
  #done = false;
  #pos = 0;
  private constructor(readonly dest: string, readonly tmp: string, private readonly fh: fsp.FileHandle) {}

  /** dest -> open temp file beside it; OutputError if dest is an input or the folder is missing. */
  static async create(dest: string, protect: readonly string[] = []): Promise<AtomicFile> {
    await assertNotInput(dest, protect);
    const dir = path.dirname(path.resolve(dest));
    const tmp = path.join(dir, `.${path.basename(dest)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(tmp, "wx");
    } catch (e) {
      throw new OutputError(dest, `cannot create a file in ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
        "create the output folder first and check it is writable");
    }
    return new AtomicFile(dest, tmp, fh);
  }

  /** Bytes written so far. */
  get position(): number {
    return this.#pos;
  }

  /** Append `bytes` at the current position. */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#done) throw new OutputError(this.dest, "write after commit/abort");
    let done = 0;
    while (done < bytes.byteLength) {
      const n = Math.min(MAX_READ_CHUNK, bytes.byteLength - done);
      const { bytesWritten } = await this.fh.write(bytes, done, n, this.#pos + done);
      done += bytesWritten;
    }
    this.#pos += bytes.byteLength;
  }

  /** fsync, close, re-check dest is not an input, rename onto dest. */
  async commit(protect: readonly string[] = []): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      await this.fh.sync();
      await this.fh.close();
      await assertNotInput(this.dest, protect);
      await fsp.rename(this.tmp, this.dest);
    } catch (e) {
      await fsp.rm(this.tmp, { force: true });
      throw e;
    }
  }

  /** Close and delete the temp file; idempotent. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.tmp, { force: true });
  }
}

// --- JSON files --------------------------------------------------------------------------------

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Nesting depth of parsed JSON, computed without recursion (a hostile file may nest 100 000 levels). */
export function jsonDepth(v: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (typeof x !== "object" || x === null) continue;
    if (d > max) max = d;
    for (const c of Array.isArray(x) ? x : Object.values(x)) if (typeof c === "object" && c !== null) stack.push([c, d + 1]);
  }
  return max;
}

export interface ReadJsonOptions {
  /** A missing file is an error (default) or null. */
  readonly required?: boolean;
  /** Hint when a required file is missing. */
  readonly missingHint?: string;
  /** Largest accepted file (bytes) and JSON nesting; beyond them the file is refused as damaged. */
  readonly maxBytes?: number;
  readonly maxDepth?: number;
}

/**
 * file -> parsed JSON object: strict UTF-8, a JSON object, optionally bounded in size and nesting
 * (a copy written back must round-trip). Every failure is an InputError naming the file.
 */
export async function readJsonObject(file: string, opts: ReadJsonOptions & { required: false }): Promise<Record<string, unknown> | null>;
export async function readJsonObject(file: string, opts?: ReadJsonOptions): Promise<Record<string, unknown>>;
export async function readJsonObject(file: string, opts: ReadJsonOptions = {}): Promise<Record<string, unknown> | null> {
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && opts.required === false) return null;
    throw new InputError(file, undefined, code === "ENOENT" ? "not found" : `cannot read (${code ?? String(e)})`, code === "ENOENT" ? opts.missingHint : undefined);
  }
  if (opts.maxBytes !== undefined && bytes.byteLength > opts.maxBytes) {
    throw new InputError(file, undefined, `${bytes.byteLength} bytes: far larger than such a file can be (at most ${opts.maxBytes})`, "the file is damaged; download it again");
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new InputError(file, undefined, "is not valid UTF-8", "the file is damaged; download it again");
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new InputError(file, undefined, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new InputError(file, undefined, "not a JSON object");
  if (opts.maxDepth !== undefined) {
    const depth = jsonDepth(v);
    if (depth > opts.maxDepth) throw new InputError(file, undefined, `JSON nested ${depth} levels deep (at most ${opts.maxDepth})`, "the file is damaged; download it again");
  }
  return v as Record<string, unknown>;
}
