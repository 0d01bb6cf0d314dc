// bench/report.ts — benchmark results for people and machines: Markdown tables (device in the
// heading), the one JSON object of `wgq bench --json`, and an SVG bar chart of the fastest f16 /
// int8 / int4 kernel per shape and M. Pure formatting: no GPU.

import type { AdapterSummary } from "../gpu/device.ts";
import type { BenchRow } from "./kernels.ts";
import type { RooflineResult } from "./roofline.ts";

export interface BenchDevice extends AdapterSummary {
  features: string[];
  timer: string;
}

export interface BenchReport {
  device: BenchDevice;
  settings: { reps: number; warmup: number; shapes: string; only: string | null; full: boolean; date: string; ort?: boolean; layers?: number };
  roofline: RooflineResult | null;
  results: BenchRow[];
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** A file-name-safe device name: "llvmpipe-llvm-15-0-6-256-bits". */
export function deviceSlug(d: AdapterSummary): string {
  const raw = d.device || d.description || d.vendor || "device";
  return raw.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "device";
}

/** One-line device label for headings. */
export function deviceLabel(d: BenchDevice): string {
  return `${d.description || d.device} (${d.kind === "cpu" ? "software adapter on the CPU" : "GPU"}, ${d.backend}; timer: ${d.timer})`;
}

/** The Markdown report: roofline table, one table per kind (GEMV, GEMM), ONNX Runtime, end to end, quantization time. */
export function markdown(r: BenchReport): string {
  const out: string[] = [];
  out.push(`## wgq bench — ${deviceLabel(r.device)}`, "");
  out.push(`${r.settings.reps} timed reps after warm-up; median / min ms; ${r.settings.date}. Timer "timestamp": GPU timestamps around the batch (unrounded), wall times are in the JSON. GB/s counts weight bytes as stored; % copy is that over the WGSL copy bandwidth; × f16 is the fastest f16 kernel's median over this row's at the same shape and M; ★ = fastest of its dtype, shape and M.`, "");
  if (r.roofline) {
    const f = r.roofline;
    out.push("### Roofline", "");
    out.push("| probe | median | best |", "|---|---:|---:|");
    out.push(`| WGSL vec4 copy, ${(f.copy_bytes / 2 ** 20).toFixed(0)} MiB (read + write GB/s) | ${f.copy_gbps.toFixed(2)} | ${f.copy_gbps_best.toFixed(2)} |`);
    out.push(`| copyBufferToBuffer (read + write GB/s) | ${f.copy_b2b_gbps.toFixed(2)} | ${f.copy_b2b_gbps_best.toFixed(2)} |`);
    if (f.fma_f32_gflops !== null) {
      out.push(`| f32 FMA (GFLOP/s) | ${f.fma_f32_gflops.toFixed(1)} | |`);
      out.push(`| f16 FMA (GFLOP/s) | ${f.fma_f16_gflops === null ? "n/a (no shader-f16)" : f.fma_f16_gflops.toFixed(1)} | |`);
    }
    if (f.dispatch_submit_ms !== null) {
      out.push(`| dispatch + submit + wait (ms, wall) | ${f.dispatch_submit_ms.toFixed(3)} | ${f.dispatch_submit_ms_min!.toFixed(3)} |`);
      out.push(`| each extra dispatch in a submit (ms, wall) | ${f.per_dispatch_ms!.toFixed(4)} | |`);
    }
    out.push("");
  }
  for (const kind of ["gemv", "gemm"] as const) {
    const rows = r.results.filter((x) => x.kind === kind && !x.peer && !x.unavailable);
    if (!rows.length) continue;
    out.push(`### ${kind.toUpperCase()}`, "");
    out.push("| N×K | M | dtype | kernel | median ms | min ms | GB/s | % copy | GFLOP/s | × f16 | rel err | |");
    out.push("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (const x of rows) {
      const t = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : "—");
      out.push(
        `| ${x.n}×${x.k} | ${x.m} | ${x.dtype} | ${x.name} | ${t(x.median_ms)} | ${t(x.min_ms)} | ${t(x.gbps, 2)} | ${x.pct_copy === null ? "—" : x.pct_copy.toFixed(0)} | ${t(x.gflops, 1)} | ${x.speedup_vs_f16 === null ? "—" : x.speedup_vs_f16.toFixed(2)} | ${x.rel_err.toExponential(1)} | ${x.error ? "FAILED" : x.best ? "★" : ""} |`,
      );
    }
    out.push("");
  }
  out.push(...ortSection(r, false), ...e2eSection(r), ...quantSection(r));
  return out.join("\n");
}

/** Peer rows (ONNX Runtime), each beside the project's fastest kernel of its dtype, shape and M. */
function ortSection(r: BenchReport, short: boolean): string[] {
  const rows = r.results.filter((x) => x.variant.startsWith("ort-"));
  if (!rows.length) return [];
  const peer = rows.find((x) => x.peer)?.peer ?? "onnxruntime-node";
  const out = [`### ONNX Runtime on the same device (${peer})`, ""];
  out.push(short
    ? "ORT's median ms (wall time of `session.run`, host input and output) against the project's fastest kernel of the same dtype (GPU time), and their ratio."
    : "ORT: wall time of `session.run` with host input and output (upload of x and readback of y included; \"fixed\" is the same for a one-Add model with the same input). Project: its fastest kernel of the same dtype (int4: and group size), shape and M (GPU time). ORT ÷ project > 1: ORT is slower. rel err: ORT's CPU EP / WebGPU EP against the float64 reference.", "");
  out.push("| N×K | M | dtype | ORT model | ORT median ms | ORT min ms | fixed ms | project kernel | project ms | ORT ÷ project | rel err CPU / WebGPU | status |");
  out.push("|---|---:|---|---|---:|---:|---:|---|---:|---:|---|---|");
  for (const x of rows) {
    const own = fastestKernel(r, x);
    const t = (v: number | undefined, d = 3) => (v !== undefined && Number.isFinite(v) ? v.toFixed(d) : "—");
    const e = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? v.toExponential(1) : "—");
    const status = x.unavailable ? `unavailable: ${x.unavailable}` : x.error ? "FAILED" : "";
    out.push(`| ${x.n}×${x.k} | ${x.m} | ${x.dtype} | ${x.name} | ${t(x.median_ms)} | ${t(x.min_ms)} | ${t(x.overhead_ms)} | ${own?.name ?? "—"} | ${t(own?.median_ms)} | ${own && Number.isFinite(x.median_ms) ? (x.median_ms / own.median_ms).toFixed(1) : "—"} | ${e(x.cpu_rel_err)} / ${e(x.rel_err)} | ${status} |`);
  }
  out.push("");
  return out;
}

/** The project's fastest valid kernel row of x's dtype, int4 group, shape and M. */
function fastestKernel(r: BenchReport, x: BenchRow): BenchRow | undefined {
  return r.results
    .filter((o) => (o.kind === "gemv" || o.kind === "gemm") && !o.peer && !o.variant.startsWith("ort-") && !o.error && Number.isFinite(o.median_ms))
    .filter((o) => o.dtype === x.dtype && o.group === x.group && o.n === x.n && o.k === x.k && o.m === x.m)
    .sort((a, b) => a.median_ms - b.median_ms)[0];
}

/** Decode and prefill tokens/s per model and weight format. */
function e2eSection(r: BenchReport): string[] {
  const rows = r.results.filter((x) => x.kind === "e2e");
  if (!rows.length) return [];
  const out = ["### End to end (forward pass with KV cache)", ""];
  out.push("Block linears and LM head as f16, int8 (per channel) or int4 g128 (RTN); embeddings f16 in every row. decode: one token per step after a 16-token prompt, logits read back each step; prefill: one forward of M tokens. Wall time per step; weights = bytes a decode step reads.", "");
  out.push("| model | layers | dtype | decode tok/s | decode ms/token | prefill tok/s | prefill ms (M) | weights MiB | decode × f16 |");
  out.push("|---|---:|---|---:|---:|---:|---:|---:|---:|");
  for (const key of [...new Set(rows.map((x) => `${x.model}|${x.dtype}`))]) {
    const [model, dtype] = key.split("|");
    const d = rows.find((x) => x.model === model && x.dtype === dtype && x.name === "decode");
    const p = rows.find((x) => x.model === model && x.dtype === dtype && x.name === "prefill");
    const any = (d ?? p)!;
    const tps = (x?: BenchRow) => (x?.tokens_per_s === undefined ? "—" : x.tokens_per_s.toFixed(x.tokens_per_s < 10 ? 2 : 1));
    out.push(`| ${model} | ${any.layers} | ${dtype}${any.group ? ` g${any.group}` : ""} | ${tps(d)} | ${d ? d.median_ms.toFixed(1) : "—"} | ${tps(p)} | ${p ? `${p.median_ms.toFixed(0)} (${p.m})` : "—"} | ${(any.weight_bytes / 2 ** 20).toFixed(1)} | ${d?.speedup_vs_f16 == null ? "—" : d.speedup_vs_f16.toFixed(2)} |`);
  }
  out.push("");
  return out;
}

/** Quantization seconds per block and per 1e9 weights. */
function quantSection(r: BenchReport): string[] {
  const rows = r.results.filter((x) => x.kind === "quant");
  if (!rows.length) return [];
  const out = ["### Quantization time", ""];
  out.push("Per block of the model's 7 linears: upload f32, quantize on the GPU, read back packed (RTN), or AWQ's search and clip (one block, 4×128 calibration tokens). Median (min) over the blocks timed.", "");
  out.push("| method | format | model | weights per block | blocks | s per block | s per 1e9 weights |");
  out.push("|---|---|---|---:|---:|---:|---:|");
  for (const x of rows) {
    out.push(`| ${x.name} | ${x.dtype}${x.group ? ` g${x.group}` : ""} | ${x.model} | ${((x.params_per_block ?? 0) / 1e6).toPrecision(3)} M | ${x.reps} | ${(x.median_ms / 1000).toFixed(2)} (${(x.min_ms / 1000).toFixed(2)}) | ${x.seconds_per_billion?.toFixed(1) ?? "—"} |`);
  }
  out.push("");
  return out;
}

/**
 * A short results section (for the README): per kind, shape and M, the fastest f16 / int8 / int4
 * kernel's median ms and its speedup over f16, under a heading naming the device.
 */
export function summaryMarkdown(r: BenchReport): string {
  const out: string[] = [`### ${deviceLabel(r.device)}`, "", `Fastest kernel per dtype, median ms (× f16); ${r.settings.reps} reps, ${r.settings.date.slice(0, 10)}.`, ""];
  out.push("| kind | N×K | M | f32 | f16 | int8 | int4 | int4 kernel |", "|---|---|---:|---:|---:|---:|---:|---|");
  const kernelRows = r.results.filter((x) => (x.kind === "gemv" || x.kind === "gemm") && !x.peer);
  const keys = [...new Set(kernelRows.map((x) => `${x.kind}|${x.n}|${x.k}|${x.m}`))];
  for (const key of keys) {
    const rows = kernelRows.filter((x) => `${x.kind}|${x.n}|${x.k}|${x.m}` === key && x.best);
    const [kind, n, k, m] = key.split("|");
    const cell = (d: string) => {
      const b = rows.find((x) => x.dtype === d);
      if (!b) return "—";
      return `${b.median_ms.toFixed(2)}${b.speedup_vs_f16 !== null && d !== "f16" ? ` (${b.speedup_vs_f16.toFixed(1)}×)` : ""}`;
    };
    out.push(`| ${kind} | ${n}×${k} | ${m} | ${cell("f32")} | ${cell("f16")} | ${cell("int8")} | ${cell("int4")} | ${rows.find((x) => x.dtype === "int4")?.name ?? "—"} |`);
  }
  if (!kernelRows.length) out.splice(4, 2); // no kernel rows: drop that table's header
  out.push("");
  const ort = r.results.filter((x) => x.variant.startsWith("ort-"));
  if (ort.length) {
    // One line per (shape, M, dtype): ORT's fastest model of that dtype (or why none ran) against the project's fastest kernel.
    out.push(`#### ONNX Runtime (${ort.find((x) => x.peer)?.peer ?? "onnxruntime-node"}) vs the project, GEMV`, "");
    out.push("Median ms: ORT `session.run` wall time (host input/output) vs the project's fastest kernel of the same dtype and int4 group, timed in the same run (GPU time).", "");
    out.push("| N×K | M | dtype | ORT model | ORT ms | project kernel | project ms | ORT ÷ project |", "|---|---:|---|---|---:|---|---:|---:|");
    for (const key of [...new Set(ort.map((x) => `${x.n}|${x.k}|${x.m}|${x.dtype}|${x.group ?? ""}`))]) {
      const list = ort.filter((x) => `${x.n}|${x.k}|${x.m}|${x.dtype}|${x.group ?? ""}` === key);
      const ok = list.filter((x) => Number.isFinite(x.median_ms) && !x.error).sort((a, b) => a.median_ms - b.median_ms);
      const x = ok[0] ?? list[0];
      const vs = ok[0]?.vs_best_project ?? null;
      const ms = ok[0] ? ok[0].median_ms.toFixed(2) : x.unavailable ? `unavailable: ${x.unavailable}` : "FAILED";
      out.push(`| ${x.n}×${x.k} | ${x.m} | ${x.dtype} | ${ok[0]?.name ?? x.name} | ${ms} | ${ok[0]?.project_kernel ?? "—"} | ${vs ? (ok[0].median_ms * vs).toFixed(2) : "—"} | ${vs ? (1 / vs).toFixed(1) : "—"} |`);
    }
    out.push("");
  }
  const e2e = e2eSection(r);
  if (e2e.length) out.push("#### End to end", "", ...e2e.slice(2));
  const quant = quantSection(r);
  if (quant.length) out.push("#### Quantization time", "", ...quant.slice(2));
  return out.join("\n") + "\n";
}

/**
 * SVG grouped bars: for each (shape, M) the GFLOP/s of the fastest f16, int8 and int4 row (int4
 * over both group sizes). GFLOP/s = 2·M·N·K / time, so higher is faster at every shape.
 */
export function svgPlot(r: BenchReport): string {
  const dtypes = [["f16", "#8c8c8c"], ["int8", "#4c78a8"], ["int4", "#f58518"]] as const;
  const groups = new Map<string, Map<string, number>>();
  for (const x of r.results) {
    if (x.error || !x.best || !dtypes.some(([d]) => d === x.dtype)) continue;
    const key = `${x.n}×${x.k} M=${x.m}`;
    if (!groups.has(key)) groups.set(key, new Map());
    groups.get(key)!.set(x.dtype, x.gflops);
  }
  const keys = [...groups.keys()];
  const max = Math.max(1e-9, ...[...groups.values()].flatMap((g) => [...g.values()]));
  const bw = 14;
  const gw = bw * dtypes.length + 16;
  const left = 60;
  const top = 40;
  const h = 260;
  const width = left + Math.max(1, keys.length) * gw + 20;
  const height = top + h + 110;
  const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="100%" height="100%" fill="white"/>`);
  o.push(`<text x="${left}" y="16" font-size="13">${esc(`fastest f16 / int8 / int4 kernel per shape (N×K) and M — ${r.device.description || r.device.device}, ${r.device.timer} timer`)}</text>`);
  dtypes.forEach(([d, c], i) => o.push(`<rect x="${left + i * 70}" y="24" width="10" height="10" fill="${c}"/><text x="${left + i * 70 + 14}" y="33">${d}</text>`));
  for (let t = 0; t <= 4; t++) {
    const y = top + h - (h * t) / 4;
    o.push(`<line x1="${left}" x2="${width - 10}" y1="${y}" y2="${y}" stroke="#ddd"/><text x="${left - 4}" y="${y + 4}" text-anchor="end">${((max * t) / 4).toFixed(max < 10 ? 2 : 1)}</text>`);
  }
  o.push(`<text transform="translate(14 ${top + h / 2}) rotate(-90)" text-anchor="middle">GFLOP/s (higher is faster)</text>`);
  keys.forEach((key, gi) => {
    const x0 = left + gi * gw + 8;
    dtypes.forEach(([d, c], i) => {
      const v = groups.get(key)!.get(d);
      if (v === undefined) return;
      const bh = (h * v) / max;
      o.push(`<rect x="${x0 + i * bw}" y="${(top + h - bh).toFixed(1)}" width="${bw - 2}" height="${bh.toFixed(1)}" fill="${c}"><title>${esc(`${key} ${d}: ${v.toFixed(2)} GFLOP/s`)}</title></rect>`);
    });
    o.push(`<text transform="translate(${x0 + 10} ${top + h + 8}) rotate(60)">${esc(key)}</text>`);
  });
  o.push(`</svg>`);
  return o.join("\n") + "\n";
}
