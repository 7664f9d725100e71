// The sampler against full-sort references, in C++ (native/tests/sampler_check.cpp) so the comparison is on the
// very doubles the library computes: top-k (+ top-p) tokens equal the reference's token for token, top-p alone
// stays inside the reference nucleus with the right draw frequencies; ties, +0/-0, -inf, top_p near 0 and 1.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

describe("sampler vs full-sort reference", () => {
  it("matches over many distributions, parameters and seeds", () => {
    const check = join(import.meta.dirname, "../build/trtd_sampler_check");
    const r = spawnSync(check, [], { encoding: "utf8", timeout: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^ok \d+\n$/);
    expect(Number(r.stdout.split(" ")[1])).toBeGreaterThan(60_000); // every case ran
    expect(r.status).toBe(0);
  }, 130_000);
});
