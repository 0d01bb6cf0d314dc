// train/export.ts — trained (W, s, z) -> the packed format of the quantization core
// (src/quant/formats.ts): scales rounded to f16, codes clamp(round(w / s) + z) with the packed
// quantizer's levels, so `wgq eval` and `wgq generate` run a QAT model unchanged.

import { f16BitsToF32, f64ToF16Bits, rint } from "../common/half.ts";
import { TensorError } from "../errors.ts";
import { groupsPerRow, maxCode, quantSpec, type HostPackedWeight, type QuantBits } from "../quant/formats.ts";
import { packCodes } from "../quant/pack.ts";
import type { TrainedLinear } from "./qat.ts";

export function packTrained(t: TrainedLinear, bits: QuantBits, groupSize: number, sym: boolean): HostPackedWeight {
  const spec = quantSpec(bits, t.N, t.K, groupSize, sym);
  const { N, K } = spec;
  const ng = groupsPerRow(spec);
  const G = spec.bits === 8 ? K : spec.G;
  const maxq = maxCode(spec.bits, spec.sym);
  const codes = new Int32Array(N * K);
  const scales = new Uint16Array(N * ng);
  const zeros = sym || bits === 8 ? null : new Uint8Array(N * ng);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < ng; g++) {
      const i = n * ng + g;
      const sv = Math.abs(t.s[i]);
      if (!Number.isFinite(sv)) throw new TensorError(t.name, `row ${n} group ${g}: step size ${t.s[i]} is not finite`);
      const bitsS = f64ToF16Bits(sv);
      if (bitsS >= 0x7c00) throw new TensorError(t.name, `row ${n} group ${g}: step size ${sv} overflows f16`);
      scales[i] = bitsS;
      const s = f16BitsToF32(bitsS);
      const z = zeros ? Math.min(maxq, Math.max(0, Math.round(t.z[i]))) : 0;
      if (zeros) zeros[i] = z;
      for (let k = g * G; k < Math.min(K, (g + 1) * G); k++) {
        const v = t.w[n * K + k];
        let q: number;
        if (zeros) q = s === 0 ? z : Math.min(maxq, Math.max(0, rint(v / s) + z));
        else if (bits !== 8) q = s === 0 ? 8 : Math.min(maxq, Math.max(-maxq - 1, rint(v / s))) + 8;
        else q = s === 0 ? 0 : Math.min(127, Math.max(-127, rint(v / s)));
        codes[n * K + k] = q;
      }
    }
  }
  return packCodes({ spec, codes, scales, zeros });
}
