// ref/random.ts — the seeded random numbers of the tests and the self-test: src/common/random.ts
// (mulberry32), re-exported here so the tests read their oracles' inputs from src/ref.

export { randomF32, rng } from "../common/random.ts";
