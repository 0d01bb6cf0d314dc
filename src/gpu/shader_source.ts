// gpu/shader_source.ts — the Node default ShaderSource: WGSL text from the package's shaders/.
// Kept apart from kernel.ts so the registry itself stays free of Node imports (browser bundles).

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ShaderError } from "../errors.ts";
import type { ShaderSource } from "./kernel.ts";

/** Folder of the project's shaders (shaders/ at the package root). */
export const SHADER_ROOT = fileURLToPath(new URL("../../shaders/", import.meta.url));

export const nodeShaderSource: ShaderSource = (file) => {
  try {
    return readFileSync(SHADER_ROOT + file, "utf8");
  } catch (e) {
    throw new ShaderError(file, `cannot read ${SHADER_ROOT + file}: ${(e as Error).message}`, "check the file name; shaders live under shaders/");
  }
};
