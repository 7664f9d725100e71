// docker/cluster/compose.yaml cannot be run here (no Docker), so it is checked against the real command lines:
// every trtd service's flags go through the app's own parser, and the cluster wiring (routes, URL lists, KV
// advertise addresses, published port) is consistent.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseApiCli } from "@trtd/api";
import { parseWorkerCli } from "@trtd/apps-common";
import { parseLauncherCli } from "@trtd/launcher";
import { modelDir, repoRoot } from "./support/processes.js";

interface Service {
  image?: string;
  command: string[];
  ports?: string[];
}

const compose = parse(readFileSync(resolve(repoRoot, "docker/cluster/compose.yaml"), "utf8"), { merge: true }) as { services: Record<string, Service> };
const services = Object.entries(compose.services);
/** Paths inside the image (/trtd/...) map to the repository here. */
const local = (argv: string[]) => argv.map((a) => a.replace(/^\/trtd\//, `${repoRoot}/`));
const flag = (argv: string[], name: string) => argv[argv.indexOf(name) + 1];

describe("docker/cluster/compose.yaml", () => {
  const nats = services.filter(([, s]) => s.image?.startsWith("nats:"));
  const trtd = services.filter(([, s]) => s.image === "trtd");
  const role = (r: string) => trtd.filter(([, s]) => s.command[0] === r);

  it("has a 3-node NATS cluster, an api, 2 prefill and 2 decode workers", () => {
    expect(nats.length).toBe(3);
    expect([role("api").length, role("prefill").length, role("decode").length]).toEqual([1, 2, 2]);
  });

  it("routes every NATS node to every other, in one named cluster", () => {
    for (const [name, s] of nats) {
      expect(flag(s.command, "--name")).toBe(name);
      expect(flag(s.command, "--cluster_name")).toBe("trtd");
      const routes = flag(s.command, "--routes").split(",");
      for (const [other] of nats) if (other !== name) expect(routes).toContain(`nats://${other}:6222`);
    }
  });

  it("passes every trtd service's flags through the app's own parser, with the whole cluster as request plane", () => {
    const everyNode = nats.map(([n]) => `nats://${n}:4222`).sort();
    for (const [name, s] of trtd) {
      const [app, ...argv] = s.command;
      const uri = app === "api" ? parseApiCli(local(argv), modelDir).requestPlaneUri : parseWorkerCli(local(argv), modelDir).requestPlaneUri;
      expect(uri.split(",").sort(), name).toEqual(everyNode);
      if (app === "prefill") {
        const cli = parseWorkerCli(local(argv), modelDir);
        // Reachable from the decode containers: listens on all addresses, advertises its own service name.
        expect(cli).toMatchObject({ kvHost: "0.0.0.0", kvAdvertiseHost: name, kvPort: 7400 });
      }
      if (app === "api") {
        const cli = parseApiCli(local(argv), modelDir);
        expect(cli.host).toBe("0.0.0.0");
        expect(s.ports).toContain(`${cli.port}:${cli.port}`);
      }
    }
  });

  it("the launcher commands of docs/design/multi-host.md parse", () => {
    const doc = readFileSync(resolve(repoRoot, "docs/design/multi-host.md"), "utf8");
    const natsList = /^NATS=(\S+)$/m.exec(doc)?.[1];
    expect(natsList).toBeDefined();
    const commands = doc
      .replace(/\\\n/g, " ") // join continued shell lines
      .split("\n")
      .flatMap((l) => /apps\/launcher\/src\/main\.ts (.*)$/.exec(l)?.slice(1) ?? [])
      .map((args) => args.replace(/\$NATS/g, natsList!).trim().split(/\s+/));
    expect(commands.length).toBe(3);
    const parsed = commands.map((argv) => parseLauncherCli(argv, modelDir));
    expect(parsed.map((c) => [c.noApi, c.contextWorkers, c.generateWorkers])).toEqual([[false, 0, 0], [true, 2, 0], [true, 0, 2]]);
    expect(parsed[1]).toMatchObject({ kvHost: "0.0.0.0", kvAdvertiseHost: "10.0.0.2", kvPort: 7400 });
  });
});
