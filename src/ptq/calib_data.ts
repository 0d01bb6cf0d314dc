// ptq/calib_data.ts — calibration text -> token blocks (AutoAWQ recipe, deterministic by seed).

import { packCalibrationFallback, readDocuments, tokenizeDocuments, type CalibOptionNames, type TokenBlocks } from "../io/data.ts";
import type { TextTokenizer } from "../io/tokenizer.ts";

/**
 * (tokenizer, text file, n blocks, L tokens, seed) -> n×L calibration tokens. Documents longer than
 * L are skipped, as AutoAWQ does, unless that leaves too little text. `options` names the command's
 * options for the two counts, so a text too short for them is reported in the user's terms.
 */
export async function calibrationBlocks(
  tok: TextTokenizer, file: string, n: number, L: number, seed: number,
  options: CalibOptionNames = { samples: "--samples", seqLen: "--seq-len" },
): Promise<TokenBlocks> {
  const docs = tokenizeDocuments(tok, await readDocuments(file));
  return packCalibrationFallback(docs, { n, L, seed, source: file, options });
}
