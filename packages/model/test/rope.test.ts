// RoPE settings read the way transformers reads them: every case of fixtures/rope-hf.json is a config.json variant
// (both layouts, each supported rope type) with the inverse frequencies and the cos/sin factor that transformers
// itself computed for it (tools/reference/rope_fixtures.py, transformers 5.18 on CPU). The executors' C++ reader
// follows the same rules; the trtllm suites compare their logits with this reference on such configs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidConfigError, parseModelConfig, ropeAttentionFactor, ropeInverseFrequencies, UnsupportedArchitectureError } from "../src/index.js";

interface Fixture {
  transformers: string;
  base: Record<string, unknown>;
  cases: { name: string; config: Record<string, unknown>; inv_freq: number[]; attention_factor: number }[];
}
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, "fixtures", "rope-hf.json"), "utf8")) as Fixture;

function configJson(extra: Record<string, unknown>): Record<string, unknown> {
  return { architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_act: "silu", torch_dtype: "float32", ...fixture.base, ...extra };
}

describe("RoPE config against transformers' own values", () => {
  it("covers both layouts and every supported type", () => {
    const names = fixture.cases.map((c) => c.name).join("; ");
    for (const t of ["default", "llama3", "linear", "dynamic", "yarn"]) expect(names).toContain(t);
    expect(names).toContain("old layout");
    expect(names).toContain("rope_parameters");
  });

  for (const c of fixture.cases) {
    it(c.name, () => {
      const cfg = parseModelConfig(configJson(c.config));
      const inv = ropeInverseFrequencies(cfg);
      expect(inv.length).toBe(c.inv_freq.length);
      // transformers computes in float32: agreement to float32 precision
      for (let i = 0; i < inv.length; i++) expect(Math.abs(inv[i] - c.inv_freq[i]) / c.inv_freq[i]).toBeLessThan(2e-6);
      expect(ropeAttentionFactor(cfg)).toBeCloseTo(c.attention_factor, 6);
    });
  }
});

describe("RoPE settings that would change the math are refused by name", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["an unknown rope type", { rope_parameters: { rope_type: "longrope", rope_theta: 10000, factor: 2 } }, /rope_type "longrope" is not supported/],
    ["an unknown key", { rope_scaling: { rope_type: "linear", factor: 2, short_factor: [1] } }, /rope_scaling\.short_factor is not supported/],
    ["partial rotation", { rope_theta: 10000, partial_rotary_factor: 0.5 }, /partial_rotary_factor/],
    ["llama3 without its factors", { rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8 } }, /needs "low_freq_factor"/],
    ["linear without a factor", { rope_scaling: { type: "linear" } }, /needs "factor"/],
  ];
  for (const [what, extra, message] of cases) {
    it(what, () => {
      let err: unknown;
      try {
        parseModelConfig(configJson(extra));
      } catch (e) {
        err = e;
      }
      expect(err instanceof UnsupportedArchitectureError || err instanceof InvalidConfigError).toBe(true);
      expect(String((err as Error).message)).toMatch(message);
    });
  }

  it("rope_parameters win over rope_scaling, and its rope_theta over the top level", () => {
    const cfg = parseModelConfig(
      configJson({ rope_theta: 10000, rope_scaling: { type: "linear", factor: 4 }, rope_parameters: { rope_type: "default", rope_theta: 500000 } }),
    );
    expect(cfg.ropeTheta).toBe(500000);
    expect(cfg.ropeScaling).toBeNull();
  });
});
