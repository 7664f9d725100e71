import { describe, expect, it } from "vitest";
import { FaultInjectionConfigError, kvFaultFromEnv } from "../src/fault-injection.js";

describe("KV fault injection config", () => {
  it("is off unless TRTD_FAULT_INJECT_KV names a fault", () => {
    expect(kvFaultFromEnv({})).toBeUndefined();
    expect(kvFaultFromEnv({ TRTD_FAULT_INJECT_KV: "" })).toBeUndefined();
    for (const f of ["corrupt", "stall", "peer-gone"]) expect(kvFaultFromEnv({ TRTD_FAULT_INJECT_KV: f })).toBe(f);
  });

  it("refuses an unknown fault with a typed error", () => {
    expect(() => kvFaultFromEnv({ TRTD_FAULT_INJECT_KV: "explode" })).toThrow(FaultInjectionConfigError);
  });
});
