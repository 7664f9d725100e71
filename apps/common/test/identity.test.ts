import { describe, expect, it } from "vitest";
import { DeploymentIdentity, identityMismatch, parseWorkerIdentity, type WorkerIdentity } from "../src/index.js";

const a: WorkerIdentity = { model: "m1", weights: "w1", tokenizer: "t1", kvLayout: "k1", abi: 3 };

describe("identityMismatch", () => {
  it("matches an equal identity and compares only the fields the deployment fixed", () => {
    expect(identityMismatch(a, { ...a })).toBeUndefined();
    expect(identityMismatch({ tokenizer: "t1" }, { ...a, model: "other" })).toBeUndefined();
  });

  it("names the first differing field as the reason and every differing field in the detail", () => {
    expect(identityMismatch(a, { ...a, model: "m2" })).toEqual({ reason: "model", detail: "model m2 (deployment: m1)" });
    expect(identityMismatch(a, { ...a, kvLayout: "k2", abi: 4 })).toEqual({ reason: "kv_layout", detail: "kvLayout k2 (deployment: k1), abi 4 (deployment: 3)" });
    expect(identityMismatch(a, { ...a, tokenizer: "t2", weights: "w2" })?.reason).toBe("tokenizer");
  });

  it("refuses a missing or malformed identity", () => {
    for (const bad of [undefined, null, "m1", {}, { ...a, abi: "3" }, { ...a, model: "" }]) {
      expect(parseWorkerIdentity(bad)).toBeUndefined();
      expect(identityMismatch({}, bad)?.reason).toBe("missing_identity");
    }
  });
});

describe("DeploymentIdentity", () => {
  it("the first worker that matches the fixed fields fixes the rest; later ones must match all of it", () => {
    const d = new DeploymentIdentity({ model: "m1", tokenizer: "t1" });
    // A worker of another model neither joins nor fixes anything.
    expect(d.check("decode x", { ...a, model: "m2", kvLayout: "kx" })?.reason).toBe("model");
    expect(d.pinnedByWorker).toBeUndefined();
    expect(d.check("decode a", a)).toBeUndefined();
    expect(d.pinnedByWorker).toBe("decode a");
    expect(d.expected).toEqual(a);
    expect(d.check("decode b", { ...a })).toBeUndefined();
    expect(d.check("prefill c", { ...a, kvLayout: "k2" })?.reason).toBe("kv_layout");
    expect(d.check("prefill d", { ...a, abi: 2 })?.reason).toBe("abi");
    expect(d.check("prefill e", { ...a, weights: "w2" })?.reason).toBe("weights");
  });
});
