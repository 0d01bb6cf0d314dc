// model/rope.ts — RoPE inverse frequencies as Hugging Face computes them, scaling included
// (linear: positions / factor; llama3: the wavelength-banded rescale of Llama 3.1).

import type { LlamaConfig } from "./config.ts";

/** config -> inv_freq [headDim / 2], radians per position. */
export function ropeInvFreq(c: Pick<LlamaConfig, "headDim" | "ropeTheta" | "ropeScaling">): Float32Array {
  const half = c.headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    let f = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
    const s = c.ropeScaling;
    if (s?.type === "linear") f /= s.factor;
    if (s?.type === "llama3") {
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) f /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
    out[i] = f;
  }
  return out;
}
