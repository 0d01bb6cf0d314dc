import { describe, expect, it } from "vitest";
import { packParams, reflectShader } from "../../src/gpu/reflect.ts";
import { ParamsError, ShaderError } from "../../src/errors.ts";

const CODE = `
override WG: u32 = 64;
struct Params { M: u32, scale: f32, off: vec2<i32>, n: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> params: Params;
fn helper(i: u32) -> f32 { return a[i] * params.scale; }
@compute @workgroup_size(WG, 2) fn main(@builtin(global_invocation_id) g: vec3<u32>) { b[g.x] = vec4<f32>(helper(g.x)); }
@compute @workgroup_size(8) fn only_b(@builtin(global_invocation_id) g: vec3<u32>) { b[g.x] = vec4<f32>(1.0); }
`;

describe("reflectShader", () => {
  const info = reflectShader("snippet.wgsl", CODE);

  it("lists declared bindings in binding order with their kinds", () => {
    expect(info.bindings.map((b) => [b.binding, b.name, b.kind, b.type])).toEqual([
      [0, "a", "read-only-storage", "array<f32>"],
      [1, "params", "uniform", "Params"],
      [2, "b", "storage", "array<vec4<f32>>"],
    ]);
  });

  it("gives each entry the bindings it uses, through called functions too", () => {
    expect(info.entries.get("main")!.bindings.map((b) => b.name)).toEqual(["a", "params", "b"]);
    expect(info.entries.get("only_b")!.bindings.map((b) => b.name)).toEqual(["b"]);
    expect(info.entries.get("only_b")!.params).toBeNull();
  });

  it("keeps override names in the workgroup size", () => {
    expect(info.entries.get("main")!.workgroupSize).toEqual(["WG", 2, 1]);
    expect(info.entries.get("only_b")!.workgroupSize).toEqual([8, 1, 1]);
    expect(info.overrides).toEqual([{ name: "WG", type: "u32" }]);
  });

  it("reports uniform member offsets from the WGSL layout rules", () => {
    const p = info.entries.get("main")!.params!;
    expect(p.members.map((m) => [m.name, m.offset, m.scalar, m.count])).toEqual([
      ["M", 0, "u32", 1],
      ["scale", 4, "f32", 1],
      ["off", 8, "i32", 2],
      ["n", 16, "u32", 1],
    ]);
    expect(p.size).toBe(24);
  });

  it("packs params at the reflected offsets", () => {
    const p = info.entries.get("main")!.params!;
    const bytes = packParams("k", p, { M: 7, scale: 0.5, off: [-3, 4], n: 9 });
    const dv = new DataView(bytes.buffer);
    expect([dv.getUint32(0, true), dv.getFloat32(4, true), dv.getInt32(8, true), dv.getInt32(12, true), dv.getUint32(16, true)]).toEqual([7, 0.5, -3, 4, 9]);
  });

  it("rejects missing, unknown and out-of-range params with the expected list", () => {
    const p = info.entries.get("main")!.params!;
    expect(() => packParams("k", p, { M: 1, scale: 1, off: [0, 0] })).toThrow(/missing param 'n'.*expected params: M, scale, off, n/);
    expect(() => packParams("k", p, { M: 1, scale: 1, off: [0, 0], n: 1, extra: 2 })).toThrow(ParamsError);
    expect(() => packParams("k", p, { M: -1, scale: 1, off: [0, 0], n: 1 })).toThrow(/not a u32/);
    expect(() => packParams("k", p, { M: 1, scale: NaN, off: [0, 0], n: 1 })).toThrow(/not finite/);
  });

  it("names the file on a parse error", () => {
    expect(() => reflectShader("broken.wgsl", "fn main( {")).toThrow(ShaderError);
    expect(() => reflectShader("broken.wgsl", "fn main( {")).toThrow(/broken\.wgsl/);
  });
});
