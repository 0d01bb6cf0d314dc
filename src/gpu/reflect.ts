// gpu/reflect.ts — what the host needs to know about a WGSL file, derived from the text by
// wgsl_reflect (the single source of truth): bindings, the uniform Params struct and its member
// offsets, override constants and each entry point's workgroup size. No GPU needed. The text is the
// expanded one (gpu/preprocess.ts) when the file includes others or takes parameters.

import { WgslReflect } from "wgsl_reflect/wgsl_reflect.module.js";
import { ParamsError, ShaderError } from "../errors.ts";
import { f32ToF16Bits } from "../common/half.ts";
import type { Expansion } from "./preprocess.ts";

export type BindingKind = "storage" | "read-only-storage" | "uniform";

export interface BindingInfo {
  name: string;
  binding: number;
  kind: BindingKind;
  /** WGSL type as written, e.g. "array<f32>", "Params". */
  type: string;
}

export interface ParamMember {
  name: string;
  /** Byte offset in the uniform struct. */
  offset: number;
  /** Scalar type: u32, i32, f32, f16. */
  scalar: "u32" | "i32" | "f32" | "f16";
  /** Number of scalars (1 for scalars, N for vecN). */
  count: number;
}

export interface ParamsInfo {
  /** The uniform variable's name (a binding name too). */
  binding: string;
  struct: string;
  /** Struct size in bytes (already rounded to its alignment). */
  size: number;
  members: ParamMember[];
}

export interface EntryInfo {
  name: string;
  /** Workgroup size as written: numbers or override names. */
  workgroupSize: (number | string)[];
  /** Bindings the entry point uses (through the functions it calls too), by binding index. */
  bindings: BindingInfo[];
  /** The uniform Params the entry point uses, if any. */
  params: ParamsInfo | null;
}

export interface ShaderInfo {
  file: string;
  /** The reflected (expanded) text. */
  code: string;
  /** How `code` was expanded from its source files (set by the kernel registry). */
  expansion?: Expansion;
  /** Every group-0 binding the file declares. */
  bindings: BindingInfo[];
  overrides: { name: string; type: string }[];
  entries: Map<string, EntryInfo>;
}

// ---------------------------------------------------------------------------------------------

/**
 * Reflects `code` (named `file` in errors). Throws ShaderError on a parse error or a binding outside
 * group 0. `where` names line n of `code` in a parse error (an expansion's source file and line).
 */
export function reflectShader(file: string, code: string, where?: (line: number) => string): ShaderInfo {
  let r: WgslReflect;
  try {
    r = new WgslReflect(code);
  } catch (e) {
    let detail = String(e instanceof Error ? e.message : e);
    if (where) detail = detail.replace(/\b(Line:?|at line)\s*(\d+)/i, (_, w: string, n: string) => `${w} ${n} (${where(Number(n))})`);
    throw new ShaderError(file, `WGSL parse error: ${detail}`);
  }
  const groups = r.getBindGroups();
  if (groups.length > 1 && groups.slice(1).some((g: unknown[]) => g && g.some(Boolean))) {
    throw new ShaderError(file, "bindings outside @group(0) are not supported");
  }
  const bindings: BindingInfo[] = [];
  const params = new Map<string, ParamsInfo>();
  for (const v of groups[0] ?? []) {
    if (!v) continue;
    const isUniform = v.resourceType === 0; // ResourceType.Uniform
    const kind: BindingKind = isUniform ? "uniform" : v.access === "read" ? "read-only-storage" : "storage";
    bindings.push({ name: v.name, binding: v.binding, kind, type: typeName(v.type) });
    if (isUniform) params.set(v.name, structInfo(file, v.name, v.type));
  }
  bindings.sort((a, b) => a.binding - b.binding);
  const entries = new Map<string, EntryInfo>();
  for (const e of r.entry.compute) {
    const used = new Set<string>(e.resources.map((x: { name: string }) => x.name));
    const eb = bindings.filter((b) => used.has(b.name));
    const ub = eb.filter((b) => b.kind === "uniform");
    if (ub.length > 1) throw new ShaderError(file, `entry ${e.name} uses more than one uniform; put all params in one struct`);
    const wg = (e.attributes ?? []).find((a: { name: string }) => a.name === "workgroup_size");
    const raw: unknown[] = wg ? (Array.isArray(wg.value) ? wg.value : [wg.value]) : [1];
    const size = raw.map((x) => (typeof x === "string" && /^\d+u?$/.test(x) ? parseInt(x, 10) : (x as number | string)));
    while (size.length < 3) size.push(1);
    entries.set(e.name, { name: e.name, workgroupSize: size, bindings: eb, params: ub.length ? params.get(ub[0].name)! : null });
  }
  const overrides = r.overrides.map((o: { name: string; type: { name: string } | null }) => ({ name: o.name, type: o.type?.name ?? "?" }));
  return { file, code, bindings, overrides, entries };
}

/** Packs `values` into the uniform struct's bytes; a missing or unknown member is a ParamsError. */
export function packParams(kernel: string, info: ParamsInfo, values: Record<string, number | readonly number[]>): Uint8Array {
  const out = new ArrayBuffer(info.size);
  const dv = new DataView(out);
  const names = info.members.map((m) => m.name);
  for (const k of Object.keys(values)) {
    if (!names.includes(k)) throw new ParamsError(kernel, `unknown param '${k}'`, names);
  }
  for (const m of info.members) {
    const v = values[m.name];
    if (v === undefined) throw new ParamsError(kernel, `missing param '${m.name}'`, names);
    const arr = typeof v === "number" ? [v] : v;
    if (arr.length !== m.count) throw new ParamsError(kernel, `param '${m.name}' needs ${m.count} value(s), got ${arr.length}`, names);
    arr.forEach((x, i) => {
      if (!Number.isFinite(x)) throw new ParamsError(kernel, `param '${m.name}' is not finite (${x})`, names);
      switch (m.scalar) {
        case "u32":
          if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new ParamsError(kernel, `param '${m.name}' = ${x} is not a u32`, names);
          dv.setUint32(m.offset + 4 * i, x, true);
          break;
        case "i32":
          if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) throw new ParamsError(kernel, `param '${m.name}' = ${x} is not an i32`, names);
          dv.setInt32(m.offset + 4 * i, x, true);
          break;
        case "f32":
          dv.setFloat32(m.offset + 4 * i, x, true);
          break;
        case "f16":
          dv.setUint16(m.offset + 2 * i, f32ToF16Bits(x), true);
          break;
      }
    });
  }
  return new Uint8Array(out);
}

// ---------------------------------------------------------------------------------------------

interface ReflType {
  name: string;
  size: number;
  format?: ReflType | null;
  members?: { name: string; offset: number; size: number; type: ReflType }[];
}

function typeName(t: ReflType): string {
  return t.format ? `${t.name}<${typeName(t.format)}>` : t.name;
}

function structInfo(file: string, varName: string, t: ReflType): ParamsInfo {
  if (!t.members) throw new ShaderError(file, `uniform '${varName}' must be a struct`);
  const members: ParamMember[] = t.members.map((m) => {
    const mt = m.type;
    let scalar = mt.name;
    let count = 1;
    const vec = /^vec([234])([fhiu]?)$/.exec(mt.name);
    if (vec) {
      count = Number(vec[1]);
      scalar = mt.format?.name ?? { f: "f32", h: "f16", i: "i32", u: "u32" }[vec[2]] ?? "?";
    }
    if (!["u32", "i32", "f32", "f16"].includes(scalar)) {
      throw new ShaderError(file, `uniform ${varName}.${m.name}: type ${typeName(mt)} is not a scalar or vector of u32/i32/f32/f16`);
    }
    return { name: m.name, offset: m.offset, scalar: scalar as ParamMember["scalar"], count };
  });
  return { binding: varName, struct: t.name, size: t.size, members };
}
