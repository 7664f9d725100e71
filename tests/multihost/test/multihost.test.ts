// Issue 9: api, prefill and decode on three "hosts" (network namespaces with their own addresses and hostnames),
// a 3-node NATS cluster across them, KV moving over TCP between the hosts. Checks: disaggregated requests end to
// end with the same output as aggregated; the prefill↔decode KV link refused or silently dropped → decode
// recomputes locally, same output; one NATS node killed → service continues within a bound. Skips, saying why,
// where namespaces cannot be made (not root, no iproute2) or nats-server / unshare / ss are missing.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLauncherReadyLine, READY_PATTERNS } from "@trtd/apps-common";
import { findNatsServer } from "@trtd/request-plane";
import { createTopology, namespaceSupport, sweepStaleTopologies, type HostName, type Topology } from "./support/netns.js";
import { appArgv, eventually, launcherArgv, modelDir, startInNamespace, type NsProcess } from "./support/processes.js";

const support = prerequisites();
if (!support.ok) console.warn(`[multihost] SKIPPED: ${support.reason}`);

/** Network namespaces, and the programs run inside them. */
function prerequisites(): { ok: true; natsServer: string } | { ok: false; reason: string } {
  let natsServer: string;
  try {
    natsServer = findNatsServer();
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  for (const tool of ["unshare", "ss"]) {
    if (spawnSync(tool, ["--version"], { timeout: 5000 }).error) return { ok: false, reason: `\`${tool}\` is not installed (util-linux / iproute2)` };
  }
  const ns = namespaceSupport();
  return ns.ok ? { ok: true, natsServer } : ns;
}

const NATS_CLIENT_PORT = 4222;
const NATS_CLUSTER_PORT = 6222;
const NATS_MONITOR_PORT = 8222;
const KV_PORT = 7400; // fixed, as behind a firewall
const API_PORT = 8000; // in the api host's own namespace: nothing else listens there
const AGG_API_PORT = 8001; // a second api with --no-disaggregation: the reference output
const HOSTS: HostName[] = ["api", "prefill", "decode"];

const PROMPTS = [
  "Write a short story about a lighthouse keeper who finds a message in a bottle on a stormy night.",
  "Explain in simple words why the sky looks blue during the day and red at sunset.",
  "List three reasons a team might split prefill and decode onto different machines.",
  "Describe the smell of rain on dry earth to someone who has never experienced it.",
];

interface Completion {
  text: string;
  usage: { prompt_tokens: number; completion_tokens: number };
}

describe.skipIf(!support.ok)("multi-host: three namespaces, a NATS cluster, KV over TCP", () => {
  let topo: Topology;
  const nats = new Map<HostName, NsProcess>();
  const apps: NsProcess[] = [];
  let apiUrl = "";
  let aggUrl = "";
  const reference = new Map<string, string>();

  const natsUrl = (h: HostName) => `nats://${topo.hosts[h].ip}:${NATS_CLIENT_PORT}`;
  /** Every component gets the whole cluster, its own host's node first. */
  const clusterUris = (local: HostName) => [local, ...HOSTS.filter((h) => h !== local)].map(natsUrl).join(",");
  const monitor = (h: HostName, path: string) =>
    fetch(`http://${topo.hosts[h].ip}:${NATS_MONITOR_PORT}${path}`, { signal: AbortSignal.timeout(2000) }).then((r) => r.json() as Promise<any>);

  async function complete(base: string, prompt: string, timeoutMs = 30_000): Promise<Completion> {
    const r = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt, max_tokens: 12, temperature: 0 }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await r.json()) as any;
    if (!r.ok) throw new Error(`HTTP ${r.status}: ${JSON.stringify(body)}`);
    return { text: body.choices[0].text, usage: body.usage };
  }

  async function metric(base: string, sample: string): Promise<number> {
    const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
    return line ? Number(line.slice(sample.length + 1)) : 0;
  }
  const routed = (mode: string) => metric(apiUrl, `trtd_routed_requests_total{mode="${mode}"}`);

  /** TCP connections established between the decode host and the prefill host's KV address. */
  function kvConnections(): string[] {
    const out = topo.execIn("prefill", ["ss", "-Htn", "state", "established", "src", topo.prefillKvIp, "sport", "=", `:${KV_PORT}`]);
    return out.split("\n").filter((l) => l.includes(topo.hosts.decode.ip));
  }

  beforeAll(async () => {
    const stale = sweepStaleTopologies();
    if (stale.length > 0) console.log(`[multihost] removed what a killed earlier run left: ${stale.join(", ")}`);
    topo = createTopology();
    console.log(`[multihost] subnet ${topo.subnet}: api ${topo.hosts.api.ip}, prefill ${topo.hosts.prefill.ip} (KV ${topo.prefillKvIp}), decode ${topo.hosts.decode.ip}`);
    try {
      // A 3-node NATS cluster, one node per host; routes to all other nodes (full mesh).
      const natsStarted = await Promise.allSettled(
        HOSTS.map(async (h) => {
          const ip = topo.hosts[h].ip;
          const routes = HOSTS.filter((o) => o !== h).map((o) => `nats://${topo.hosts[o].ip}:${NATS_CLUSTER_PORT}`).join(",");
          const p = await startInNamespace({
            name: `nats-${h}`,
            ns: topo.hosts[h].ns,
            argv: [(support as { natsServer: string }).natsServer, "-n", `nats-${h}`, "-a", ip, "-p", String(NATS_CLIENT_PORT), "-m", String(NATS_MONITOR_PORT),
              "--cluster_name", "trtd", "--cluster", `nats://${ip}:${NATS_CLUSTER_PORT}`, "--routes", routes],
            ready: /Server is ready/,
            timeoutMs: 15_000,
          });
          nats.set(h, p);
        }),
      );
      const natsFailed = natsStarted.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (natsFailed) throw natsFailed.reason;
      await eventually(async () => (await Promise.all(HOSTS.map((h) => monitor(h, "/routez")))).every((r) => r.num_routes === 2), 15_000, "a full NATS route mesh");

      const common = ["--worker-name", "mh", "--model-dir", modelDir, "--threads", "1"];
      // allSettled: whatever did start is stopped by teardown, even when another part failed.
      const started = await Promise.allSettled([
        // The prefill and decode hosts run the launcher with workers only (--no-api), as in docs/design/multi-host.md.
        startInNamespace({
          name: "prefill-host launcher",
          ns: topo.hosts.prefill.ns,
          hostname: "prefill-host",
          // Listen on every address, advertise only the KV address: cutting that leaves the request plane up.
          argv: launcherArgv([...common, "--no-api", "--context-worker-count", "1", "--generate-worker-count", "0",
            "--request-plane-uri", clusterUris("prefill"), "--kv-host", "0.0.0.0", "--kv-advertise-host", topo.prefillKvIp, "--kv-port", String(KV_PORT), "--kv-offer-ttl-ms", "5000"]),
          ready: READY_PATTERNS.launcher,
        }),
        startInNamespace({
          name: "decode-host launcher",
          ns: topo.hosts.decode.ns,
          hostname: "decode-host",
          // Bare host:port entries work too (nats.js adds the scheme).
          argv: launcherArgv([...common, "--no-api", "--context-worker-count", "0", "--generate-worker-count", "1",
            "--request-plane-uri", clusterUris("decode").replaceAll("nats://", "")]),
          ready: READY_PATTERNS.launcher,
        }),
        // The api host: the launcher with no workers (it is ready once the api sees a decode worker on another host)...
        startInNamespace({
          name: "api-host launcher",
          ns: topo.hosts.api.ns,
          hostname: "api-host",
          argv: launcherArgv(["--worker-name", "mh", "--model-dir", modelDir, "--model-name", "tiny", "--context-worker-count", "0",
            "--generate-worker-count", "0", "--request-plane-uri", clusterUris("api"), "--api-server-host", "0.0.0.0",
            "--api-server-port", String(API_PORT), "--disagg-min-prompt-tokens", "1"]),
          ready: READY_PATTERNS.launcher,
        }),
        // ...and a second api, always aggregated, for the reference outputs.
        startInNamespace({
          name: "aggregated api",
          ns: topo.hosts.api.ns,
          hostname: "api-host",
          argv: appArgv("api", ["--tokenizer", modelDir, "--model-name", "tiny", "--worker-name", "mh", "--request-plane-uri", clusterUris("api"),
            "--api-server-host", "0.0.0.0", "--api-server-port", String(AGG_API_PORT), "--no-disaggregation"]),
          ready: READY_PATTERNS.api,
        }),
      ]);
      for (const r of started) if (r.status === "fulfilled") apps.push(r.value);
      const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
      // Each launcher's ready line says what it runs on its host.
      const runs = (name: string) => {
        const r = parseLauncherReadyLine(apps.find((a) => a.name === name)!.ready[0]);
        return r && { prefill: r.prefillWorkers, decode: r.decodeWorkers, api: r.apiUrl !== undefined };
      };
      expect(runs("prefill-host launcher")).toEqual({ prefill: 1, decode: 0, api: false });
      expect(runs("decode-host launcher")).toEqual({ prefill: 0, decode: 1, api: false });
      expect(runs("api-host launcher")).toEqual({ prefill: 0, decode: 0, api: true });
      apiUrl = `http://${topo.hosts.api.ip}:${API_PORT}`;
      aggUrl = `http://${topo.hosts.api.ip}:${AGG_API_PORT}`;
      await eventually(async () => {
        const h = (await (await fetch(`${apiUrl}/health`, { signal: AbortSignal.timeout(2000) })).json()) as any;
        return h.decodeWorkers >= 1 && h.prefillWorkers >= 1;
      }, 30_000, "the api to see one prefill and one decode worker across hosts");
      for (const p of PROMPTS) {
        const r = await complete(aggUrl, p);
        // Equality below must compare real output: 12 tokens of non-empty text.
        if (r.usage.completion_tokens !== 12 || r.text.length === 0) throw new Error(`unexpected reference output for "${p}": ${JSON.stringify(r)}`);
        reference.set(p, r.text);
      }
    } catch (err) {
      await teardown();
      throw err;
    }
  });

  /** Processes still inside our namespaces (a launcher's children included), recorded before they are deleted. */
  let strays: string[] = [];

  async function teardown() {
    // Launchers stop their api/workers first (they drain), then the NATS nodes go.
    await Promise.all(apps.map((p) => p.stop(20_000)));
    await Promise.all([...nats.values()].map((p) => p.stop(5_000)));
    if (topo) {
      strays = HOSTS.flatMap((h) => {
        try {
          return topo.ip(["netns", "pids", topo.hosts[h].ns]).split("\n").filter(Boolean).map((pid) => `${h}:${pid}`);
        } catch {
          return [];
        }
      });
      for (const s of strays) process.kill(Number(s.split(":")[1]), "SIGKILL"); // never leave them running
    }
    topo?.destroy();
  }

  afterAll(async () => {
    await teardown();
    const alive = [...apps, ...nats.values()].filter((p) => p.isRunning()).map((p) => p.name);
    expect(alive, "processes still running after teardown").toEqual([]);
    expect(strays, "processes left in the namespaces after every part was stopped").toEqual([]);
    if (topo) expect(topo.leftovers(), "namespaces or links left behind").toEqual([]);
  });

  it("runs disaggregated requests end to end, KV over TCP from the prefill host to the decode host", async () => {
    const dis0 = await routed("disaggregated");
    const bytes0 = await metric(apiUrl, 'trtd_kv_transfer_bytes_total{path="tcp"}');
    for (const p of PROMPTS) {
      const r = await complete(apiUrl, p);
      expect(r.text, p).toBe(reference.get(p));
      expect(r.usage.completion_tokens).toBe(12);
    }
    expect(await routed("disaggregated")).toBe(dis0 + PROMPTS.length);
    // Distinct hostnames: no shared memory between the hosts, so the negotiated path is TCP (and /metrics says so).
    expect(await metric(apiUrl, 'trtd_kv_transfer_bytes_total{path="tcp"}')).toBeGreaterThan(bytes0);
    expect(await metric(apiUrl, 'trtd_kv_transfer_bytes_total{path="shm"}')).toBe(0);
    // The prefill worker reports the address it advertises: the KV address, not the host's first one.
    expect(apps.find((a) => a.name === "prefill-host launcher")!.output.join("\n")).toContain(`KV offers at ${topo.prefillKvIp}:${KV_PORT} (listening on 0.0.0.0)`);
    // The puller keeps its connection pooled: it is a TCP connection between the two hosts' addresses.
    expect(kvConnections().length).toBeGreaterThan(0);
  });

  it("falls back to local prefill when the prefill↔decode KV link is cut, with identical output", async () => {
    const dis0 = await routed("disaggregated");
    const rec0 = await routed("recomputed");
    // Only the KV address becomes unreachable from the decode host (fails fast); NATS stays reachable.
    topo.execIn("decode", ["ip", "route", "add", "prohibit", `${topo.prefillKvIp}/32`]);
    try {
      for (const p of PROMPTS.slice(0, 3)) {
        const t0 = Date.now();
        const r = await complete(apiUrl, p, 30_000);
        expect(r.text, p).toBe(reference.get(p));
        expect(Date.now() - t0, "a recomputed request is not held up by the cut link").toBeLessThan(15_000);
      }
      expect(await routed("recomputed")).toBe(rec0 + 3);
      expect(await routed("disaggregated")).toBe(dis0);
    } finally {
      topo.execIn("decode", ["ip", "route", "del", "prohibit", `${topo.prefillKvIp}/32`]);
    }
    // Link back: disaggregation resumes.
    const r = await complete(apiUrl, PROMPTS[3]);
    expect(r.text).toBe(reference.get(PROMPTS[3]));
    expect(await routed("disaggregated")).toBe(dis0 + 1);
    // Offers nobody could pull expire (--kv-offer-ttl-ms 5000): the prefill worker holds no pinned KV.
    await eventually(async () => {
      const pinned = await prefillPinned();
      return pinned.length > 0 && pinned.every((n) => n === 0);
    }, 15_000, "the prefill worker's unpulled offers to expire");
  });

  it("falls back to local prefill on a silent partition of the KV link (packets dropped), within the pull's bounds", async () => {
    const rec0 = await routed("recomputed");
    const dis0 = await routed("disaggregated");
    // The prefill host drops whatever its KV address sends to the decode host (a route on the decode side would
    // fail at once): the decode host hears nothing. The first pull rides the pooled connection (now silent) until
    // its transfer deadline, the second waits out the connect timeout; both then recompute.
    const rule = ["from", topo.prefillKvIp, "to", topo.hosts.decode.ip, "blackhole"];
    topo.execIn("prefill", ["ip", "rule", "add", ...rule]);
    const took: number[] = [];
    try {
      for (const p of PROMPTS.slice(0, 2)) {
        const t0 = Date.now();
        expect((await complete(apiUrl, p, 30_000)).text, p).toBe(reference.get(p));
        took.push(Date.now() - t0);
      }
    } finally {
      topo.execIn("prefill", ["ip", "rule", "del", ...rule]);
    }
    console.log(`[multihost] requests during the silent partition took ${took.join(" and ")} ms`);
    for (const ms of took) expect(ms).toBeLessThan(20_000);
    expect(await routed("recomputed")).toBe(rec0 + 2);
    expect(await routed("disaggregated")).toBe(dis0);
    expect((await complete(apiUrl, PROMPTS[2])).text).toBe(reference.get(PROMPTS[2]));
    expect(await routed("disaggregated")).toBe(dis0 + 1);
  });

  /** The pinned-KV-exports gauge of each prefill instance, as the api sees them. */
  async function prefillPinned(): Promise<number[]> {
    const text = await (await fetch(`${apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    return [...text.matchAll(/^trtd_worker_pinned_kv_exports\{component="prefill",instance="[^"]+"\} (\S+)$/gm)].map((m) => Number(m[1]));
  }

  it("keeps serving when a NATS node dies (clients fail over to the other nodes)", async () => {
    // Kill the node that carries the most of our clients, so that failover really happens.
    const clientsOn = async (h: HostName) => ((await monitor(h, "/connz")).connections as Array<{ name?: string }>).filter((c) => c.name?.startsWith("trtd-")).length;
    const counts = await Promise.all(HOSTS.map(async (h) => [h, await clientsOn(h)] as const));
    const [victim, carried] = counts.reduce((a, b) => (b[1] > a[1] ? b : a));
    expect(carried).toBeGreaterThan(0);
    console.log(`[multihost] NATS clients per node: ${counts.map(([h, n]) => `${h}=${n}`).join(" ")}; killing nats-${victim}`);
    await nats.get(victim)!.kill();

    // Bounded recovery: the first request that succeeds after the kill.
    const t0 = Date.now();
    let recovered = false;
    let lastError = "";
    while (!recovered && Date.now() - t0 < 20_000) {
      try {
        const r = await complete(apiUrl, PROMPTS[0], 10_000);
        expect(r.text).toBe(reference.get(PROMPTS[0]));
        recovered = true;
      } catch (err) {
        lastError = (err as Error).message;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    expect(recovered, `no successful request within 20 s of the kill (last error: ${lastError})`).toBe(true);
    console.log(`[multihost] first success ${Date.now() - t0} ms after killing nats-${victim}`);

    // Disaggregation resumes once every client is back and announced (a worker whose connection was moving
    // may have missed a request meanwhile: the router then ran it aggregated). Then steady disaggregated service.
    const seen: string[] = []; // every output while waiting must still be the reference (eventually() swallows throws)
    await eventually(async () => {
      const before = await routed("disaggregated");
      seen.push((await complete(apiUrl, PROMPTS[1])).text);
      return (await routed("disaggregated")) === before + 1;
    }, 20_000, "requests to run disaggregated again after the NATS node died");
    expect(new Set(seen)).toEqual(new Set([reference.get(PROMPTS[1])]));
    console.log(`[multihost] disaggregated again ${Date.now() - t0} ms after the kill (prefill fallbacks so far: ${await metric(apiUrl, "trtd_prefill_fallbacks_total")})`);
    const dis1 = await routed("disaggregated");
    for (const p of PROMPTS) expect((await complete(apiUrl, p)).text, p).toBe(reference.get(p));
    expect(await routed("disaggregated")).toBe(dis1 + PROMPTS.length);
    const survivors = HOSTS.filter((h) => h !== victim);
    await eventually(async () => (await Promise.all(survivors.map(clientsOn))).reduce((a, b) => a + b, 0) === 4, 10_000,
      "all four clients (2 apis, prefill, decode) on the surviving nodes");
  });
});
