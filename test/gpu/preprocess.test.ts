// The WGSL preprocessor (gpu/preprocess.ts) on in-memory sources: includes (once, nested, cycles,
// missing files), parameters (#define defaults, request values, {{NAME}}, #if), and the line origins
// that map compiler messages back to source files; then the kernel registry on expansions (the GPU
// part: pipelines keyed by parameters, Dawn's error lines named in the included file).
import { afterAll, describe, expect, it } from "vitest";
import { ShaderError } from "../../src/errors.ts";
import { CommandBatch } from "../../src/gpu/encoder.ts";
import { KernelRegistry } from "../../src/gpu/kernel.ts";
import { definesKey, describeLine, originOf, preprocess } from "../../src/gpu/preprocess.ts";
import { reflectShader } from "../../src/gpu/reflect.ts";
import { GpuTensor } from "../../src/gpu/tensor.ts";
import { gpuContext } from "../helpers/gpu.ts";

function sourceOf(files: Record<string, string>): (file: string) => string {
  return (file) => {
    if (!(file in files)) throw new ShaderError(file, "cannot read: no such file");
    return files[file];
  };
}

const lines = (code: string) => code.split("\n").filter((l) => l.trim() !== "");

describe("preprocess: includes", () => {
  it("inserts an included file where the #include stands", () => {
    const src = sourceOf({
      "k.wgsl": 'fn a() {}\n#include "common/h.wgsl"\nfn b() {}',
      "common/h.wgsl": "fn h() {}",
    });
    const exp = preprocess("k.wgsl", src);
    expect(lines(exp.code)).toEqual(["fn a() {}", "fn h() {}", "fn b() {}"]);
    expect(exp.includes).toEqual(["common/h.wgsl"]);
  });

  it("includes a file once, however often and from wherever it is included", () => {
    const src = sourceOf({
      "k.wgsl": '#include "a.wgsl"\n#include "b.wgsl"\n#include "a.wgsl"\nfn k() {}',
      "a.wgsl": '#include "c.wgsl"\nfn a() {}',
      "b.wgsl": '#include "c.wgsl"\nfn b() {}',
      "c.wgsl": "fn c() {}",
    });
    const exp = preprocess("k.wgsl", src);
    expect(lines(exp.code)).toEqual(["fn c() {}", "fn a() {}", "fn b() {}", "fn k() {}"]);
    expect(exp.includes).toEqual(["a.wgsl", "c.wgsl", "b.wgsl"]);
  });

  it("expands nested includes depth first and records where each was included", () => {
    const src = sourceOf({
      "k.wgsl": '// k\n#include "x/one.wgsl"\nfn k() {}',
      "x/one.wgsl": 'fn one() {}\n#include "x/two.wgsl"',
      "x/two.wgsl": "fn two() {}",
    });
    const exp = preprocess("k.wgsl", src);
    expect(lines(exp.code)).toEqual(["// k", "fn one() {}", "fn two() {}", "fn k() {}"]);
    expect(exp.includedFrom.get("x/one.wgsl")).toEqual({ file: "k.wgsl", line: 2 });
    expect(exp.includedFrom.get("x/two.wgsl")).toEqual({ file: "x/one.wgsl", line: 2 });
  });

  it("rejects an include cycle, naming the chain", () => {
    const src = sourceOf({
      "k.wgsl": '#include "a.wgsl"',
      "a.wgsl": '#include "b.wgsl"',
      "b.wgsl": 'fn b() {}\n#include "a.wgsl"',
    });
    expect(() => preprocess("k.wgsl", src)).toThrow(ShaderError);
    expect(() => preprocess("k.wgsl", src)).toThrow(/b\.wgsl:2 \(included from a\.wgsl:1\) \(included from k\.wgsl:1\): include cycle: a\.wgsl -> b\.wgsl -> a\.wgsl/);
    const self = sourceOf({ "k.wgsl": 'fn k() {}\n#include "k.wgsl"' });
    expect(() => preprocess("k.wgsl", self)).toThrow(/include cycle: k\.wgsl -> k\.wgsl/);
  });

  it("names a missing include and where it was asked for", () => {
    const src = sourceOf({ "k.wgsl": 'fn k() {}\n#include "common/nope.wgsl"' });
    expect(() => preprocess("k.wgsl", src)).toThrow(/shader k\.wgsl: k\.wgsl:2: cannot include "common\/nope\.wgsl"/);
    // A browser source that answers undefined for an unknown name.
    const map: Record<string, string> = { "k.wgsl": '#include "gone.wgsl"' };
    expect(() => preprocess("k.wgsl", (f) => map[f])).toThrow(/cannot include "gone\.wgsl": no such shader file/);
    expect(() => preprocess("gone.wgsl", (f) => map[f])).toThrow(/shader gone\.wgsl: cannot read/);
  });

  it("rejects a malformed #include and an unknown directive", () => {
    expect(() => preprocess("k.wgsl", sourceOf({ "k.wgsl": "#include common/h.wgsl" }))).toThrow(/k\.wgsl:1: #include needs a quoted path/);
    expect(() => preprocess("k.wgsl", sourceOf({ "k.wgsl": "fn k() {}\n#pragma once" }))).toThrow(/k\.wgsl:2: unknown directive '#pragma'/);
  });
});

describe("preprocess: parameters", () => {
  const K = [
    "#define X_TYPE f32",
    "#define LANES 8",
    "#if X_TYPE == f16",
    "enable f16;",
    "#endif",
    "@group(0) @binding(0) var<storage, read> x: array<{{X_TYPE}}>;",
    "const L: u32 = {{ LANES }}u;",
  ].join("\n");
  const src = sourceOf({ "k.wgsl": K });

  it("substitutes the #define default", () => {
    const exp = preprocess("k.wgsl", src);
    expect(lines(exp.code)).toEqual(["@group(0) @binding(0) var<storage, read> x: array<f32>;", "const L: u32 = 8u;"]);
    expect(exp.params).toEqual({ X_TYPE: "f32", LANES: "8" });
  });

  it("substitutes request values in place of the defaults, in #if too", () => {
    const exp = preprocess("k.wgsl", src, { X_TYPE: "f16", LANES: 16 });
    expect(lines(exp.code)).toEqual(["enable f16;", "@group(0) @binding(0) var<storage, read> x: array<f16>;", "const L: u32 = 16u;"]);
    expect(exp.params).toEqual({ X_TYPE: "f16", LANES: "16" });
  });

  it("rejects an unknown placeholder, naming the file and line", () => {
    const bad = sourceOf({ "k.wgsl": "#define A f32\nfn f() {}\nvar<private> v: {{B}};" });
    expect(() => preprocess("k.wgsl", bad)).toThrow(ShaderError);
    expect(() => preprocess("k.wgsl", bad)).toThrow(/k\.wgsl:3: unknown placeholder \{\{B\}\} \(parameters: A\)/);
  });

  it("rejects a request value for a name the shader does not declare", () => {
    expect(() => preprocess("k.wgsl", src, { W_TYPE: "f16" })).toThrow(/'W_TYPE' is not a parameter of this shader \(parameters: X_TYPE, LANES\)/);
  });

  it("rejects a declaration repeated in an include, and a multi-line value", () => {
    const twice = sourceOf({ "k.wgsl": '#define A 1\n#include "h.wgsl"', "h.wgsl": "#define A 2" });
    expect(() => preprocess("k.wgsl", twice)).toThrow(/h\.wgsl:1 \(included from k\.wgsl:2\): parameter A is already declared at k\.wgsl:1/);
    expect(() => preprocess("k.wgsl", src, { X_TYPE: "f16;\nfn evil() {}" })).toThrow(/a value must be one line/);
  });

  it("takes #elif and #else, and skips includes, defines and errors in untaken branches", () => {
    const s = sourceOf({
      "k.wgsl": [
        "#define V b",
        "#if V == a",
        '#include "missing.wgsl"',
        "#error not taken",
        "#elif V == b",
        "fn b() {}",
        "#if V != b",
        "#define W 1",
        "#else",
        "fn nested_else() {}",
        "#endif",
        "#else",
        "fn c() {}",
        "#endif",
      ].join("\n"),
    });
    expect(lines(preprocess("k.wgsl", s).code)).toEqual(["fn b() {}", "fn nested_else() {}"]);
    expect(lines(preprocess("k.wgsl", s, { V: "z" }).code)).toEqual(["fn c() {}"]);
    expect(() => preprocess("k.wgsl", s, { V: "a" })).toThrow(/cannot include "missing\.wgsl"/);
    expect(preprocess("k.wgsl", s).params).toEqual({ V: "b" });
  });

  it("fails at #error with the substituted message", () => {
    const s = sourceOf({ "k.wgsl": "#define V a\n#if V != a\n#error V must be a (got '{{V}}')\n#endif" });
    expect(() => preprocess("k.wgsl", s)).not.toThrow();
    expect(() => preprocess("k.wgsl", s, { V: "q" })).toThrow(/k\.wgsl:3: V must be a \(got 'q'\)/);
  });

  it("rejects unbalanced or malformed conditionals", () => {
    const run = (text: string) => () => preprocess("k.wgsl", sourceOf({ "k.wgsl": text }));
    expect(run("#define A 1\n#if A == 1\nfn f() {}")).toThrow(/k\.wgsl:2: #if without #endif/);
    expect(run("#endif")).toThrow(/#endif without #if/);
    expect(run("#else")).toThrow(/#else without #if/);
    expect(run("#if B == 1\n#endif")).toThrow(/tests 'B', which is not declared/);
    expect(run("#define A 1\n#if A\n#endif")).toThrow(/#if needs 'NAME == value'/);
    expect(run("#define A 1\n#if A == 1\n#else\n#elif A == 2\n#endif")).toThrow(/#elif after #else/);
  });

  it("keys request values independently of their order", () => {
    expect(definesKey({ B: "x", A: 1 })).toBe("A=1,B=x");
    expect(definesKey({})).toBe("");
  });
});

describe("preprocess: line origins", () => {
  const src = sourceOf({
    "k.wgsl": '// k\n#define T f32\n#include "h.wgsl"\nfn k() -> {{T}} { return h(); }',
    "h.wgsl": "// h\nfn h() -> f32 {\n  return 1.0;\n}",
  });

  it("maps every expanded line to its file and line, with the include chain", () => {
    const exp = preprocess("k.wgsl", src);
    const code = exp.code.split("\n");
    expect(code.length).toBe(exp.lines.length);
    const at = code.indexOf("  return 1.0;") + 1;
    expect(originOf(exp, at)).toEqual({ file: "h.wgsl", line: 3 });
    expect(describeLine(exp, at, 5)).toBe("h.wgsl:3:5 (included from k.wgsl:3)");
    expect(describeLine(exp, code.indexOf("fn k() -> f32 { return h(); }") + 1)).toBe("k.wgsl:4");
  });

  it("lets reflection name the source line of a parse error", () => {
    const bad = sourceOf({ "k.wgsl": '#include "h.wgsl"\nfn k() {}', "h.wgsl": "// h\n\nfn h( {\n}" });
    const exp = preprocess("k.wgsl", bad);
    expect(() => reflectShader("k.wgsl", exp.code, (n) => describeLine(exp, n))).toThrow(/\(h\.wgsl:3 \(included from k\.wgsl:1\)\)/);
  });
});

describe("KernelRegistry on expansions", async () => {
  const FILES: Record<string, string> = {
    "t/fill.wgsl": [
      "#define OP add_one",
      '#include "t/ops.wgsl"',
      "override WG: u32 = 64;",
      "@group(0) @binding(0) var<storage, read_write> dst: array<f32>;",
      "@compute @workgroup_size(WG) fn main(@builtin(global_invocation_id) g: vec3<u32>) {",
      "  if (g.x < arrayLength(&dst)) { dst[g.x] = {{OP}}(f32(g.x)); }",
      "}",
    ].join("\n"),
    "t/ops.wgsl": "// ops\nfn add_one(v: f32) -> f32 { return v + 1.0; }\nfn twice(v: f32) -> f32 { return 2.0 * v; }",
    "t/broken.wgsl": '// broken\n#include "t/bad_helper.wgsl"\n@compute @workgroup_size(1) fn main() { _ = helper(); }',
    "t/bad_helper.wgsl": "// helper\n\nfn helper() -> f32 {\n  return vec2<f32>(1.0);\n}",
  };
  const ctx = await gpuContext();
  const reg = new KernelRegistry(ctx.gpu, (f) => FILES[f]);
  const base = ctx.gpu.stats.liveBytes;
  afterAll(() => expect(ctx.gpu.stats.liveBytes).toBe(base));

  async function run(defines: Record<string, string>): Promise<number[]> {
    const k = await reg.get("t/fill.wgsl", "main", { WG: 64 }, defines);
    const dst = GpuTensor.empty(ctx.gpu, [4], "f32", "dst");
    new CommandBatch(ctx.gpu).dispatch(k, { dst }, undefined, [1]).submit();
    const y = [...((await dst.toHost()) as Float32Array)];
    dst.destroy();
    return y;
  }

  it("compiles each parameter set into its own pipeline, cached by (file, entry, constants, parameters)", async () => {
    expect(await run({})).toEqual([1, 2, 3, 4]);
    expect(await run({ OP: "twice" })).toEqual([0, 2, 4, 6]);
    const a = await reg.get("t/fill.wgsl", "main", { WG: 64 }, { OP: "twice" });
    const b = await reg.get("t/fill.wgsl", "main", { WG: 64 }, { OP: "twice" });
    const c = await reg.get("t/fill.wgsl", "main", { WG: 64 });
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(a.label).toBe("t/fill<OP=twice>[WG=64]");
    expect(a.defines).toEqual({ OP: "twice" });
    expect(reg.info("t/fill.wgsl", { OP: "twice" }).code).toContain("dst[g.x] = twice(f32(g.x));");
  });

  it("names the included file and its line in Dawn's compile errors", async () => {
    const err = await reg.get("t/broken.wgsl").catch((e) => e);
    expect(err).toBeInstanceOf(ShaderError);
    expect(err.message).toMatch(/t\/bad_helper\.wgsl:4:\d+ \(included from t\/broken\.wgsl:2\): .*vec2<f32>/);
  });

  it("rejects an unknown parameter as it rejects an unknown override", async () => {
    await expect(reg.get("t/fill.wgsl", "main", { WG: 64 }, { W_TYPE: "f16" })).rejects.toThrow(/'W_TYPE' is not a parameter of this shader \(parameters: OP\)/);
  });
});
