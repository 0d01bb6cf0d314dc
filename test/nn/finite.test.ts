// NaN/±Inf never pass silently: the finiteness kernel against its CPU reference (f32, f16, bf16,
// ragged sizes, folded grids, several binding windows), and the checks built on it: weights at
// load, eval logits, generation, calibration, AWQ losses; device loss during a readback.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { createContext } from "../../src/gpu/context.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { webGpuExceptionError } from "../../src/gpu/device.ts";
import { DeviceLostError, EmptyGenerationError, InputError, NonFiniteError, NonFiniteWeightError } from "../../src/errors.ts";
import { assertFinite, assertFiniteRows, describeNonFinite, FiniteChecks, firstNonFinite } from "../../src/nn/finite.ts";
import { LlamaModel } from "../../src/model/llama.ts";
import { evaluate, windows } from "../../src/model/eval.ts";
import { generate } from "../../src/model/generate.ts";
import { parseConfig, type LlamaConfig } from "../../src/model/config.ts";
import { mapSource, syntheticWeights, writeSyntheticModel } from "../../src/model/synthetic.ts";
import { CalibrationCollector } from "../../src/ptq/calib.ts";
import { awqTransform } from "../../src/ptq/awq.ts";
import { f32ToF16Bits } from "../../src/ref/f16.ts";
import { gpuContext, rng } from "../helpers/gpu.ts";

const temps: string[] = [];
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

type Dt = "f32" | "f16" | "bf16";

/** n random finite values of `dtype` (f32 values, or f16/bf16 bit patterns) from `seed`. */
function randomValues(n: number, dtype: Dt, seed: number): Float32Array | Uint16Array {
  const r = rng(seed);
  if (dtype === "f32") return Float32Array.from({ length: n }, () => (r() - 0.5) * 10 ** Math.floor(r() * 60 - 30));
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return Uint16Array.from({ length: n }, () => {
    f[0] = (r() - 0.5) * 100;
    return dtype === "f16" ? f32ToF16Bits(f[0]) : u[0] >>> 16;
  });
}

/** Bit patterns of non-finite values per dtype (NaNs of several payloads and signs). */
const BAD: Record<Dt, number[]> = {
  f32: [0x7fc00000, 0x7f800001, 0xffc00000, 0x7f800000, 0xff800000],
  f16: [0x7e00, 0x7c01, 0xfe00, 0x7c00, 0xfc00],
  bf16: [0x7fc0, 0x7f81, 0xffc0, 0x7f80, 0xff80],
};
/** Largest finite and smallest subnormal values: finite, must not be flagged. */
const EDGE: Record<Dt, number[]> = { f32: [0x7f7fffff, 0xff7fffff, 0x00000001], f16: [0x7bff, 0xfbff, 0x0001], bf16: [0x7f7f, 0xff7f, 0x0001] };

function plant(a: Float32Array | Uint16Array, dtype: Dt, at: number[], seed: number): void {
  const bits = dtype === "f32" ? new Uint32Array(a.buffer, a.byteOffset, a.length) : (a as Uint16Array);
  const r = rng(seed);
  for (const i of at) bits[i] = BAD[dtype][Math.floor(r() * BAD[dtype].length)];
}

function upload(ctx: Awaited<ReturnType<typeof gpuContext>>, a: Float32Array | Uint16Array, dtype: Dt, shape: number[], label: string): GpuTensor {
  return GpuTensor.fromHost(ctx.gpu, a, shape, dtype, label);
}

describe("finiteness kernel (shaders/common/finite.wgsl) vs the CPU reference", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  for (const dtype of ["f32", "f16", "bf16"] as Dt[]) {
    it(`${dtype}: ragged sizes, NaN/±Inf at random positions (last element included), many slots over pages`, async () => {
      const base = gpu.stats.liveBytes;
      const r = rng(Date.now() >>> 0); // fresh inputs every run; the seed is in the failure message
      const seed0 = Math.floor(r() * 1e9);
      const sizes = [1, 2, 3, 255, 256, 257, 511, 1000, 4097, 65_537, 300_001];
      // 3 tensors per size: several pages; 3 words per invocation: ragged strided ranges
      const checks = new FiniteChecks<string>(ctx, { slots: 4, wordsPerInvocation: 3 });
      const batch = new CommandBatch(gpu, "test.finite");
      const tensors: GpuTensor[] = [];
      const want = new Map<string, ReturnType<typeof firstNonFinite>>();
      for (const [j, n] of sizes.entries()) {
        const seed = seed0 + j;
        const clean = randomValues(n, dtype, seed);
        const edge = clean.slice();
        const eb = dtype === "f32" ? new Uint32Array(edge.buffer) : (edge as Uint16Array);
        for (let e = 0; e < Math.min(3, n); e++) eb[(e * 7919) % n] = EDGE[dtype][e];
        const dirty = clean.slice();
        const rr = rng(seed ^ 0xbad);
        const at = [n - 1, ...Array.from({ length: Math.min(n - 1, 1 + Math.floor(rr() * 5)) }, () => Math.floor(rr() * n))];
        plant(dirty, dtype, at, seed);
        for (const [kind, a] of [["clean", clean], ["edge", edge], ["dirty", dirty]] as const) {
          const tag = `${kind} n=${n} seed=${seed}`;
          const t = upload(ctx, a, dtype, [n], tag);
          tensors.push(t);
          await checks.record(batch, t, tag);
          want.set(tag, firstNonFinite(a, dtype));
        }
      }
      batch.submit();
      const got = new Map((await checks.read()).map((f) => [f.tag, f.bad]));
      for (const [tag, w] of want) expect(got.get(tag) ?? null, tag).toEqual(w);
      expect([...want.values()].filter(Boolean).length).toBe(sizes.length); // every dirty tensor, no clean one
      // reset: the same slots report fresh results
      checks.reset();
      const b2 = new CommandBatch(gpu, "test.finite2");
      await checks.record(b2, tensors[0], "clean again");
      await checks.record(b2, tensors[2], "dirty again");
      b2.submit();
      const again = await checks.read();
      expect(again.map((f) => f.tag)).toEqual(["dirty again"]);
      expect(again[0].bad).toEqual(want.get(tensors[2].label));
      checks.destroy();
      for (const t of tensors) t.destroy();
      expect(gpu.stats.liveBytes).toBe(base);
    });
  }

  it("a view at an aligned offset reports indices relative to the view; a [T, H] tensor names its first bad row", async () => {
    const H = 96, T = 40;
    const a = randomValues(H * (T + 8), "f32", 11) as Float32Array;
    plant(a, "f32", [3 * H + 5], 1); // before the view: must not count
    plant(a, "f32", [8 * H + 17 * H + 2, 8 * H + 30 * H], 2); // rows 17 and 30 of the view
    const t = upload(ctx, a, "f32", [T + 8, H], "acts.all");
    const v = t.view("acts", [T, H], 8 * H * 4); // 3072 bytes: a multiple of 256
    const err = await assertFiniteRows(ctx, v, "block 3 output").catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/^block 3 output: 2 of 3840 values are [^,]+, the first at token position 17 \(column 2\)$/);
    await expect(assertFinite(ctx, t.view("head", [8, H], 0), "head rows")).rejects.toThrow(/first at \[3, 5\]/);
    t.destroy();
  });

  it(`a tensor past 65,535 workgroups (one word per invocation: folded grid): the first bad index lies in the folded part`, async () => {
    const n = 17_000_003; // 66 407 workgroups of 256
    const a = new Float32Array(n).fill(0.5);
    const k = await ctx.kernels.get("common/finite.wgsl", "main", { WG_SIZE: 256, DTYPE: 0 });
    expect(k.grid1d(Math.ceil(n / 256))[1]).toBeGreaterThan(1);
    const r = rng(Date.now() >>> 0);
    const at = [n - 1, 16_800_000 + Math.floor(r() * 190_000)];
    plant(a, "f32", at, 3);
    const t = upload(ctx, a, "f32", [n], "big");
    for (const wordsPerInvocation of [1, undefined]) {
      const checks = new FiniteChecks<string>(ctx, { slots: 1, wordsPerInvocation });
      const b = new CommandBatch(gpu);
      await checks.record(b, t, "big");
      b.submit();
      const [f] = await checks.read();
      expect(f.bad, `wordsPerInvocation ${wordsPerInvocation}`).toEqual({ count: 2, first: Math.min(...at), kinds: firstNonFinite(a)!.kinds });
      checks.destroy();
    }
    const err = await assertFinite(ctx, t, "big").catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.message).toContain(`2 of ${n} values`);
    expect(err.message).toContain(`the first at index ${Math.min(...at)}`);
    t.destroy();
  });

  it("a tensor larger than one storage binding is checked window by window", async () => {
    const lim = gpu.limits.maxStorageBufferBindingSize;
    const n = 33_600_000; // 134.4 MB of f32
    const a = new Float32Array(n).fill(-1.25);
    const r = rng(Date.now() >>> 0);
    // in the second window when the binding limit is below the tensor's size (128 MiB on lavapipe)
    const from = n * 4 > lim ? Math.floor(lim / 4) + 1 : n >> 1;
    const second = from + Math.floor(r() * (n - from - 2));
    plant(a, "f32", [second, n - 1], 4);
    const t = upload(ctx, a, "f32", [n], "huge");
    if (n * 4 > lim) expect(t.view("flat", [n], 0).rowWindows({ rowBytes: 4 }).length).toBeGreaterThan(1);
    const checks = new FiniteChecks<string>(ctx, { slots: 1 });
    const b = new CommandBatch(gpu);
    await checks.record(b, t, "huge");
    b.submit();
    const [f] = await checks.read();
    expect(f.bad).toEqual(firstNonFinite(a));
    expect(f.bad.first).toBe(second);
    checks.destroy();
    t.destroy();
  });

  it("rejects tensors that hold no floats", async () => {
    const t = GpuTensor.fromHost(gpu, new Uint32Array(8), [8], "u32", "ids");
    await expect(assertFinite(ctx, t, "ids")).rejects.toThrow(/needs f32, f16 or bf16/);
    t.destroy();
  });

  it("describes what it found in one sentence", () => {
    expect(describeNonFinite({ count: 1, first: 7, kinds: ["-Inf"] }, [2, 5])).toBe("1 of 10 values is -Inf, the first at [1, 2]");
    expect(describeNonFinite({ count: 3, first: 7, kinds: ["NaN", "+Inf"] }, [2, 5], "token position")).toBe("3 of 10 values are NaN/+Inf, the first at token position 1 (column 2)");
  });
});

// ---------------------------------------------------------------------------------------------

function tinyConfig(): LlamaConfig {
  return parseConfig({
    model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: 32, intermediate_size: 72,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 97,
    max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
  }, "synthetic");
}

/** Overwrites element `index` of tensor `name` in an F32 safetensors file with `value`. */
function overwriteF32(file: string, name: string, index: number, value: number): void {
  const fd = openSync(file, "r+");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const head = Buffer.alloc(n);
    readSync(fd, head, 0, n, 8);
    const info = JSON.parse(head.toString("utf8"))[name] as { dtype: string; data_offsets: [number, number] };
    expect(info.dtype).toBe("F32");
    const v = Buffer.alloc(4);
    v.writeFloatLE(value, 0);
    writeSync(fd, v, 0, 4, 8 + n + info.data_offsets[0] + index * 4);
  } finally {
    closeSync(fd);
  }
}

describe("NaN/Inf checks of a run", async () => {
  const ctx = await gpuContext();
  const { gpu } = ctx;

  it("LlamaModel.load names the tensor and the file of a weight holding NaN (resident, f16 and streaming)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "wgq-finite-"));
    temps.push(dir);
    const c = await writeSyntheticModel(dir, "tiny", { seed: 3 });
    const clean = await LlamaModel.load(ctx, dir, { maxTokens: 4 });
    clean.destroy();
    const name = "model.layers.1.mlp.down_proj.weight";
    const [N, K] = [c.hiddenSize, c.intermediateSize];
    const r = rng(Date.now() >>> 0);
    const row = Math.floor(r() * N), col = Math.floor(r() * K);
    overwriteF32(path.join(dir, "model.safetensors"), name, row * K + col, NaN);
    const base = gpu.stats.liveBytes;
    for (const weightDtype of ["f32", "f16"] as const) {
      const err = await LlamaModel.load(ctx, dir, { maxTokens: 4, weightDtype }).catch((e) => e);
      expect(err).toBeInstanceOf(NonFiniteWeightError);
      expect(err).toBeInstanceOf(InputError);
      expect(err.exitCode).toBe(2);
      expect(err.message).toBe(`${path.join(dir, "model.safetensors")} [${name}]: 1 of ${N * K} values is NaN, the first at [${row}, ${col}]${weightDtype === "f16" ? " as stored on the GPU in f16" : ""}`);
    }
    expect(gpu.stats.liveBytes).toBe(base); // nothing left behind
    // streaming: the block is checked when the first forward uploads it
    const m = await LlamaModel.load(ctx, dir, { maxTokens: 4, streaming: true });
    await expect(m.forward([1, 2, 3])).rejects.toThrow(new RegExp(`\\[${name.replace(/\./g, "\\.")}\\]: 1 of \\d+ values is NaN`));
    m.destroy();
    // a finite value too large for f16 becomes +Inf there
    overwriteF32(path.join(dir, "model.safetensors"), name, row * K + col, 1e6);
    await LlamaModel.load(ctx, dir, { maxTokens: 4 }).then((x) => x.destroy());
    await expect(LlamaModel.load(ctx, dir, { maxTokens: 4, weightDtype: "f16" })).rejects.toThrow(/is \+Inf, .* as stored on the GPU in f16/);
  });

  it("eval: overflowing weights (a huge final norm gain) give Inf logits -> error naming window and position", async () => {
    const c = tinyConfig();
    const w = syntheticWeights(c, { seed: 5 });
    w.get("model.norm.weight")!.fill(3e38); // finite, so the load check passes
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 48 });
    const r = rng(6);
    const wins = windows(Array.from({ length: 60 }, () => Math.floor(r() * 97)), 16);
    const err = await evaluate(ctx, m, wins, { perForward: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/^eval window 0 of 4, token position 0: the logits of the model are not finite: \d+ of 4656 values are [^,]*Inf[^,]*, the first at token position 0 \(vocabulary id \d+\)$/);
    m.destroy();
  });

  it("eval: NaN activations from one token on name that token's window and position (packed windows)", async () => {
    const c = tinyConfig();
    const w = syntheticWeights(c, { seed: 5 });
    const X = 13;
    w.get("model.embed_tokens.weight")!.fill(NaN, X * c.hiddenSize, (X + 1) * c.hiddenSize);
    const r = rng(7);
    const stream = Array.from({ length: 6 * 16 }, () => { let t = X; while (t === X) t = Math.floor(r() * 97); return t; });
    // window 4, position 7: row 23 of the second packed forward (windows 3, 4, 5). Rows before it,
    // of its own window and of the packed neighbours, stay finite: attention never weighs a key it
    // may not see, not even by 0 (0 · NaN is NaN).
    stream[4 * 16 + 7] = X;
    const ref = await LlamaModel.fromSource(ctx, c, mapSource(syntheticWeights(c, { seed: 5 })), { maxTokens: 48 });
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 48, checkWeights: false });
    await expect(evaluate(ctx, m, windows(stream, 16), { perForward: 3 })).rejects.toThrow(/^eval window 4 of 6, token position 7: the logits of the model are not finite: \d+ of 4656 values are NaN, the first at token position 7 \(vocabulary id 0\)$/);
    // the same failure in the reference model is named as such
    await expect(evaluate(ctx, ref, windows(stream, 16), { ref: m, perForward: 3 })).rejects.toThrow(/^eval window 4 of 6, token position 7: the logits of the reference model/);
    // without the bad token everything is finite
    const ok = await evaluate(ctx, m, windows(stream.slice(0, 64), 16), { perForward: 3 });
    expect(Number.isFinite(ok.ppl)).toBe(true);
    m.destroy();
    ref.destroy();
  });

  it("generate: non-finite logits name the step and position; an empty generation is an error", async () => {
    const c = tinyConfig();
    const w = syntheticWeights(c, { seed: 8 });
    const X = 21;
    w.get("model.embed_tokens.weight")!.fill(NaN, X * c.hiddenSize, (X + 1) * c.hiddenSize);
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 4, maxSeq: 16, checkWeights: false });
    await expect(generate(m, [1, 2, X], { maxTokens: 4 })).rejects.toThrow(/^generate step 0, token position 2: the next-token logits are not finite: \d+ of 97 values are NaN/);
    const all = Array.from({ length: 97 }, (_, i) => i);
    await expect(generate(m, [1, 2], { maxTokens: 4, stopIds: all })).rejects.toBeInstanceOf(EmptyGenerationError);
    const err = await generate(m, [1, 2], { maxTokens: 4, stopIds: all }).catch((e) => e);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/^generation produced no tokens: the first token chosen \(id \d+\) is a stop token$/);
    m.destroy();
  });

  it("calibration: a NaN activation names the layer, the input group and the calibration token", async () => {
    const c = tinyConfig();
    const w = syntheticWeights(c, { seed: 9 });
    const X = 30;
    w.get("model.embed_tokens.weight")!.fill(NaN, X * c.hiddenSize, (X + 1) * c.hiddenSize);
    const col = new CalibrationCollector(ctx);
    const m = await LlamaModel.fromSource(ctx, c, mapSource(w), { maxTokens: 32, onLinearInput: col.hook, checkWeights: false });
    const ids = Array.from({ length: 32 }, (_, i) => (i % 90) + 31);
    await m.forward(ids, { seq: 16 }); // tokens 0 … 31: finite
    ids[16 + 5] = X;
    m.reset();
    await m.forward(ids, { seq: 16 }); // calibration tokens 32 … 63: token 53 is X
    const err = await col.read().catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.message).toMatch(/^calibration, layer 0 \(input of q_proj\/k_proj\/v_proj\): the activations are not finite: 32 of 1024 values are NaN, the first at calibration token 53 \(channel 0\)$/);
    col.destroy();
    m.destroy();
  });

  it("AWQ: a NaN loss is an error naming the block and group, never a scale choice", async () => {
    const c = tinyConfig();
    const w = syntheticWeights(c, { seed: 10 });
    w.get("model.layers.0.mlp.up_proj.weight")![5] = Infinity;
    const tokens = Uint32Array.from({ length: 64 }, (_, i) => (i * 7) % 97);
    const read = async (n: string) => {
      const t = w.get(n);
      if (!t) throw new Error(`no ${n}`);
      return t;
    };
    const err = await awqTransform(ctx, c, read, { bits: 4, groupSize: 32, sym: false, grid: 4, clip: false, tokens, seqLen: 16 }).catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/^AWQ block 0, group gate_up: the output error at α = 0\.00 is (NaN|Infinity)/);
  });
});

describe("device loss", () => {
  it("a readback after the device is lost throws DeviceLostError (exit code 3), not a DOMException", async () => {
    const own = await createContext();
    const t = GpuTensor.fromHost(own.gpu, new Float32Array(1000).fill(1), [1000], "f32", "acts");
    const big = GpuTensor.fromHost(own.gpu, new Float32Array(1 << 20), [1 << 20], "f32", "big");
    const inFlight = big.toHost().catch((e) => e);
    own.gpu.device.destroy(); // as a driver reset would: the Gpu wrapper is not told
    const err = await t.toHost().catch((e) => e);
    expect(err).toBeInstanceOf(DeviceLostError);
    expect(err.exitCode).toBe(3);
    expect(err.message).toMatch(/^WebGPU device lost \(destroyed\)/);
    const mid = await inFlight;
    if (mid instanceof Error) expect(mid).toBeInstanceOf(DeviceLostError); // lost mid-readback
    await expect(own.gpu.sync()).rejects.toBeInstanceOf(DeviceLostError);
    own.gpu.destroy();
  });

  it("WebGPU exceptions that escape map to device errors (exit code 3)", () => {
    for (const name of ["AbortError", "OperationError"]) {
      const e = webGpuExceptionError(new DOMException("", name));
      expect(e).toBeInstanceOf(DeviceLostError);
      expect(e!.exitCode).toBe(3);
      expect(e!.message).toBe(`WebGPU device lost (unknown): a WebGPU operation failed (${name}, no message)`);
    }
    const other = webGpuExceptionError(new DOMException("bad state", "InvalidStateError"));
    expect(other?.exitCode).toBe(3);
    expect(other?.message).toBe("WebGPU failed: InvalidStateError: bad state");
    expect(webGpuExceptionError(new Error("x"))).toBeNull();
  });
});
