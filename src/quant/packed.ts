// quant/packed.ts — a packed int4/int8 weight resident on the GPU (the canonical layout of
// src/quant/formats.ts in GPU tensors): allocation, upload, readback and release. Producers
// (src/quant/rtn.ts quantizeRtn, a loaded checkpoint) and consumers (src/quant/matmul.ts qmatmul,
// src/quant/kmajor.ts) share this type.

import type { Gpu } from "../gpu/device.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { groupsPerRow, type HostPackedWeight, type PackedWeight, type QuantSpec, wordsPerRow, zeroWordsPerRow } from "./formats.ts";

/** A packed weight resident on the GPU: qweight u32 [N, KW], scales f16 [N, ng], zeros u32 [N, ZW] | null. */
export type GpuPackedWeight = PackedWeight<GpuTensor> & { label: string };

/** Zero-filled GPU tensors for a packed weight of `spec`, labelled `<label>.qweight` etc. */
export function emptyPacked(gpu: Gpu, spec: QuantSpec, label: string): GpuPackedWeight {
  const { N } = spec;
  const qweight = GpuTensor.empty(gpu, [N, wordsPerRow(spec)], "u32", `${label}.qweight`);
  const scales = GpuTensor.empty(gpu, [N, groupsPerRow(spec)], "f16", `${label}.scales`);
  const zeros = spec.sym ? null : GpuTensor.empty(gpu, [N, zeroWordsPerRow(spec)], "u32", `${label}.zeros`);
  return { ...spec, qweight, scales, zeros, label };
}

/** Uploads a host packed weight (e.g. from src/ref/quant.ts or a saved file). */
export function uploadPacked(gpu: Gpu, p: HostPackedWeight, label: string): GpuPackedWeight {
  const spec: QuantSpec = { bits: p.bits, N: p.N, K: p.K, G: p.G, sym: p.sym };
  const { N } = spec;
  const ng = groupsPerRow(spec);
  const qweight = GpuTensor.fromHost(gpu, p.qweight, [N, wordsPerRow(spec)], "u32", `${label}.qweight`);
  const halves = new Uint16Array(p.scales.buffer, p.scales.byteOffset, N * ng);
  const scales = GpuTensor.fromHost(gpu, halves, [N, ng], "f16", `${label}.scales`);
  const zeros = p.zeros ? GpuTensor.fromHost(gpu, p.zeros, [N, zeroWordsPerRow(spec)], "u32", `${label}.zeros`) : null;
  return { ...spec, qweight, scales, zeros, label };
}

/** Reads a packed weight back to the host (words exactly as stored; a trailing pad half of scales is 0). */
export async function downloadPacked(p: GpuPackedWeight): Promise<HostPackedWeight> {
  const qweight = (await p.qweight.toHost()) as Uint32Array;
  const halves = (await p.scales.toHost()) as Uint16Array;
  const scales = new Uint32Array(Math.ceil(halves.length / 2));
  new Uint16Array(scales.buffer).set(halves);
  const zeros = p.zeros ? ((await p.zeros.toHost()) as Uint32Array) : null;
  return { bits: p.bits, N: p.N, K: p.K, G: p.G, sym: p.sym, qweight: qweight.slice(), scales, zeros: zeros?.slice() ?? null };
}

/** Destroys the tensors of a packed weight (idempotent). */
export function destroyPacked(p: GpuPackedWeight): void {
  p.qweight.destroy();
  p.scales.destroy();
  p.zeros?.destroy();
}
