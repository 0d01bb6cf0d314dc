import { afterAll, describe, expect, it } from "vitest";
import { BindingError, ShaderError } from "../../src/errors.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { KernelRegistry } from "../../src/gpu/kernel.ts";
import { nodeShaderSource } from "../../src/gpu/shader_source.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { gpuContext, randomF32 } from "../helpers/gpu.ts";

const SCALE = `
override WG: u32 = 64;
struct Params { n: u32, a: f32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(WG) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < params.n) { dst[g.x] = src[g.x] * params.a; }
}`;
const FILES: Record<string, string> = {
  "t/scale.wgsl": SCALE,
  "t/syntax.wgsl": "@compute @workgroup_size(1) fn main() { let x = ; }",
  "t/typeerr.wgsl": "@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = vec2<f32>(1.0); }",
};
const source = (f: string) => FILES[f] ?? nodeShaderSource(f);

describe("KernelRegistry", async () => {
  const ctx = await gpuContext();
  const reg = new KernelRegistry(ctx.gpu, source);
  const base = ctx.gpu.stats.liveBytes;
  afterAll(() => expect(ctx.gpu.stats.liveBytes).toBe(base));

  it("dispatches by WGSL variable name with params packed from reflection", async () => {
    const k = await reg.get("t/scale.wgsl", "main", { WG: 32 });
    expect(k.workgroupSize).toEqual([32, 1, 1]);
    const n = 1000;
    const x = randomF32(n, 1);
    const src = GpuTensor.fromHost(ctx.gpu, x, [n], "f32", "src");
    const dst = GpuTensor.empty(ctx.gpu, [n], "f32", "dst");
    new CommandBatch(ctx.gpu).dispatch(k, { src, dst }, { n, a: -2.5 }, k.grid(n)).submit();
    const y = (await dst.toHost()) as Float32Array;
    for (let i = 0; i < n; i++) expect(y[i]).toBe(Math.fround(x[i] * -2.5));
    src.destroy();
    dst.destroy();
  });

  it("caches pipelines by (file, entry, constants)", async () => {
    const a = await reg.get("t/scale.wgsl", "main", { WG: 32 });
    const b = await reg.get("t/scale.wgsl", "main", { WG: 32 });
    const c = await reg.get("t/scale.wgsl", "main", { WG: 64 });
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(c.label).toBe("t/scale[WG=64]");
  });

  it("rejects a missing or an extra binding name, listing the expected names", async () => {
    const k = await reg.get("t/scale.wgsl", "main", { WG: 32 });
    const t = GpuTensor.empty(ctx.gpu, [4], "f32", "t");
    const b = new CommandBatch(ctx.gpu);
    expect(() => b.dispatch(k, { src: t }, { n: 4, a: 1 }, [1])).toThrow(BindingError);
    expect(() => b.dispatch(k, { src: t }, { n: 4, a: 1 }, [1])).toThrow(/missing binding\(s\) dst; expected bindings: src, dst/);
    expect(() => b.dispatch(k, { src: t, dst: t, out: t }, { n: 4, a: 1 }, [1])).toThrow(/unknown binding\(s\) out; expected bindings: src, dst/);
    expect(() => b.dispatch(k, { src: t, dst: t }, { n: 4 }, [1])).toThrow(/missing param 'a'/);
    t.destroy();
  });

  it("surfaces a WGSL syntax error with the shader's file name", async () => {
    const err = await reg.get("t/syntax.wgsl").catch((e) => e);
    expect(err).toBeInstanceOf(ShaderError);
    expect(err.message).toMatch(/t\/syntax\.wgsl/);
  });

  it("surfaces a compile (type) error with the file name and Dawn's line", async () => {
    const err = await reg.get("t/typeerr.wgsl").catch((e) => e);
    expect(err).toBeInstanceOf(ShaderError);
    expect(err.message).toMatch(/t\/typeerr\.wgsl:2:\d+: .*vec2<f32>/);
  });

  it("names unknown entry points, unknown constants and missing files", async () => {
    await expect(reg.get("t/scale.wgsl", "nope")).rejects.toThrow(/no @compute entry point 'nope' \(has: main\)/);
    await expect(reg.get("t/scale.wgsl", "main", { WG: 8, TILE: 2 })).rejects.toThrow(/'TILE' is not an override/);
    await expect(reg.get("t/missing.wgsl")).rejects.toThrow(/shader t\/missing\.wgsl: cannot read/);
  });
});
