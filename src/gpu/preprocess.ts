// gpu/preprocess.ts — WGSL composed from shared pieces: `#include` of helper files and parameter
// substitution, expanded before reflection and compilation. Only for what WGSL `override` constants
// cannot express (element types, enable directives, which helper a kernel is built with); numbers
// that an override can carry stay overrides.
//
// Syntax (a directive is a line whose first non-blank character is '#'; WGSL has no '#' token):
//   #include "common/grid.wgsl"   the file's text, path relative to the shader root, read through the
//                                 same ShaderSource as the kernel; each file at most once per expansion
//                                 (later includes of it are skipped); an include cycle is an error
//   #define NAME value            declares parameter NAME with its default value (the rest of the line,
//                                 may be empty); a value passed with the kernel request replaces it
//   {{NAME}}                      in WGSL lines (and #error): the parameter's value; an undeclared
//                                 NAME is an error
//   #if NAME == value             conditional lines (also !=); #elif NAME == value, #else, #endif
//   #error message                fails the expansion with the message (an unsupported parameter value)
// A request value for a name that the expansion never declares is an error, as an unknown override is.
// The expansion keeps the origin (file, line) of every line, so a compiler message about line n of the
// expanded text names the source file and line.

import { ShaderError } from "../errors.ts";

/** Loads the text of a shader file relative to the shader root. */
export type TextSource = (file: string) => string;

/** Parameter values passed with a kernel request: WGSL text of one line (a type, a name, a literal). */
export type Defines = Readonly<Record<string, string | number>>;

export interface Origin {
  file: string;
  /** 1-based line in `file`. */
  line: number;
}

export interface Expansion {
  /** The top-level file. */
  file: string;
  /** The expanded WGSL. */
  code: string;
  /** Origin of each line of `code` (index = line − 1). */
  lines: Origin[];
  /** Included files in the order they were first included. */
  includes: string[];
  /** Where each included file was first included. */
  includedFrom: ReadonlyMap<string, Origin>;
  /** Every declared parameter with its value (request values applied). */
  params: Readonly<Record<string, string>>;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_]\w*)\s*\}\}/g;
const NAME = /^[A-Za-z_]\w*$/;

interface Branch {
  /** Lines of the current branch are emitted. */
  active: boolean;
  /** Some branch of this #if has been taken. */
  taken: boolean;
  /** The enclosing block is active. */
  outer: boolean;
  seenElse: boolean;
  at: Origin;
}

/** Expands `file` (includes, conditionals, placeholders) with request values `defines`. Throws ShaderError. */
export function preprocess(file: string, source: TextSource, defines: Defines = {}): Expansion {
  const request = new Map<string, string>();
  for (const [name, value] of Object.entries(defines)) {
    const text = String(value);
    if (/[\r\n]/.test(text)) throw new ShaderError(file, `parameter ${name}: a value must be one line`);
    request.set(name, text);
  }
  const params = new Map<string, { value: string; at: Origin }>();
  const out: string[] = [];
  const lines: Origin[] = [];
  const includes: string[] = [];
  const includedFrom = new Map<string, Origin>();
  const done = new Set<string>();
  const stack: string[] = [];

  const fail = (at: Origin, detail: string): never => {
    throw new ShaderError(file, `${where(at)}: ${detail}`);
  };
  const where = (at: Origin): string => {
    let s = `${at.file}:${at.line}`;
    for (let f = includedFrom.get(at.file); f; f = includedFrom.get(f.file)) s += ` (included from ${f.file}:${f.line})`;
    return s;
  };
  const substitute = (text: string, at: Origin): string =>
    text.replace(PLACEHOLDER, (_, name: string) => {
      const p = params.get(name);
      if (!p) fail(at, `unknown placeholder {{${name}}} (parameters: ${[...params.keys()].join(", ") || "none"})`);
      return p!.value;
    });
  const condition = (args: string, at: Origin, directive: string): boolean => {
    const m = /^([A-Za-z_]\w*)\s*(==|!=)\s*(\S+)$/.exec(args);
    if (!m) return fail(at, `#${directive} needs 'NAME == value' or 'NAME != value', got '${args}'`);
    const p = params.get(m[1]);
    if (!p) return fail(at, `#${directive} tests '${m[1]}', which is not declared (#define it first)`);
    return (p.value === m[3]) === (m[2] === "==");
  };

  const expand = (name: string, text: string): void => {
    stack.push(name);
    const branches: Branch[] = [];
    const src = text.split(/\r?\n/);
    src.forEach((raw, i) => {
      const at = { file: name, line: i + 1 };
      const active = branches.length === 0 || branches[branches.length - 1].active;
      const d = /^\s*#\s*(\w*)\s*(.*?)\s*$/.exec(raw);
      if (!d) {
        if (active) {
          out.push(substitute(raw, at));
          lines.push(at);
        }
        return;
      }
      const [, directive, args] = d;
      switch (directive) {
        case "if": {
          const taken = active && condition(args, at, directive);
          branches.push({ active: taken, taken, outer: active, seenElse: false, at });
          return;
        }
        case "elif":
        case "else": {
          const b = branches[branches.length - 1];
          if (!b) return fail(at, `#${directive} without #if`);
          if (b.seenElse) return fail(at, `#${directive} after #else (the #if is at line ${b.at.line})`);
          if (directive === "else" && args) return fail(at, `#else takes no condition (use #elif)`);
          const take = b.outer && !b.taken && (directive === "else" || condition(args, at, directive));
          b.active = take;
          b.taken ||= take;
          b.seenElse = directive === "else";
          return;
        }
        case "endif":
          if (!branches.pop()) fail(at, "#endif without #if");
          return;
      }
      if (!active) return;
      switch (directive) {
        case "include": {
          const m = /^"([^"]+)"$/.exec(args);
          if (!m) return fail(at, `#include needs a quoted path relative to the shader root, got '${args}'`);
          const inc = m[1];
          if (stack.includes(inc)) return fail(at, `include cycle: ${[...stack.slice(stack.indexOf(inc)), inc].join(" -> ")}`);
          if (done.has(inc)) return;
          let body: unknown;
          try {
            body = source(inc);
          } catch (e) {
            return fail(at, `cannot include "${inc}": ${(e as Error).message}`);
          }
          if (typeof body !== "string") return fail(at, `cannot include "${inc}": no such shader file`);
          includes.push(inc);
          includedFrom.set(inc, at);
          expand(inc, body);
          return;
        }
        case "define": {
          const m = /^([A-Za-z_]\w*)(?:\s+(.*))?$/.exec(args);
          if (!m) return fail(at, `#define needs a parameter name, got '${args}'`);
          const prev = params.get(m[1]);
          if (prev) return fail(at, `parameter ${m[1]} is already declared at ${where(prev.at)}`);
          params.set(m[1], { value: request.get(m[1]) ?? m[2] ?? "", at });
          return;
        }
        case "error":
          return fail(at, substitute(args, at) || "#error");
        default:
          return fail(at, `unknown directive '#${directive}' (known: include, define, if, elif, else, endif, error)`);
      }
    });
    if (branches.length) fail(branches[branches.length - 1].at, "#if without #endif");
    stack.pop();
    done.add(name);
  };

  let top: unknown;
  try {
    top = source(file);
  } catch (e) {
    if (e instanceof ShaderError) throw e;
    throw new ShaderError(file, `cannot read: ${(e as Error).message}`);
  }
  if (typeof top !== "string") throw new ShaderError(file, "cannot read: no such shader file");
  expand(file, top);

  for (const name of request.keys()) {
    if (!NAME.test(name) || !params.has(name)) {
      throw new ShaderError(file, `'${name}' is not a parameter of this shader (parameters: ${[...params.keys()].join(", ") || "none"})`);
    }
  }
  return {
    file,
    code: out.join("\n"),
    lines,
    includes,
    includedFrom,
    params: Object.fromEntries([...params].map(([k, v]) => [k, v.value])),
  };
}

/** Origin of 1-based line `line` of the expanded text (the top-level file itself past the end). */
export function originOf(exp: Expansion, line: number): Origin {
  return exp.lines[line - 1] ?? { file: exp.file, line };
}

/** `file:line[:column]` of an expanded line, with the include chain when it comes from an included file. */
export function describeLine(exp: Expansion, line: number, column?: number): string {
  const o = originOf(exp, line);
  let s = `${o.file}:${o.line}${column !== undefined ? `:${column}` : ""}`;
  for (let f = exp.includedFrom.get(o.file); f; f = exp.includedFrom.get(f.file)) s += ` (included from ${f.file}:${f.line})`;
  return s;
}

/** A stable key of request values: sorted NAME=value pairs ("" when none). */
export function definesKey(defines: Defines): string {
  return Object.entries(defines)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(",");
}
