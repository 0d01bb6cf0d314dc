// ptq/report.ts — report.html: a self-contained page (no scripts, no external files) beside
// report.json in every quantized model folder: settings, device, time per phase, sizes, the
// per-layer AWQ choices and losses, evaluation before/after, with small inline SVG charts.

import type { QuantizeReport } from "./quantize.ts";
import type { AwqBlockReport } from "./awq.ts";

interface Bar {
  label: string;
  value: number;
  /** Optional second series drawn beside the first (e.g. RTN vs AWQ). */
  value2?: number;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const fmt = (v: number) => (v === 0 ? "0" : Math.abs(v) >= 0.01 && Math.abs(v) < 1e5 ? v.toFixed(v < 10 ? 4 : 1) : v.toExponential(2));

/** A horizontal bar chart as an SVG string; two series when value2 is given. */
export function barChart(title: string, bars: Bar[], series: [string, string?] = ["value"]): string {
  const rowH = bars.some((b) => b.value2 !== undefined) ? 22 : 16;
  const w = 640, left = 190, right = 90, top = 28;
  const h = top + bars.length * rowH + 12;
  const max = Math.max(1e-30, ...bars.flatMap((b) => [b.value, b.value2 ?? 0]));
  const scale = (v: number) => ((w - left - right) * Math.max(0, v)) / max;
  const rows = bars.map((b, i) => {
    const y = top + i * rowH;
    const two = b.value2 !== undefined;
    const bh = two ? 9 : 12;
    let out = `<text x="${left - 6}" y="${y + 11}" text-anchor="end">${esc(b.label)}</text>`;
    out += `<rect x="${left}" y="${y + 1}" width="${scale(b.value).toFixed(1)}" height="${bh}" fill="#4c78a8"><title>${esc(`${series[0]}: ${fmt(b.value)}`)}</title></rect>`;
    out += `<text x="${left + scale(b.value) + 4}" y="${y + 10}" class="v">${fmt(b.value)}</text>`;
    if (two) {
      out += `<rect x="${left}" y="${y + 11}" width="${scale(b.value2!).toFixed(1)}" height="${bh}" fill="#f58518"><title>${esc(`${series[1]}: ${fmt(b.value2!)}`)}</title></rect>`;
      out += `<text x="${left + scale(b.value2!) + 4}" y="${y + 20}" class="v">${fmt(b.value2!)}</text>`;
    }
    return out;
  });
  const legend = series[1]
    ? `<rect x="${left}" y="8" width="10" height="10" fill="#4c78a8"/><text x="${left + 14}" y="17">${esc(series[0])}</text><rect x="${left + 120}" y="8" width="10" height="10" fill="#f58518"/><text x="${left + 134}" y="17">${esc(series[1])}</text>`
    : "";
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(title)}">${legend}${rows.join("")}</svg></figure>`;
}

/** An SVG line chart of one or more series of (x, y) points sharing the axes. */
export function lineChart(title: string, series: { name: string; points: [number, number][] }[]): string {
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (!pts.length) return "";
  const w = 760, h = 260, l = 60, r = 12, t = 24, b = 30;
  const [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  const [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  const X = (x: number) => l + ((x - x0) / Math.max(x1 - x0, 1e-12)) * (w - l - r);
  const Y = (y: number) => t + (1 - (y - y0) / Math.max(y1 - y0, 1e-12)) * (h - t - b);
  const colors = ["#4a78b5", "#d9822b", "#3d9970", "#b10dc9"];
  const lines = series.map((s, i) => {
    const d = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y], j) => `${j ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
    return `<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5"/><text x="${l + 8 + 150 * i}" y="14" fill="${colors[i % colors.length]}">${esc(s.name)}</text>`;
  });
  const axes = `<line x1="${l}" y1="${h - b}" x2="${w - r}" y2="${h - b}" stroke="#999"/><line x1="${l}" y1="${t}" x2="${l}" y2="${h - b}" stroke="#999"/>` +
    `<text class="v" x="${l - 4}" y="${Y(y1) + 4}" text-anchor="end">${esc(fmt(y1))}</text><text class="v" x="${l - 4}" y="${Y(y0)}" text-anchor="end">${esc(fmt(y0))}</text>` +
    `<text class="v" x="${l}" y="${h - 10}">${esc(fmt(x0))}</text><text class="v" x="${w - r}" y="${h - 10}" text-anchor="end">${esc(fmt(x1))}</text>`;
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(title)}">${axes}${lines.join("")}</svg></figure>`;
}

function table(head: string[], rows: (string | number)[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(typeof c === "number" ? fmt(c) : c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

/** report.json object -> report.html text. */
export function reportHtml(r: QuantizeReport): string {
  const spec = r.bits === 16 ? "fp16" : r.bits === 8 ? "int8 per-channel symmetric" : `int${r.bits} ${r.sym ? "symmetric" : "asymmetric"}, group ${r.group_size}`;
  const parts: string[] = [];
  parts.push(`<h1>webgpu-quant report</h1><p><b>${esc(r.model)}</b> → <b>${esc(r.out)}</b>: ${esc(r.method.toUpperCase())} ${esc(spec)}, on ${esc(r.device)}.</p>`);
  parts.push(table(["size before", "size after", "ratio", "total time"], [[`${(r.bytes_in / 1e6).toFixed(2)} MB`, `${(r.bytes_out / 1e6).toFixed(2)} MB`, `${(r.bytes_in / Math.max(r.bytes_out, 1)).toFixed(2)}×`, `${fmt(r.seconds.total ?? 0)} s`]]));
  parts.push(barChart("Wall time per phase (s)", Object.entries(r.seconds).filter(([k]) => k !== "total").map(([k, v]) => ({ label: k, value: v }))));
  const evalR = r.eval as { before?: Record<string, number>; after?: Record<string, number> } | undefined;
  if (evalR?.after) {
    parts.push("<h2>Evaluation</h2>");
    parts.push(table(["model", "perplexity", "KL vs fp (nats/token)", "top-1 agreement", "tokens"], [
      ["fp (reference)", evalR.before?.ppl ?? NaN, 0, "100 %", evalR.before?.tokens ?? ""],
      ["quantized", evalR.after.ppl, evalR.after.kl, `${(100 * evalR.after.top1).toFixed(2)} %`, evalR.after.tokens],
    ]));
  }
  const awq = r.awq as AwqBlockReport[] | undefined;
  if (awq?.length) {
    parts.push("<h2>AWQ: chosen scales and clips</h2>");
    const groups = awq.flatMap((b) => b.groups.map((g) => ({ ...g, layer: b.layer })));
    parts.push(barChart("Loss per group: RTN (α = 0) vs chosen α (MSE of the inspected module's output)", groups.map((g) => ({ label: `block ${g.layer} ${g.group}`, value: g.loss_rtn, value2: g.loss_best })), ["RTN", "AWQ"]));
    parts.push(barChart("Chosen α per group", groups.map((g) => ({ label: `block ${g.layer} ${g.group}`, value: g.alpha }))));
    const clips = awq.flatMap((b) => b.clip.map((c) => ({ ...c, layer: b.layer })));
    if (clips.length) parts.push(barChart("Clip search: error before vs after", clips.map((c) => ({ label: `block ${c.layer} ${c.linear.replace(/^(self_attn|mlp)\./, "")}`, value: c.loss_before, value2: c.loss_after })), ["no clip", "best clip"]));
    parts.push(table(["block", "group", "α", "loss RTN", "loss AWQ", "seconds"], groups.map((g) => [g.layer, g.group, g.alpha, g.loss_rtn, g.loss_best, awq[g.layer]?.seconds ?? ""])));
  }
  const qat = r.qat as { mode?: string; loss?: string; curve?: { block: number | null; step: number; loss: number; held_out?: number }[]; held_out?: { before: number; best: number; bestStep: number } } | undefined;
  if (qat?.curve?.length) {
    parts.push("<h2>Quantization-aware training</h2>");
    const c = qat.curve;
    if (qat.mode === "block") {
      const blocks = [...new Set(c.map((p) => p.block))];
      parts.push(lineChart("Block reconstruction MSE per step", blocks.map((bl) => ({ name: `block ${bl}`, points: c.filter((p) => p.block === bl).map((p) => [p.step, p.loss] as [number, number]) }))));
    } else {
      parts.push(lineChart(`Training loss (${qat.loss ?? "loss"}) and held-out loss per step`, [
        { name: "training batch", points: c.filter((p) => p.step > 0).map((p) => [p.step, p.loss]) },
        { name: "held-out", points: c.filter((p) => p.held_out !== undefined).map((p) => [p.step, p.held_out!]) },
      ]));
      if (qat.held_out) parts.push(table(["held-out loss before", "best", "at step"], [[qat.held_out.before, qat.held_out.best, qat.held_out.bestStep]]));
    }
  }
  const bytes = r.tensors.slice().sort((a, b) => b.bytes - a.bytes).slice(0, 40);
  parts.push(barChart(`Bytes per tensor (largest ${bytes.length})`, bytes.map((t) => ({ label: `${t.name.replace(/^model\./, "")} (${t.kind})`, value: t.bytes }))));
  parts.push(`<h2>Settings</h2><pre>${esc(JSON.stringify({ ...r, tensors: `${r.tensors.length} tensors`, awq: awq ? `${awq.length} blocks` : undefined, qat: qat ? { ...qat, curve: `${qat.curve?.length ?? 0} points` } : undefined }, null, 2))}</pre>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webgpu-quant report: ${esc(r.out)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:820px;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
figure{margin:1.2em 0}figcaption{font-weight:600;margin-bottom:.3em}svg text{font:11px system-ui,sans-serif;fill:#333}svg text.v{fill:#666}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:12px}
</style></head><body>
${parts.join("\n")}
</body></html>
`;
}
