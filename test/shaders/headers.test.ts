// Every shaders/**/*.wgsl expands and parses, and its header documents what reflection finds. A kernel
// (a file no other file includes): entry points, workgroup size, grid, one line per binding (index,
// name, access) and its parameters, checked against the reflection of its EXPANSION (includes and
// parameters substituted, gpu/preprocess.ts) for every documented parameter value — the header
// documents, reflection is the truth. An include file: a light header naming what it provides and
// what it needs from the including kernel, and no entry point.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { preprocess } from "../../src/gpu/preprocess.ts";
import { nodeShaderSource, SHADER_ROOT } from "../../src/gpu/shader_source.ts";
import { reflectShader, type BindingKind, type ShaderInfo } from "../../src/gpu/reflect.ts";

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".wgsl") ? [join(dir, e.name)] : [],
  );
}

const ACCESS: Record<string, BindingKind> = {
  "storage read": "read-only-storage",
  "storage read_write": "storage",
  uniform: "uniform",
};

/** The leading comment block. */
function headerLines(code: string): string[] {
  const lines = code.split("\n");
  const end = lines.findIndex((l) => !l.startsWith("//"));
  return end < 0 ? lines : lines.slice(0, end);
}

/** Binding lines of the leading comment block: `//   <index> <name> <storage read|storage read_write|uniform> ...`. */
export function headerBindings(code: string): { binding: number; name: string; kind: BindingKind }[] {
  const out = [];
  for (const line of headerLines(code)) {
    const m = /^\/\/\s+(\d+)\s+(\w+)\s+(storage read_write|storage read|uniform)\b/.exec(line);
    if (m) out.push({ binding: Number(m[1]), name: m[2], kind: ACCESS[m[3]] });
  }
  return out;
}

/** `// Parameters: NAME = a | b; OTHER = c | d` lines of the header: each parameter's documented values. */
export function headerParameters(code: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of headerLines(code)) {
    const m = /^\/\/\s*Parameters:\s*(.*)$/.exec(line);
    if (!m) continue;
    for (const part of m[1].split(";")) {
      const p = /^\s*(\w+)\s*=\s*(.+?)\s*$/.exec(part);
      if (p) out.set(p[1], p[2].split("|").map((v) => v.trim()));
    }
  }
  return out;
}

/** Names declared at module scope (fn, const, struct, override, var) of a WGSL text. */
function declaredNames(code: string): string[] {
  const names = [];
  for (const m of code.matchAll(/^(?:fn|const|struct|override|var(?:<[^>]*>)?)\s+(\w+)/gm)) names.push(m[1]);
  return names;
}

const files = walk(SHADER_ROOT).map((f) => relative(SHADER_ROOT, f)).sort();
const texts = new Map(files.map((f) => [f, readFileSync(join(SHADER_ROOT, f), "utf8")]));
const includers = new Map<string, string[]>();
for (const [file, code] of texts) {
  for (const m of code.matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)) includers.set(m[1], [...(includers.get(m[1]) ?? []), file]);
}
const includeFiles = files.filter((f) => includers.has(f));
const kernelFiles = files.filter((f) => !includers.has(f));

function reflectExpansion(file: string, defines: Record<string, string> = {}): { info: ShaderInfo; params: Record<string, string> } {
  const exp = preprocess(file, nodeShaderSource, defines);
  return { info: reflectShader(file, exp.code), params: exp.params };
}

function checkAgainstHeader(file: string, code: string, info: ShaderInfo, variant: string): void {
  const header = code.slice(0, code.indexOf("\n\n", code.indexOf("Bindings")) + 1);
  const documentedEntries = header
    .split("\n")
    .filter((l) => /^\/\/\s+Entry:/.test(l))
    .flatMap((l) => l.replace(/^\/\/\s+Entry:/, "").split("—")[0].split(",").map((w) => w.trim()));
  for (const entry of info.entries.keys()) {
    expect(documentedEntries, `${file}${variant} header does not document entry '${entry}'`).toContain(entry);
  }
  expect(info.entries.size, `${file}${variant}: no @compute entry point`).toBeGreaterThan(0);
  expect(headerBindings(code), `${file}${variant}: header bindings`).toEqual(info.bindings.map(({ binding, name, kind }) => ({ binding, name, kind })));
  const used = new Set([...info.entries.values()].flatMap((e) => e.bindings.map((b) => b.name)));
  const unused = info.bindings.filter((b) => !used.has(b.name)).map((b) => b.name);
  expect(unused, `${file}${variant}: bindings no entry point uses`).toEqual([]);
}

describe("shader headers", () => {
  it("finds the shaders and the include files", () => {
    expect(kernelFiles.length).toBeGreaterThanOrEqual(4);
    expect(includeFiles.length).toBeGreaterThanOrEqual(1);
    for (const inc of includers.keys()) expect(files, `an #include names a missing file`).toContain(inc);
  });

  for (const file of kernelFiles) {
    it(`${file}: header matches the reflection of its expansion`, () => {
      const code = texts.get(file)!;
      const stem = file.split("/").pop()!.replace(/\.wgsl$/, "");
      expect(code.startsWith(`// ${stem}.wgsl — `), "first line: '// <file> — <what it computes>'").toBe(true);
      const header = code.slice(0, code.indexOf("\n\n", code.indexOf("Bindings")) + 1);
      for (const word of ["Entry:", "Workgroup:", "Grid:", "Bindings (group 0):"]) {
        expect(header.includes(word), `${file} header lacks '${word}'`).toBe(true);
      }
      const { info, params } = reflectExpansion(file);
      checkAgainstHeader(file, code, info, "");
      // Parameters: every one the expansion declares is documented with its values, the default among
      // them; each documented value expands, reflects and matches the header too.
      const documented = headerParameters(code);
      expect([...documented.keys()].sort(), `${file}: 'Parameters:' names`).toEqual(Object.keys(params).sort());
      for (const [name, values] of documented) {
        expect(values, `${file}: default ${name} = ${params[name]} is not among the documented values`).toContain(params[name]);
        for (const value of values) {
          if (value === params[name]) continue;
          const v = reflectExpansion(file, { [name]: value });
          checkAgainstHeader(file, code, v.info, ` (${name}=${value})`);
        }
      }
    });
  }

  for (const file of includeFiles) {
    it(`${file}: include header names what it provides and needs`, () => {
      const code = texts.get(file)!;
      const stem = file.split("/").pop()!.replace(/\.wgsl$/, "");
      expect(code.startsWith(`// ${stem}.wgsl — `), "first line: '// <file> — <what it provides>'").toBe(true);
      const header = headerLines(code).join("\n");
      for (const word of ["Provides:", "Needs:"]) {
        expect(header.includes(word), `${file} header lacks '${word}'`).toBe(true);
      }
      expect(/@compute/.test(code), `${file}: an include file declares no entry point`).toBe(false);
      // What it declares (itself, not through its own includes) is named in the header.
      for (const name of declaredNames(code)) {
        expect(new RegExp(`\\b${name}\\b`).test(header), `${file}: header does not name '${name}'`).toBe(true);
      }
      // It expands and parses on its own (names it needs from the kernel are resolved at compile time).
      const { info } = reflectExpansion(file);
      expect(info.entries.size).toBe(0);
    });
  }

  it("the header parser rejects a header that disagrees with the code", () => {
    const code = "// x.wgsl — t\n//   0 a  storage read  array<f32>\n\n@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n@compute @workgroup_size(1) fn main() { a[0] = 1.0; }";
    const info = reflectShader("x.wgsl", code);
    expect(headerBindings(code)).not.toEqual(info.bindings.map(({ binding, name, kind }) => ({ binding, name, kind })));
  });

  it("reads documented parameters", () => {
    expect(headerParameters("// x.wgsl — t\n// Parameters: A = f32 | f16; B = x\n\nfn f() {}")).toEqual(new Map([["A", ["f32", "f16"]], ["B", ["x"]]]));
  });
});
