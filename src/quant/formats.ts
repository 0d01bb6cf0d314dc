// quant/formats.ts — the canonical packed layouts of quantized weights, documented once here and
// mirrored in the headers of shaders/quant/*.wgsl. This is what is saved, exported and consumed by
// every kernel; a kernel may repack at load time, never the saved bytes. Pure layout arithmetic:
// no GPU, no I/O.
//
// A linear weight W[N, K] (N outputs, K inputs; y = x · Wᵀ) is quantized along K.
//
// int4, group size G (G % 8 == 0; 32, 64, 128 in practice), ng = ceil(K / G) groups per row
// (the last group is shorter when K % G != 0: stories260K's K = 172 with G = 32 ends in 12):
//   qweight  u32 [N][ceil(K/8)]       row n, element k at bits 4·(k % 8) of word n·ceil(K/8) + k/8
//                                      (ONNX Runtime MatMulNBits nibble order: element 2i is the low
//                                      nibble of byte i); nibbles past K in a row's last word are 0.
//   scales   f16 [N][ng] flat          element i = n·ng + g stored two per u32: bits 16·(i % 2) of word
//                                      i/2 (the bytes of a plain little-endian f16 array; read with
//                                      unpack2x16float, no shader-f16 needed). A trailing pad half is 0.
//   zeros    u32 [N][ceil(ng/8)]       asymmetric only: zero point of group g of row n at bits 4·(g % 8)
//                                      of word n·ceil(ng/8) + g/8 (nibble order as qweight); pads 0.
//   asymmetric (AutoAWQ):  q ∈ 0..15, z ∈ 0..15, w ≈ (q − z) · s
//   symmetric:             levels −8..7 stored as q + 8 (nibble 0..15), no zeros tensor, implicit
//                          zero 8 (ONNX Runtime's default), w ≈ (nibble − 8) · s
// int3 is stored exactly as int4 (same words, scales, zeros) with levels 0..7 (asym, s from
// (max − min)/7) or −4..3 (sym, s = max|w|/3, stored + 8): every int4 kernel reads it unchanged.
// int8, per output channel, symmetric:
//   qweight  u32 [N][ceil(K/4)]       element k as two's-complement i8 in bits 8·(k % 4) of word k/4;
//                                      bytes past K are 0; levels −127..127
//   scales   f16 [N] (two per u32, as above), one per row; no zeros. w ≈ q · s
//
// Compatibility: when K % G == 0, qweight and scales are byte-identical to ONNX Runtime
// MatMulNBits' B [N][K/G][G/2] u8 and scales [N·K/G]; our zeros pad each row to a u32 word
// (ORT pads to a byte), so they match ORT's zero_points when ng % 8 == 0.
//
// Scale and rounding rules (src/ref/quant.ts is the executable definition):
//   rounding is round-half-to-even of the exact real quotient (numpy rint / WGSL round semantics,
//   with the GPU fixing up its f32 division exactly, so GPU and CPU agree bit for bit).
//   asym int4: s = f16(max((max − min) / 15, 1e-5)),  z = clamp(rint(−min / s), 0, 15),
//              q = clamp(rint(w / s) + z, 0, 15)
//   sym int4:  s = f16(max|w| / 7),   q = clamp(rint(w / s), −8, 7)      (s = 0 → q = 0)
//   int8:      s = f16(max|w| / 127), q = clamp(rint(w / s), −127, 127) (s = 0 → q = 0)
// where f16(v) rounds the exact value v to the nearest binary16 (ties to even); the quantizer
// uses that rounded scale, so dequantization with the stored scale is exactly what was rounded.

import { UsageError } from "../errors.ts";

/** 8: int8 per channel; 4 and 3: group-wise, both stored in the int4 layout (int3 uses levels 0..7). */
export type QuantBits = 3 | 4 | 8;

/** Shape and scheme of one quantized weight W[N, K]. */
export interface QuantSpec {
  bits: QuantBits;
  /** Output features (rows of W). */
  N: number;
  /** Input features (columns of W). */
  K: number;
  /** Group size along K (int8: K, one group per row). */
  G: number;
  /** Symmetric (implicit zero point); int8 is always symmetric. */
  sym: boolean;
}

/** A packed tensor set in the canonical layout, on the host (Uint32Array words) or the GPU. */
export interface PackedWeight<T> extends QuantSpec {
  /** u32 [N][wordsPerRow] */
  qweight: T;
  /** f16 [N][ng] flat, two per u32 word */
  scales: T;
  /** u32 [N][zeroWordsPerRow]; null when sym */
  zeros: T | null;
}

export type HostPackedWeight = PackedWeight<Uint32Array>;

/** Group sizes the int4 quantizer accepts. */
export const INT4_GROUP_SIZES = [32, 64, 128] as const;

/** Checks a spec and returns it normalised (int8: G = K, sym = true). Throws UsageError. */
export function quantSpec(bits: number, N: number, K: number, G: number | undefined, sym: boolean): QuantSpec {
  if (!Number.isSafeInteger(N) || !Number.isSafeInteger(K) || N < 1 || K < 1) {
    throw new UsageError(`bad weight shape [${N}, ${K}]`);
  }
  if (bits === 8) return { bits: 8, N, K, G: K, sym: true };
  if (bits !== 4 && bits !== 3) throw new UsageError(`unsupported bit width ${bits}`, "use --bits 3, 4 or 8 (16 is a plain fp16 cast)");
  if (G === undefined || !Number.isSafeInteger(G) || G < 8 || G % 8 !== 0) {
    throw new UsageError(`int4 group size ${G} is not a positive multiple of 8`, `use one of ${INT4_GROUP_SIZES.join(", ")}`);
  }
  return { bits, N, K, G, sym };
}

/** Values per u32 word: 8 for int4 (and int3, stored as int4), 4 for int8. */
export function valuesPerWord(bits: QuantBits): number {
  return bits === 8 ? 4 : 8;
}

/** Largest code of a group-wise format: asymmetric levels 0..maxq; symmetric −(maxq+1)..maxq. */
export function maxCode(bits: QuantBits, sym: boolean): number {
  return sym ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
}

/** u32 words per row of qweight: ceil(K / valuesPerWord). */
export function wordsPerRow(s: Pick<QuantSpec, "bits" | "K">): number {
  return Math.ceil(s.K / valuesPerWord(s.bits));
}

/** Groups per row: ceil(K / G) (int8: 1). */
export function groupsPerRow(s: Pick<QuantSpec, "bits" | "K" | "G">): number {
  return s.bits === 8 ? 1 : Math.ceil(s.K / s.G);
}

/** u32 words per row of zeros: ceil(ng / 8) (asymmetric int4 only). */
export function zeroWordsPerRow(s: Pick<QuantSpec, "bits" | "K" | "G">): number {
  return Math.ceil(groupsPerRow(s) / 8);
}

/** Byte sizes of each tensor of the packed set (payload, unpadded) and their sum. */
export function packedBytes(s: QuantSpec): { qweight: number; scales: number; zeros: number; total: number } {
  const qweight = s.N * wordsPerRow(s) * 4;
  const scales = s.N * groupsPerRow(s) * 2;
  const zeros = s.sym ? 0 : s.N * zeroWordsPerRow(s) * 4;
  return { qweight, scales, zeros, total: qweight + scales + zeros };
}

/** Bits per weight including scales and zeros (the "effective bpw" of a report). */
export function bitsPerWeight(s: QuantSpec): number {
  return (packedBytes(s).total * 8) / (s.N * s.K);
}

/** A short name for labels and reports: "int4-asym-g128", "int4-sym-g32", "int8-sym". */
export function specName(s: QuantSpec): string {
  return s.bits === 8 ? "int8-sym" : `int${s.bits}-${s.sym ? "sym" : "asym"}-g${s.G}`;
}
