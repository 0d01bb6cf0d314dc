// probe_adapter.mjs — prints the WebGPU adapter Dawn finds, as one line; exit 1 when there is none.
// Standalone on purpose (no TypeScript, no project imports): scripts/setup runs it right after `npm ci`.
// Honors the same environment as src/gpu/device.ts: WGQ_BACKEND (Dawn backend=), WGQ_ADAPTER (Dawn adapter=).
import { create, globals } from "webgpu";

Object.assign(globalThis, globals);
const flags = [];
if (process.env.WGQ_BACKEND) flags.push(`backend=${process.env.WGQ_BACKEND}`);
if (process.env.WGQ_ADAPTER) flags.push(`adapter=${process.env.WGQ_ADAPTER}`);
let adapter = null;
try {
  adapter = await create(flags).requestAdapter();
} catch (e) {
  console.error(`no adapter: ${e instanceof Error ? e.message : e}`);
}
if (!adapter) {
  process.exit(1);
}
const i = adapter.info;
console.log(`${i.description || i.device} (vendor ${i.vendor || "?"}, ${i.architecture || "?"})`);
process.exit(0);
