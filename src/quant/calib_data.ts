// quant/calib_data.ts — calibration text -> token blocks (AutoAWQ recipe, deterministic by seed).

import { packCalibration, readDocuments, tokenizeDocuments, type TokenBlocks } from "../io/data.ts";
import type { TextTokenizer } from "../io/tokenizer.ts";

export async function calibrationBlocks(tok: TextTokenizer, file: string, n: number, L: number, seed: number): Promise<TokenBlocks> {
  const docs = tokenizeDocuments(tok, await readDocuments(file));
  // Documents longer than L are skipped, as AutoAWQ does, unless that leaves too little text.
  try {
    return packCalibration(docs, { n, L, seed, source: file });
  } catch {
    return packCalibration(docs, { n, L, seed, skipLonger: false, source: file });
  }
}
