import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const WGQ = fileURLToPath(new URL("../../bin/wgq.mjs", import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [WGQ, ...args], { encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 });

describe("wgq doctor", () => {
  it("prints the adapter, limits and a passing self-test, without Dawn's start-up warnings", () => {
    const r = run(["doctor"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^adapter /m);
    expect(r.stdout).toMatch(/maxStorageBufferBindingSize\s+\d+/);
    expect(r.stdout).toMatch(/matmul f16 weights .* ok$/m);
    expect(r.stdout).toMatch(/all kernels agree with their CPU references/);
    expect(r.stderr).not.toMatch(/artificially reduced/);
  });

  it("--json prints one JSON object", () => {
    const r = run(["doctor", "--json", "--seed", "5"]);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(j.selftest.every((row: { pass: boolean }) => row.pass)).toBe(true);
  });

  it("says clearly when there is no adapter, and how to get one (exit 3)", () => {
    if (process.platform !== "linux") return; // hiding the Vulkan drivers is how we remove the adapter here
    const r = run(["doctor"], { VK_ICD_FILENAMES: "/nonexistent/icd.json", VK_DRIVER_FILES: "/nonexistent/icd.json" });
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/no WebGPU adapter found/);
    expect(r.stderr).toMatch(/scripts\/setup/);
  });

  it("a usage error exits 1", () => {
    const r = run(["doctor", "--bogus"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown option/);
  });
});
