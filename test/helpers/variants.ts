// test/helpers/variants.ts — which kernel variants a test ran, which it skipped and why.
// A variant the device lacks is skipped, never silently: check() prints both lists and fails
// when nothing ran, so a device (or a bug in an *Unavailable function) that refuses every variant
// cannot pass the test by running none.
import { expect } from "vitest";

export class VariantRuns {
  readonly ran = new Set<string>();
  /** variant -> why it did not run (the first reason seen). */
  readonly skipped = new Map<string, string>();

  constructor(readonly what: string) {}

  /**
   * `why`: the variant's unavailability reason (null when it can run). Returns true when the
   * variant runs (and records it as run); false, recording the reason, when it is skipped.
   */
  take(variant: string, why: string | null | undefined): boolean {
    if (why) {
      if (!this.skipped.has(variant)) this.skipped.set(variant, why);
      return false;
    }
    this.ran.add(variant);
    return true;
  }

  /** Prints what ran and what was skipped (with the reasons); fails when nothing ran. */
  check(): void {
    const skipped = [...this.skipped].filter(([v]) => !this.ran.has(v)).map(([v, why]) => `${v} (${why})`);
    const partly = [...this.skipped].filter(([v]) => this.ran.has(v)).map(([v, why]) => `${v} (${why})`);
    console.log(`${this.what}: ran ${[...this.ran].join(", ") || "nothing"}; skipped ${skipped.join(", ") || "none"}${partly.length ? `; skipped for some shapes: ${partly.join(", ")}` : ""}`);
    expect([...this.ran], `${this.what}: no kernel variant ran (skipped: ${skipped.join("; ") || "none"})`).not.toEqual([]);
  }
}
