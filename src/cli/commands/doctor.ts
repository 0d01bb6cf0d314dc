// cli/commands/doctor.ts — `wgq doctor`: what WebGPU device this machine has, and whether the
// project's kernels compute correctly on it (a self-test against the CPU references).

import { Command } from "commander";
import { NoAdapterError } from "../../errors.ts";
import { KernelRegistry } from "../../gpu/kernel.ts";
import { nodeShaderSource } from "../../gpu/shader_source.ts";
import { openDevice, probeAdapter, WANTED_FEATURES } from "../../gpu/device.ts";
import { selfTest } from "../../selftest.ts";

const SHOWN_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

const INTERESTING_WGSL = ["packed_4x8_integer_dot_product", "subgroup_id", "unrestricted_pointer_parameters", "pointer_composite_access"];

export function doctorCommand(): Command {
  return new Command("doctor")
    .description("print the WebGPU adapter, its features and limits, and run the kernel self-test")
    .option("--no-selftest", "only print the device")
    .option("--json", "print one JSON object on stdout")
    .option("--seed <n>", "seed of the self-test inputs (default: fresh each run)", (v) => parseInt(v, 10))
    .addHelpText("after", "\nExamples:\n  wgq doctor\n  WGQ_BACKEND=vulkan wgq doctor --json\n  WGQ_DISABLE_FEATURES=shader-f16 wgq doctor   # exercise the no-f16 paths")
    .action(async (opts: { selftest: boolean; json?: boolean; seed?: number }) => {
      const probe = await probeAdapter();
      if (!probe) throw new NoAdapterError();
      const gpu = await openDevice();
      const limits: Record<string, number> = {};
      for (const k of SHOWN_LIMITS) limits[k] = (gpu.limits as unknown as Record<string, number>)[k];
      const report = {
        adapter: gpu.adapterInfo,
        features: [...gpu.features].sort(),
        requested: WANTED_FEATURES.map((f) => ({ feature: f, enabled: gpu.has(f) })),
        limits,
        wgslLanguageFeatures: [...gpu.wgslFeatures].sort(),
        selftest: opts.selftest ? await selfTest({ gpu, kernels: new KernelRegistry(gpu, nodeShaderSource) }, opts.seed) : null,
      };
      gpu.destroy();
      const failed = report.selftest?.filter((r) => !r.pass) ?? [];
      if (opts.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      } else {
        const a = report.adapter;
        const out: string[] = [];
        out.push(`adapter   ${a.description || a.device} (${a.kind === "cpu" ? "software, runs on the CPU" : "GPU"})`);
        out.push(`          vendor ${a.vendor}, architecture ${a.architecture}, device ${a.device}`);
        out.push(`backend   ${a.backend}${a.subgroupMaxSize ? `; subgroup size ${a.subgroupMinSize}..${a.subgroupMaxSize}` : ""}`);
        out.push(`features  ${report.requested.map((r) => `${r.feature} ${r.enabled ? "yes" : "no"}`).join(", ")}`);
        out.push(`          all: ${report.features.join(", ")}`);
        out.push(`wgsl      ${INTERESTING_WGSL.map((f) => `${f} ${report.wgslLanguageFeatures.includes(f) ? "yes" : "no"}`).join(", ")}`);
        out.push("limits");
        for (const [k, v] of Object.entries(limits)) out.push(`  ${k.padEnd(36)} ${fmtBytes(k, v)}`);
        if (report.selftest) {
          out.push("self-test (GPU vs CPU reference, fresh random inputs)");
          for (const r of report.selftest) {
            out.push(`  ${r.kernel.padEnd(20)} ${r.shape.padEnd(12)} error ${r.error.toExponential(2)} (<= ${r.tolerance.toExponential(0)})  ${r.ms.toFixed(0).padStart(5)} ms  ${r.pass ? "ok" : "FAIL"}`);
          }
          out.push(failed.length ? `${failed.length} self-test kernel(s) FAILED` : "all kernels agree with their CPU references");
        }
        process.stdout.write(out.join("\n") + "\n");
      }
      if (failed.length) process.exitCode = 3;
    });
}

function fmtBytes(name: string, v: number): string {
  if (!/Size$/.test(name) || v < 1 << 20) return String(v);
  return `${v} (${(v / 2 ** 20).toFixed(0)} MiB)`;
}
