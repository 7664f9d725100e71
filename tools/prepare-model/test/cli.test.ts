import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { validateModelDir } from "@trtd/model";
import { runCli, tempDirs } from "./helpers.js";

const tmp = tempDirs();

describe("prepare-model tiny", () => {
  it("writes a valid tiny model, reports progress as plain lines off a TTY, and validate accepts it", () => {
    const out = join(tmp(), "tiny");
    const r = runCli(["tiny", "--out", out]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/generating tiny \(seed 0, float32\)/);
    expect(r.stderr).toMatch(/^tiny write: 100% \(24\.9 MiB of 24\.9 MiB\)$/m);
    expect(r.stderr).not.toContain("\r");
    expect(r.stderr).toMatch(/tiny generate: 6\.5M parameters in .* s\n/);
    expect(r.stderr).toMatch(/tiny write: wrote 24\.9 MiB in .* s: LlamaForCausalLM, 6\.5M params, hidden 64, 2 layers, 4 heads \/ 2 kv heads/);
    expect(validateModelDir(out).config.hiddenSize).toBe(64);
    const v = runCli(["validate", out]);
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/^ok .*tiny: LlamaForCausalLM.*tokenizer: tiktoken cl100k_base\n$/);
  });

  it("--dtype bfloat16 and --seed change the files", () => {
    const a = join(tmp(), "a");
    expect(runCli(["tiny", "--out", a, "--dtype", "bfloat16", "--seed", "3"]).status).toBe(0);
    const r = validateModelDir(a);
    expect(r.dtypes).toEqual(["BF16"]);
    expect(r.config.torchDtype).toBe("bfloat16");
    expect(JSON.parse(readFileSync(join(a, "config.json"), "utf8")).trtd_generator).toEqual({ preset: "tiny", seed: 3 });
  });

  it("rejects bad options with a clear message and exit code 1", () => {
    const bad = runCli(["tiny", "--out", join(tmp(), "x"), "--dtype", "int8"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--dtype must be float32, float16 or bfloat16, got int8/);
    const noOut = runCli(["small"]);
    expect(noOut.status).toBe(1);
    expect(noOut.stderr).toMatch(/small needs --out DIR/);
    const unknown = runCli(["frobnicate"]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown command frobnicate/);
    expect(unknown.stderr).toMatch(/Usage: prepare-model/);
    const seed = runCli(["tiny", "--out", join(tmp(), "y"), "--seed", "1.5"]);
    expect(seed.status).toBe(1);
    expect(seed.stderr).toMatch(/--seed must be a non-negative integer/);
  });

  it("validate fails with the typed error's name, code and message", () => {
    const r = runCli(["validate", tmp()]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/prepare-model: MissingFileError \[MISSING_FILE\]: model directory .* has no config.json/);
  });
});
