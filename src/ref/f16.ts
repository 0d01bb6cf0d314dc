// ref/f16.ts — IEEE binary16 on the CPU, for the tests: the reference for shaders/common/convert.wgsl.
// The codec itself is the host's one (src/common/half.ts: round to nearest even, overflow to ±Inf,
// NaN stays NaN), re-exported here so the tests read their oracles from src/ref.

export { f16ArrayToF32, f16BitsToF32, f32ArrayToF16, f32ToF16Bits } from "../common/half.ts";
