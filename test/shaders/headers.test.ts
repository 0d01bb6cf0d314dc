// Every shaders/**/*.wgsl parses, and its header documents what reflection finds: entry points,
// workgroup size, grid, and one line per binding (index, name, access) — the header documents,
// reflection is the truth.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { SHADER_ROOT } from "../../src/gpu/shader_source.ts";
import { reflectShader, type BindingKind } from "../../src/gpu/reflect.ts";

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

/** Binding lines of the leading comment block: `//   <index> <name> <storage read|storage read_write|uniform> ...`. */
export function headerBindings(code: string): { binding: number; name: string; kind: BindingKind }[] {
  const header = code.split("\n").filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith("//")));
  const out = [];
  for (const line of header) {
    const m = /^\/\/\s+(\d+)\s+(\w+)\s+(storage read_write|storage read|uniform)\b/.exec(line);
    if (m) out.push({ binding: Number(m[1]), name: m[2], kind: ACCESS[m[3]] });
  }
  return out;
}

const files = walk(SHADER_ROOT).map((f) => relative(SHADER_ROOT, f));

describe("shader headers", () => {
  it("finds the shaders", () => {
    expect(files.length).toBeGreaterThanOrEqual(4);
  });

  for (const file of files) {
    it(`${file}: header matches reflection`, () => {
      const code = readFileSync(join(SHADER_ROOT, file), "utf8");
      const info = reflectShader(file, code);
      const stem = file.split("/").pop()!.replace(/\.wgsl$/, "");
      expect(code.startsWith(`// ${stem}.wgsl — `), "first line: '// <file> — <what it computes>'").toBe(true);
      const header = code.slice(0, code.indexOf("\n\n", code.indexOf("Bindings")) + 1);
      for (const word of ["Entry:", "Workgroup:", "Grid:", "Bindings (group 0):"]) {
        expect(header.includes(word), `${file} header lacks '${word}'`).toBe(true);
      }
      const documentedEntries = header
        .split("\n")
        .filter((l) => /^\/\/\s+Entry:/.test(l))
        .flatMap((l) => l.replace(/^\/\/\s+Entry:/, "").split("—")[0].split(",").map((w) => w.trim()));
      for (const entry of info.entries.keys()) {
        expect(documentedEntries, `${file} header does not document entry '${entry}'`).toContain(entry);
      }
      const documented = headerBindings(code);
      expect(documented).toEqual(info.bindings.map(({ binding, name, kind }) => ({ binding, name, kind })));
      const used = new Set([...info.entries.values()].flatMap((e) => e.bindings.map((b) => b.name)));
      const unused = info.bindings.filter((b) => !used.has(b.name)).map((b) => b.name);
      expect(unused, `${file}: bindings no entry point uses`).toEqual([]);
    });
  }

  it("the header parser rejects a header that disagrees with the code", () => {
    const code = "// x.wgsl — t\n//   0 a  storage read  array<f32>\n\n@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n@compute @workgroup_size(1) fn main() { a[0] = 1.0; }";
    const info = reflectShader("x.wgsl", code);
    expect(headerBindings(code)).not.toEqual(info.bindings.map(({ binding, name, kind }) => ({ binding, name, kind })));
  });
});
