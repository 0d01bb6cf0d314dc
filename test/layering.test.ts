// test/layering.test.ts — the folders of src/ stand in one bottom-to-top order (README "Layout"):
// a file may import its own folder and the folders below it, never one above. src/ref (the float64
// test oracles) sits outside the order: it may read any production definition, and only the tests,
// src/ref itself and src/selftest.ts may import it. No GPU needed: every import of every
// src/**/*.ts is read with TypeScript's pre-processor (static, type-only, re-exports and import()).

import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** Bottom to top: a folder (or top-level file) of src/ and the ones it may import are those before it. */
export const LAYERS = [
  "errors.ts", // typed errors
  "common", // host code shared by every layer: f16/bf16 codecs, seeded RNG, Llama config type and tensor names
  "gpu", // device, kernel registry, GpuTensor, CommandBatch
  "io", // safetensors, GGUF, tokenizer, text
  "nn", // host wrappers of the forward-pass kernels, GPU casts and reductions
  "quant", // quantized weights: packed layout, RTN, dequantize-matmul, fake quantization, saved format, host packer
  "model", // config, forward pass, evaluation, generation
  "ptq", // post-training quantization: the quantizeModel block loop, its methods (AWQ), calibration, reports
  "train", // quantization-aware training
  "bench", // benchmarks
  "selftest.ts", // `wgq doctor`'s kernel self-test (reads src/ref)
  "cli", // the wgq command line
  "index.ts", // the public API
] as const;

/** Outside the order: the test oracles, and ambient declarations. */
const REF = "ref";
const UNORDERED = new Set([REF, "types"]);
/** Who may import src/ref besides src/ref itself. */
const REF_IMPORTERS = new Set(["selftest.ts"]);

/** The layer of a path relative to src/: its first folder, or the file itself at the top level. */
function unitOf(rel: string): string {
  return rel.split("/")[0];
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out.sort();
}

interface Import {
  /** Importing file, relative to src/. */
  file: string;
  /** The specifier as written. */
  spec: string;
  /** Imported file relative to src/, or null when it lies outside src/. */
  target: string | null;
}

/** Every relative import of every src file (packages and node: builtins are not layers). */
async function relativeImports(): Promise<{ files: string[]; imports: Import[] }> {
  const files = await sourceFiles(SRC);
  const imports: Import[] = [];
  for (const abs of files) {
    const text = await fsp.readFile(abs, "utf8");
    const info = ts.preProcessFile(text, true, true);
    const file = path.relative(SRC, abs).split(path.sep).join("/");
    for (const { fileName: spec } of info.importedFiles) {
      if (!spec.startsWith(".")) continue;
      const rel = path.relative(SRC, path.resolve(path.dirname(abs), spec)).split(path.sep).join("/");
      imports.push({ file, spec, target: rel.startsWith("..") ? null : rel });
    }
  }
  return { files: files.map((f) => path.relative(SRC, f).split(path.sep).join("/")), imports };
}

const rank = (unit: string) => (LAYERS as readonly string[]).indexOf(unit);

const { files, imports } = await relativeImports();

describe("layering of src/", () => {
  it("reads the whole tree", () => {
    expect(files.length).toBeGreaterThan(50);
    expect(imports.length).toBeGreaterThan(200);
    expect(files).toContain("model/llama.ts");
  });

  it("places every folder and top-level file of src/ in the order", () => {
    const unplaced = [...new Set(files.map(unitOf))].filter((u) => rank(u) < 0 && !UNORDERED.has(u));
    expect(unplaced, `add these to LAYERS in test/layering.test.ts and to README's Layout`).toEqual([]);
  });

  it("imports only from its own layer or below", () => {
    const bad: string[] = [];
    for (const { file, spec, target } of imports) {
      const from = unitOf(file);
      if (target === null) {
        bad.push(`src/${file} imports '${spec}', outside src/`);
        continue;
      }
      const to = unitOf(target);
      if (from === to || UNORDERED.has(from) || UNORDERED.has(to)) continue;
      if (rank(to) > rank(from)) bad.push(`src/${file} imports '${spec}': ${from} must not import ${to}, which stands above it`);
    }
    expect(bad, `layer order: ${LAYERS.join(" → ")}`).toEqual([]);
  });

  it("imports src/ref only from src/ref and src/selftest.ts (tests import it too)", () => {
    const bad = imports
      .filter((i) => i.target !== null && unitOf(i.target) === REF && unitOf(i.file) !== REF && !REF_IMPORTERS.has(i.file))
      .map((i) => `src/${i.file} imports '${i.spec}': production code must not ship through a test oracle (move what it needs to src/common)`);
    expect(bad).toEqual([]);
  });
});
