import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getEncoding } from "js-tiktoken";
import { afterAll, describe, expect, it } from "vitest";
import {
  createRandom,
  InvalidDistributionError,
  parseLengthDistribution,
  PROMPT_WORDS,
  promptsFileDataset,
  PromptsFileError,
  randomDataset,
} from "../src/index.js";

describe("length distributions", () => {
  it("parses fixed, uniform, normal and lognormal; samples stay in range with the right mean", () => {
    const rng = createRandom(1);
    expect(parseLengthDistribution("128").sample(rng)).toBe(128);
    expect(parseLengthDistribution("fixed:64").sample(rng)).toBe(64);
    const u = parseLengthDistribution("uniform:10:20");
    const us = Array.from({ length: 5000 }, () => u.sample(rng));
    expect(Math.min(...us)).toBe(10);
    expect(Math.max(...us)).toBe(20);
    expect(us.reduce((a, b) => a + b, 0) / us.length).toBeCloseTo(15, 0);
    const n = parseLengthDistribution("normal:200:20");
    const ns = Array.from({ length: 5000 }, () => n.sample(rng));
    expect(Math.abs(ns.reduce((a, b) => a + b, 0) / ns.length - 200)).toBeLessThan(2);
    const ln = parseLengthDistribution("lognormal:100:0.5");
    const ls = Array.from({ length: 5000 }, () => ln.sample(rng)).sort((a, b) => a - b);
    expect(Math.abs(ls[2500] - 100)).toBeLessThan(5); // median
    expect(ls[0]).toBeGreaterThanOrEqual(1);
  });

  it("rejects malformed specs with InvalidDistributionError", () => {
    for (const bad of ["", "abc", "uniform:5", "uniform:9:3", "fixed:0", "fixed:1.5", "normal:x:1", "zipf:1:2", "uniform:1:2:3"]) {
      expect(() => parseLengthDistribution(bad), bad).toThrow(InvalidDistributionError);
    }
  });
});

describe("datasets", () => {
  it("every prompt word is one cl100k_base token after a space, so N words are N tokens", () => {
    const enc = getEncoding("cl100k_base");
    for (const w of PROMPT_WORDS) expect(enc.encode(" " + w).length, w).toBe(1);
    const [req] = randomDataset({ count: 1, input: parseLengthDistribution("300"), output: parseLengthDistribution("8"), seed: 3 });
    // The first word has no leading space and may split; the rest are exact.
    expect(Math.abs(enc.encode(req.prompt).length - 300)).toBeLessThanOrEqual(1);
  });

  it("random dataset is reproducible per seed and follows the length distributions", () => {
    const opts = { count: 20, input: parseLengthDistribution("uniform:5:9"), output: parseLengthDistribution("uniform:2:4"), seed: 9 };
    const a = randomDataset(opts);
    expect(randomDataset(opts)).toEqual(a);
    for (const r of a) {
      expect(r.prompt.split(" ").length).toBe(r.targetInputTokens);
      expect(r.targetInputTokens).toBeGreaterThanOrEqual(5);
      expect(r.targetInputTokens).toBeLessThanOrEqual(9);
      expect(r.maxTokens).toBeGreaterThanOrEqual(2);
      expect(r.maxTokens).toBeLessThanOrEqual(4);
    }
    expect(new Set(a.map((r) => r.prompt)).size).toBe(20);
  });

  const dir = mkdtempSync(join(tmpdir(), "bench-prompts-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads JSONL and plain-text prompts files, cycling prompts to the count", () => {
    const f = join(dir, "p.jsonl");
    writeFileSync(f, '{"prompt": "hello there", "max_tokens": 5}\n\n{"prompt": "second"}\n');
    const ds = promptsFileDataset(f, 3, parseLengthDistribution("7"));
    expect(ds).toEqual([
      { prompt: "hello there", maxTokens: 5 },
      { prompt: "second", maxTokens: 7 },
      { prompt: "hello there", maxTokens: 5 },
    ]);
    const t = join(dir, "p.txt");
    writeFileSync(t, "one prompt\r\nanother prompt\n");
    expect(promptsFileDataset(t, 2, parseLengthDistribution("3")).map((r) => r.prompt)).toEqual(["one prompt", "another prompt"]);
  });

  it("reports unreadable, empty and malformed prompts files with PromptsFileError and the line", () => {
    const out = parseLengthDistribution("3");
    expect(() => promptsFileDataset(join(dir, "missing.txt"), 1, out)).toThrow(PromptsFileError);
    writeFileSync(join(dir, "empty.txt"), "\n\n");
    expect(() => promptsFileDataset(join(dir, "empty.txt"), 1, out)).toThrow(/no prompts/);
    writeFileSync(join(dir, "bad.jsonl"), '{"prompt": "ok"}\n{"prompt": 3}\n');
    expect(() => promptsFileDataset(join(dir, "bad.jsonl"), 1, out)).toThrow(/bad.jsonl:2/);
    writeFileSync(join(dir, "bad2.jsonl"), '{"prompt": "x", "max_tokens": -1}\n');
    expect(() => promptsFileDataset(join(dir, "bad2.jsonl"), 1, out)).toThrow(/max_tokens/);
    writeFileSync(join(dir, "bad3.jsonl"), "{not json\n");
    expect(() => promptsFileDataset(join(dir, "bad3.jsonl"), 1, out)).toThrow(/not valid JSON/);
  });
});
