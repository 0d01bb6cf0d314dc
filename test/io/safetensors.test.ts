// test/io/safetensors.test.ts — safetensors reader/writer: stories260K, every bad-input case named by
// issue 3, 2000 random byte mutations, and a ~300 MB 3-shard BF16 round trip with peak RSS measured.

import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { promises as fsp } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { InputError, OutputError } from "../../src/errors.ts";
import { bf16ArrayToF32, f32ArrayToBf16 } from "../../src/common/half.ts";
import {
  SafetensorsCheckpoint, SafetensorsFile, SafetensorsWriter, writeSafetensors,
  writeShardedSafetensors, INDEX_FILE, type HostTensor, type TensorSpec,
} from "../../src/io/safetensors.ts";
import { f32ToF16Bits } from "../../src/ref/f16.ts";

const MODEL = fileURLToPath(new URL("../../../shared/models/stories260K/", import.meta.url));

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "wgq-st-"));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** header object (any JSON) + data bytes -> raw safetensors file bytes (header unpadded). */
function rawFile(header: unknown, data: Uint8Array, headerText?: Uint8Array): Uint8Array {
  const h = headerText ?? new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}

/** A valid two-tensor file: a F32 [2,3] at [0,24), b I8 [4] at [24,28). */
function validParts(): { header: Record<string, unknown>; data: Uint8Array } {
  const data = new Uint8Array(28);
  new Float32Array(data.buffer, 0, 6).set([1, 2, 3, 4, 5, 6]);
  data.set([1, 2, 3, 255], 24);
  return {
    header: {
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: "I8", shape: [4], data_offsets: [24, 28] },
    },
    data,
  };
}

let counter = 0;
async function put(bytes: Uint8Array): Promise<string> {
  const p = path.join(tmp, `t${counter++}.safetensors`);
  await fsp.writeFile(p, bytes);
  return p;
}

/** Expect opening (and reading every tensor of) `bytes` to fail with an InputError naming file and `field`. */
async function expectInputError(bytes: Uint8Array, field: string | RegExp, detail?: RegExp): Promise<InputError> {
  const p = await put(bytes);
  let err: unknown;
  try {
    const f = await SafetensorsFile.open(p);
    for (const n of f.tensors.keys()) await f.read(n);
    await f.close();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InputError);
  const ie = err as InputError;
  expect(ie.file).toBe(p);
  expect(ie.message).toContain(p);
  if (typeof field === "string") expect(ie.field).toBe(field);
  else expect(ie.field).toMatch(field);
  if (detail) expect(ie.message).toMatch(detail);
  return ie;
}

describe("stories260K", () => {
  it("opens the HF checkpoint and reads tensors identical to the llama2.c export", async () => {
    const ck = await SafetensorsCheckpoint.open(MODEL);
    expect(ck.files.length).toBe(1);
    expect(ck.names().length).toBe(2 + 5 * 9);
    const emb = ck.info("model.embed_tokens.weight");
    expect(emb.dtype).toBe("F32");
    expect(emb.shape).toEqual([512, 64]);
    const t = await ck.read("model.embed_tokens.weight", "f32");
    expect(t.data).toBeInstanceOf(Float32Array);
    // llama2.c .bin: 7 int32 header, then token_embedding (512 x 64) f32 — the same numbers.
    const bin = await fsp.readFile(path.join(MODEL, "llama2c/stories260K.bin"));
    const ref = new Float32Array(bin.buffer.slice(bin.byteOffset + 28, bin.byteOffset + 28 + 512 * 64 * 4));
    expect(Buffer.from((t.data as Float32Array).buffer).equals(Buffer.from(ref.buffer))).toBe(true);
    const h = await ck.read("model.norm.weight", "f16");
    const f = await ck.read("model.norm.weight", "f32");
    expect(h.dtype).toBe("F16");
    expect([...(h.data as Uint16Array)]).toEqual([...(f.data as Float32Array)].map(f32ToF16Bits));
    await ck.close();
  });
});

describe("round trip", () => {
  it("writes every dtype with __metadata__ and reads it back bit-exactly", async () => {
    const tensors: HostTensor[] = [
      { name: "f64", dtype: "F64", shape: [3], data: new Float64Array([1.5, -2, 1e300]) },
      { name: "f32", dtype: "F32", shape: [2, 2], data: new Float32Array([0, -0, Infinity, NaN]) },
      { name: "f16", dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
      { name: "bf16", dtype: "BF16", shape: [3], data: new Uint16Array([0x3f80, 0xc000, 0x7f7f]) },
      { name: "i64", dtype: "I64", shape: [2], data: new BigInt64Array([-1n, 1n << 62n]) },
      { name: "i32", dtype: "I32", shape: [1, 1, 2], data: new Int32Array([-7, 7]) },
      { name: "i8", dtype: "I8", shape: [3], data: new Int8Array([-128, 0, 127]) },
      { name: "u8", dtype: "U8", shape: [2], data: new Uint8Array([0, 255]) },
      { name: "bool", dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
      { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
      { name: "scalar", dtype: "F32", shape: [], data: new Float32Array([42]) },
      { name: "__proto__", dtype: "U8", shape: [1], data: new Uint8Array([7]) },
    ];
    const p = path.join(tmp, "all.safetensors");
    await writeSafetensors(p, tensors, { metadata: { format: "pt", note: "ünïcode" } });
    const f = await SafetensorsFile.open(p);
    expect(f.metadata).toEqual({ format: "pt", note: "ünïcode" });
    expect((await fsp.readFile(p)).readBigUInt64LE(0) % 8n).toBe(0n);
    for (const t of tensors) {
      const r = await f.read(t.name);
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(r.data.constructor).toBe(t.data.constructor);
      expect(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength)
        .equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true);
    }
    expect([...((await f.read("bf16", "f32")).data as Float32Array)]).toEqual([1, -2, 3.3895313892515355e38]);
    expect([...((await f.read("f16", "f32")).data as Float32Array)]).toEqual([1, -2, 65504]);
    expect([...((await f.read("i8", "f32")).data as Float32Array)]).toEqual([-128, 0, 127]);
    expect([...((await f.read("bf16", "f16")).data as Uint16Array)]).toEqual([0x3c00, 0xc000, 0x7c00]);
    expect([...((await f.read("i64", "f32")).data as Float32Array)]).toEqual([-1, 2 ** 62]);
    await f.close();
  });

  it("bf16 <-> f32 conversion rounds to nearest even and is exact on the way back", () => {
    const x = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -3.14159, 1e-40, NaN, -Infinity]);
    const b = f32ArrayToBf16(x);
    expect([...b.slice(0, 3)]).toEqual([0x3f80, 0x3f80, 0x3f82]);
    const back = bf16ArrayToF32(b);
    expect(back[3]).toBeCloseTo(-3.14159, 2);
    expect(Number.isNaN(back[5])).toBe(true);
    expect(back[6]).toBe(-Infinity);
    expect([...f32ArrayToBf16(back)]).toEqual([...b]);
  });

  it("the writer streams in spec order and refuses bad order, sizes and early close", async () => {
    const specs: TensorSpec[] = [{ name: "x", dtype: "F32", shape: [2] }, { name: "y", dtype: "U8", shape: [1] }];
    const p = path.join(tmp, "order.safetensors");
    const w = await SafetensorsWriter.create(p, specs);
    await expect(w.write("y", new Uint8Array(1))).rejects.toThrow(/expected tensor 'x'/);
    await expect(fsp.access(p)).rejects.toThrow();
    const w2 = await SafetensorsWriter.create(p, specs);
    await expect(w2.write("x", new Float32Array(3))).rejects.toThrow(/12 bytes, spec needs 8/);
    const w3 = await SafetensorsWriter.create(p, specs);
    await w3.write("x", new Float32Array(2));
    await expect(w3.close()).rejects.toThrow(/closed after 1 of 2/);
    await expect(fsp.access(p)).rejects.toThrow();
    expect((await fsp.readdir(tmp)).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  it("never overwrites a file open as input, nor a protected path", async () => {
    const src = path.join(tmp, "input.safetensors");
    await writeSafetensors(src, [{ name: "w", dtype: "F32", shape: [1], data: new Float32Array([1]) }]);
    const before = await fsp.readFile(src);
    const f = await SafetensorsFile.open(src);
    const out: HostTensor[] = [{ name: "w", dtype: "F32", shape: [1], data: new Float32Array([2]) }];
    await expect(writeSafetensors(src, out)).rejects.toBeInstanceOf(OutputError);
    await expect(writeSafetensors(path.join(tmp, ".", "input.safetensors"), out)).rejects.toThrow(/overwrite an input/);
    await f.close();
    await expect(writeSafetensors(src, out, { protect: [src] })).rejects.toBeInstanceOf(OutputError);
    expect((await fsp.readFile(src)).equals(before)).toBe(true);
    await writeSafetensors(src, out); // closed and unprotected: allowed
    expect((await fsp.readdir(tmp)).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });
});

describe("bad input: every case is an InputError naming the file and the field", () => {
  it("accepts the valid base file", async () => {
    const { header, data } = validParts();
    const f = await SafetensorsFile.open(await put(rawFile(header, data)));
    expect([...((await f.read("b")).data as Int8Array)]).toEqual([1, 2, 3, -1]);
    await f.close();
  });

  it("truncated file: inside the length, the header, the data", async () => {
    const { header, data } = validParts();
    const full = rawFile(header, data);
    await expectInputError(full.slice(0, 5), "header length", /truncated/);
    await expectInputError(full.slice(0, 30), "header", /truncated/);
    await expectInputError(full.slice(0, full.length - 3), "b", /past the end/);
    await expectInputError(new Uint8Array(0), "header length", /truncated/);
  });

  it("header length 2^60 is rejected before any allocation", async () => {
    const b = new Uint8Array(64);
    new DataView(b.buffer).setBigUint64(0, 1n << 60n, true);
    await expectInputError(b, "header length", /exceeds/);
  });

  it("header not JSON, not UTF-8, not an object", async () => {
    const { data } = validParts();
    await expectInputError(rawFile(null, data, new TextEncoder().encode("{not json")), "header", /not valid JSON/);
    await expectInputError(rawFile(null, data, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), "header", /UTF-8/);
    await expectInputError(rawFile(null, data, new TextEncoder().encode("[1,2]")), "header", /start with/);
    await expectInputError(rawFile(null, new Uint8Array(0), new TextEncoder().encode("{\"a\": 1}")), "a", /not an object/);
  });

  it("unknown dtype", async () => {
    const { header, data } = validParts();
    (header.a as Record<string, unknown>).dtype = "F8_E4M3";
    const e = await expectInputError(rawFile(header, data), "a", /unknown dtype "F8_E4M3"; supported: .*BF16/);
    expect(e.hint).toBeTruthy();
  });

  it("negative, non-integer, non-array shapes", async () => {
    for (const shape of [[-2, -3], [2.5, 2], ["2", 3], 6, [2 ** 53, 2 ** 53]]) {
      const { header, data } = validParts();
      (header.a as Record<string, unknown>).shape = shape;
      await expectInputError(rawFile(header, data), "a", /shape/);
    }
  });

  it("offsets overlapping, reversed, past the end, with a hole, leaving trailing bytes", async () => {
    const cases: [unknown, unknown, string, RegExp][] = [
      [[0, 24], [20, 24], "b", /overlap tensor 'a'/],
      [[0, 24], [4, 28], "b", /byte length/],
      [[0, 24], [0, 4], "a", /overlap tensor 'b'/],
      [[24, 0], [24, 28], "a", /reversed/],
      [[0, 24], [24, 40], "b", /past the end/],
      [[0, 24], [-4, 0], "b", /data_offsets/],
      [[0, 24], [24.5, 28.5], "b", /data_offsets/],
      [[0, 24], "24..28", "b", /data_offsets/],
    ];
    for (const [oa, ob, field, re] of cases) {
      const { header, data } = validParts();
      (header.a as Record<string, unknown>).data_offsets = oa;
      (header.b as Record<string, unknown>).data_offsets = ob;
      await expectInputError(rawFile(header, data), field, re);
    }
    {
      const { header, data } = validParts();
      (header.b as Record<string, unknown>).shape = [2];
      (header.b as Record<string, unknown>).data_offsets = [26, 28];
      await expectInputError(rawFile(header, data), "b", /hole of 2 bytes/);
    }
    {
      const { header, data } = validParts();
      (header.b as Record<string, unknown>).shape = [2];
      (header.b as Record<string, unknown>).data_offsets = [24, 26];
      await expectInputError(rawFile(header, data), "data_offsets", /2 trailing bytes/);
    }
    {
      const { header, data } = validParts();
      header.c = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
      await expectInputError(rawFile(header, data), /^[ac]$/, /overlap/);
    }
  });

  it("byte length != shape x dtype size", async () => {
    const { header, data } = validParts();
    (header.a as Record<string, unknown>).shape = [2, 2];
    await expectInputError(rawFile(header, data), "a", /byte length 24 != 16/);
  });

  it("bad __metadata__", async () => {
    const { header, data } = validParts();
    header.__metadata__ = { format: 1 };
    await expectInputError(rawFile(header, data), "__metadata__.format", /not a string/);
  });

  it("a missing file and a folder without safetensors", async () => {
    await expect(SafetensorsFile.open(path.join(tmp, "nope.safetensors"))).rejects.toThrow(/file not found/);
    const empty = await fsp.mkdtemp(path.join(tmp, "empty-"));
    await expect(SafetensorsCheckpoint.open(empty)).rejects.toBeInstanceOf(InputError);
  });

  it("property: 2000 random byte mutations never crash, hang or throw anything but InputError", async () => {
    const { header, data } = validParts();
    const base = rawFile(header, data);
    const p = path.join(tmp, "fuzz.safetensors");
    let ok = 0;
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.option(fc.nat(), { freq: 4 }),
        async (edits, cut) => {
          let b = base.slice();
          for (const [pos, v] of edits) b[pos % b.length] = v;
          if (cut !== null) b = b.slice(0, cut % (b.length + 1));
          await fsp.writeFile(p, b);
          try {
            const f = await SafetensorsFile.open(p);
            try {
              for (const n of f.tensors.keys()) {
                await f.read(n, "raw");
                await f.read(n, "f32");
              }
            } finally {
              await f.close();
            }
            ok++;
          } catch (e) {
            if (!(e instanceof InputError)) throw e;
            expect(e.file).toBe(p);
            rejected++;
          }
        },
      ),
      { numRuns: 2000, seed: 20240603 },
    );
    expect(ok + rejected).toBe(2000);
    expect(rejected).toBeGreaterThan(1000);
  }, 60_000);
});

describe("sharded checkpoints", () => {
  async function shardedDir(): Promise<string> {
    const dir = await fsp.mkdtemp(path.join(tmp, "sh-"));
    const specs: TensorSpec[] = ["a", "b", "c"].map((name) => ({ name, dtype: "F32", shape: [4] }));
    const r = await writeShardedSafetensors(dir, specs, (s, i) => new Float32Array([i, i, i, i]), { maxShardBytes: 16 });
    expect(r.files.map((f) => path.basename(f))).toEqual([
      "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
    ]);
    return dir;
  }

  it("reads tensors through the index", async () => {
    const dir = await shardedDir();
    const ck = await SafetensorsCheckpoint.open(dir);
    expect(ck.files.length).toBe(3);
    expect([...((await ck.read("c")).data as Float32Array)]).toEqual([2, 2, 2, 2]);
    await ck.close();
  });

  it("index pointing at a missing shard", async () => {
    const dir = await shardedDir();
    await fsp.rm(path.join(dir, "model-00002-of-00003.safetensors"));
    const e = await SafetensorsCheckpoint.open(dir).catch((x) => x);
    expect(e).toBeInstanceOf(InputError);
    expect(e.file).toBe(path.join(dir, INDEX_FILE));
    expect(e.field).toBe("weight_map.b");
    expect(e.message).toMatch(/shard 'model-00002-of-00003.safetensors' is missing/);
  });

  it("index pointing at a tensor its shard does not hold, or outside the folder", async () => {
    const dir = await shardedDir();
    const ip = path.join(dir, INDEX_FILE);
    const index = JSON.parse(await fsp.readFile(ip, "utf8"));
    index.weight_map.d = "model-00001-of-00003.safetensors";
    await fsp.writeFile(ip, JSON.stringify(index));
    const e = await SafetensorsCheckpoint.open(dir).catch((x) => x);
    expect(e).toBeInstanceOf(InputError);
    expect(e.field).toBe("weight_map.d");
    expect(e.message).toMatch(/not in shard/);
    index.weight_map.d = "../x.safetensors";
    await fsp.writeFile(ip, JSON.stringify(index));
    await expect(SafetensorsCheckpoint.open(dir)).rejects.toThrow(/not a file name/);
    await fsp.writeFile(ip, "{");
    await expect(SafetensorsCheckpoint.open(dir)).rejects.toBeInstanceOf(InputError);
    await fsp.writeFile(ip, "{}");
    await expect(SafetensorsCheckpoint.open(dir)).rejects.toThrow(/weight_map/);
  });

  it("3-shard BF16 ~300 MB round trip is bit-exact with peak RSS below one shard (+ GC margin)", async () => {
    // 12 tensors of [3072, 4096] BF16 = 25,165,824 bytes each, 302 MB; shards of 4 tensors (100.7 MB).
    const R = 3072, C = 4096, T = 12, tensorBytes = R * C * 2;
    const dir = await fsp.mkdtemp(path.join(tmp, "big-"));
    const specs: TensorSpec[] = Array.from({ length: T }, (_, i) => ({ name: `layers.${i}.w`, dtype: "BF16", shape: [R, C] }));
    const gen = new Uint16Array(R * C); // one reusable buffer: the producer holds one tensor at a time
    const fill = (seed: number) => {
      let x = (seed * 0x9e3779b9 + 1) >>> 0;
      for (let i = 0; i < gen.length; i++) {
        x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
        gen[i] = x & 0xffff;
      }
      return gen;
    };
    const base = process.memoryUsage().rss;
    let peak = base;
    const sample = () => { peak = Math.max(peak, process.memoryUsage().rss); };
    const t0 = performance.now();
    const { files, index } = await writeShardedSafetensors(dir, specs, (_s, i) => { sample(); return fill(i); },
      { maxShardBytes: 4 * tensorBytes, metadata: { format: "pt" } });
    sample();
    const tWrite = performance.now() - t0;
    expect(files.length).toBe(3);
    expect(index).not.toBeNull();
    const shardSizes = await Promise.all(files.map(async (f) => (await fsp.stat(f)).size));
    const largest = Math.max(...shardSizes);
    const verify = (got: Uint16Array, i: number) => {
      const want = fill(i);
      let bad = -1;
      for (let j = 0; j < want.length; j++) if (got[j] !== want[j]) { bad = j; break; }
      expect(bad, `${specs[i].name} differs at element ${bad}`).toBe(-1);
    };
    const ck = await SafetensorsCheckpoint.open(dir);
    // pass 1: one reused staging buffer (what a GPU upload loop does) — memory is deterministic
    const staging = new Uint8Array(tensorBytes);
    for (let i = 0; i < T; i++) {
      await ck.readRawInto(specs[i].name, staging);
      sample();
      verify(new Uint16Array(staging.buffer), i);
    }
    const peakStaged = peak;
    // pass 2: read() allocates a fresh typed array per tensor; the GC frees them on its own schedule
    for (let i = 0; i < T; i++) {
      const t = await ck.read(specs[i].name);
      sample();
      expect(t.dtype).toBe("BF16");
      expect(t.shape).toEqual([R, C]);
      verify(t.data as Uint16Array, i);
    }
    await ck.close();
    const tAll = performance.now() - t0;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const maxRss = process.resourceUsage().maxRSS * 1024;
    console.log(`[safetensors RSS] total ${mb(T * tensorBytes)} MB in ${files.length} shards (largest ${mb(largest)} MB); ` +
      `rss before ${mb(base)} MB; sampled peak during write + staged reads ${mb(peakStaged)} MB (+${mb(peakStaged - base)} MB); ` +
      `after allocating reads ${mb(peak)} MB (+${mb(peak - base)} MB); process maxRSS ${mb(maxRss)} MB; ` +
      `write ${(tWrite / 1000).toFixed(1)} s, write + 2 reads + verify ${(tAll / 1000).toFixed(1)} s`);
    expect(peakStaged - base).toBeLessThan(largest);
    // read() hands out a fresh array per tensor; unreferenced ones wait for V8's GC, so the bound is looser
    expect(peak - base).toBeLessThan(largest + 128e6);
    await fsp.rm(dir, { recursive: true, force: true });
  }, 60_000);
});
