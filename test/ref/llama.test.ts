// The CPU reference forward pass checked against cases worked out by hand.
import { describe, expect, it } from "vitest";
import { attentionRef, embedRef, linearRef, lossRef, rmsnormRef, ropeRef, siluRef } from "../../src/ref/llama.ts";
import { ropeInvFreq } from "../../src/model/rope.ts";

describe("CPU reference ops, hand-checked", () => {
  it("rmsnorm: [3, 4] with gain [1, 2] -> [3, 8] / sqrt(12.5)", () => {
    const y = rmsnormRef(new Float32Array([3, 4]), new Float32Array([1, 2]), 1, 2, 0);
    expect(y[0]).toBeCloseTo(3 / Math.sqrt(12.5), 6);
    expect(y[1]).toBeCloseTo(8 / Math.sqrt(12.5), 6);
  });

  it("rope: the pair (1, 0) at position 1 with frequency 1 turns by one radian; position 0 is the identity", () => {
    const x = new Float32Array([1, 0, 0.5, -2]); // two tokens, one head, D = 2
    ropeRef(x, 2, 1, 2, 0, new Float32Array([1]));
    expect(Array.from(x.subarray(0, 2))).toEqual([1, 0]);
    expect(x[2]).toBeCloseTo(0.5 * Math.cos(1) + 2 * Math.sin(1), 6);
    expect(x[3]).toBeCloseTo(-2 * Math.cos(1) + 0.5 * Math.sin(1), 6);
  });

  it("rope frequencies: theta^(-2i/D); llama3 scaling divides the low frequencies by the factor", () => {
    const f = ropeInvFreq({ headDim: 4, ropeTheta: 10000, ropeScaling: null });
    expect(f[0]).toBe(1);
    expect(f[1]).toBeCloseTo(0.01, 8);
    const g = ropeInvFreq({ headDim: 4, ropeTheta: 10000, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 } });
    expect(g[0]).toBe(1); // wavelength 2π < 64/4: unchanged
    expect(g[1]).toBeCloseTo(0.01 / 8, 8); // wavelength 628 > 64: divided by 8
  });

  it("attention: the first token sees itself; the second weighs scores (0, ln 3) as 1/4, 3/4", () => {
    const q = new Float32Array([1, 1]);
    const k = new Float32Array([0, Math.log(3)]);
    const v = new Float32Array([2, 6]);
    const o = attentionRef(q, k, v, 2, 1, 1, 1, 0);
    expect(o[0]).toBeCloseTo(2, 6);
    expect(o[1]).toBeCloseTo(0.25 * 2 + 0.75 * 6, 6);
  });

  it("loss: logits (0, ln 3) and target 1 give NLL ln(4/3); KL to itself is 0", () => {
    const l = new Float32Array([0, Math.log(3), 5, 5]);
    const rows = lossRef(l, [0, 1], 2, 2, l);
    expect(rows.length).toBe(1);
    expect(rows[0].nll).toBeCloseTo(Math.log(4 / 3), 6);
    expect(rows[0].kl).toBeCloseTo(0, 12);
    expect(rows[0].top1).toBe(1);
  });

  it("silu, embedding and linear", () => {
    expect(siluRef(1)).toBeCloseTo(1 / (1 + Math.exp(-1)), 12);
    expect(Array.from(embedRef(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 0], 2))).toEqual([5, 6, 1, 2]);
    expect(Array.from(linearRef(new Float32Array([1, 2]), new Float32Array([3, 4, 5, 6]), 1, 2, 2, new Float32Array([0.5, -1])))).toEqual([11.5, 16]);
  });
});
