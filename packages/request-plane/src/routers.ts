import type { InstanceInfo } from "./discovery.js";

/**
 * Picks the instance for a request from the live instances (never empty when called). Returns an instance
 * or its id; `undefined` falls back to the endpoint's queue group (NATS picks). This is where load-aware and
 * KV-aware routing plug in: the router decides, the client sends.
 */
export type InstanceChooser<Req = unknown> = (instances: readonly InstanceInfo[], request: Req) => InstanceInfo | string | undefined;

/** Built-in modes: client-side round-robin or random over discovered instances, or the NATS queue group. */
export type RouterMode = "round-robin" | "random" | "queue";

export function roundRobin(): InstanceChooser {
  let next = 0;
  return (instances) => instances[next++ % instances.length];
}

export function random(): InstanceChooser {
  return (instances) => instances[Math.floor(Math.random() * instances.length)];
}

/** Least value of a numeric metric (default `activeRequests`); ties go round-robin. */
export function leastLoaded(metric = "activeRequests"): InstanceChooser {
  let turn = 0;
  return (instances) => {
    let best: InstanceInfo[] = [];
    let bestValue = Infinity;
    for (const i of instances) {
      const raw = i.metrics[metric];
      const v = typeof raw === "number" && Number.isFinite(raw) ? raw : Infinity;
      if (v < bestValue) {
        bestValue = v;
        best = [i];
      } else if (v === bestValue) best.push(i);
    }
    if (best.length === 0) best = [...instances];
    return best[turn++ % best.length];
  };
}
