// report.html renders in headless Chromium without errors, with its charts (playwright-core drives
// the system's chromium, installed by scripts/setup; WGQ_CHROMIUM overrides the path).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { chromium } from "playwright-core";
import { reportHtml } from "../../src/ptq/report.ts";
import type { QuantizeReport } from "../../src/ptq/quantize.ts";

function chromiumPath(): string {
  if (process.env.WGQ_CHROMIUM) return process.env.WGQ_CHROMIUM;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("which", [name], { encoding: "utf8" }).trim();
    } catch {
      /* next */
    }
  }
  throw new Error("no chromium found: run 'bash scripts/setup' (installs Debian's chromium) or set WGQ_CHROMIUM");
}

const report: QuantizeReport = {
  model: "models/llama", out: "out/awq <int4>", method: "awq", bits: 4, group_size: 32, sym: false,
  device: "llvmpipe", seconds: { awq: 12.5, quantize: 0.4, write: 0.1, total: 13.2 },
  bytes_in: 1_040_000, bytes_out: 290_000,
  tensors: [{ name: "model.layers.0.mlp.down_proj", kind: "quantized", bytes: 6000 }, { name: "model.embed_tokens.weight", kind: "f32", bytes: 131072 }],
  awq: [0, 1].map((layer) => ({
    layer, seconds: 3.2,
    groups: [{ group: "qkv", alpha: 0.3, loss_rtn: 6e-4, loss_best: 5e-4 }, { group: "gate_up", alpha: 0.5, loss_rtn: 7e-4, loss_best: 7e-4 }],
    clip: [{ linear: "mlp.down_proj", loss_before: 6e-4, loss_after: 5.5e-4 }],
  })),
  eval: { before: { ppl: 3.7, tokens: 1000 }, after: { ppl: 3.9, kl: 0.06, top1: 0.87, tokens: 1000 } },
  qat: {
    mode: "e2e", loss: "kd", held_out: { before: 0.07, best: 0.05, bestStep: 20 },
    curve: Array.from({ length: 31 }, (_, step) => ({ block: null, step, loss: step ? 0.08 / (1 + step / 10) : NaN, ...(step % 10 === 0 ? { held_out: 0.07 - step / 1000 } : {}) })),
  },
};

const dir = mkdtempSync(join(tmpdir(), "wgq-report-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("report.html", () => {
  it("opens in headless Chromium without errors and draws its charts", async () => {
    const file = join(dir, "report.html");
    writeFileSync(file, reportHtml(report));
    const browser = await chromium.launch({
      executablePath: chromiumPath(),
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
      await page.goto(pathToFileURL(file).href);
      expect(await page.title()).toContain("out/awq <int4>");
      const svgs = await page.$$eval("svg", (els) => els.map((e) => { const r = e.getBoundingClientRect(); return [r.width, r.height, e.querySelectorAll("rect, path").length]; }));
      expect(svgs.length).toBeGreaterThanOrEqual(6); // phases, AWQ loss, alpha, clip, QAT loss curve, bytes
      expect(await page.$$eval("svg path", (p) => p.length)).toBeGreaterThanOrEqual(2); // the curve's two series
      for (const [w, h, bars] of svgs) {
        expect(w).toBeGreaterThan(100);
        expect(h).toBeGreaterThan(20);
        expect(bars).toBeGreaterThan(0);
      }
      expect(await page.$$eval("table", (t) => t.length)).toBeGreaterThanOrEqual(3);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
