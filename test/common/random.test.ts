// The seeded RNG (src/common/random.ts): the same seed gives the same numbers, in range. No GPU.

import { describe, expect, it } from "vitest";
import { randomF32, rng } from "../../src/common/random.ts";

describe("random", () => {
  it("repeats mulberry32's sequence for a seed", () => {
    const r = rng(1);
    expect([r(), r(), r()]).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
    expect([...randomF32(3, 42)]).toEqual([0.2022075057029724, -0.10341887921094894, 0.7049316167831421]);
    const x = randomF32(10_000, 9, 2, 3);
    expect(Math.min(...x)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...x)).toBeLessThan(3);
  });
});
