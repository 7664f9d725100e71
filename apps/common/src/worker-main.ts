// The process entry both workers share: flags, request-plane connection, start, the one ready line, graceful stop.
import { connect, type RequestPlane } from "@trtd/request-plane";
import { UsageError } from "./cli.js";
import { makeLogger, onShutdownSignal } from "./lifecycle.js";
import { parseWorkerCli, workerUsage, type WorkerCli } from "./worker-cli.js";
import { Endpoints } from "./protocol.js";
import { workerReadyLine } from "./ready-line.js";
import { natsAuthFromEnv, natsInboxPrefix } from "./nats-auth.js";
import { reportHealthToSupervisor } from "./supervision.js";
import type { RunningWorker, WorkerRole } from "./worker-runtime.js";

export type StartWorker = (cli: WorkerCli, plane: RequestPlane, log: (line: string) => void) => Promise<RunningWorker>;

/** Runs a worker process until SIGINT/SIGTERM; exits 2 on bad flags or a failed start. */
export function runWorkerProcess(role: WorkerRole, defaultModelDir: string, start: StartWorker, argv = process.argv.slice(2)): void {
  const main = async () => {
    const cli = parseWorkerCli(argv, defaultModelDir);
    if (cli.help) {
      console.log(workerUsage(role));
      return;
    }
    const log = makeLogger(role);
    const plane = await connect(cli.requestPlaneUri, { name: `trtd-${role}`, inboxPrefix: natsInboxPrefix(cli.namespace, role), directLink: cli.directLink, ...natsAuthFromEnv() });
    let worker: RunningWorker;
    try {
      worker = await start(cli, plane, log);
    } catch (err) {
      await plane.close();
      throw err;
    }
    // The ready line on stdout (ready-line.ts; the launcher waits for it, prefixes and shows it).
    console.log(workerReadyLine({ role, instanceId: worker.instanceId, namespace: cli.namespace, ...Endpoints[role], pid: process.pid }));
    // Under the launcher: its health (alive, engine progressing) goes to the launcher, which restarts it when wedged.
    const stopReports = reportHealthToSupervisor(worker);
    onShutdownSignal(
      async () => {
        stopReports();
        await worker.stop(cli.graceMs);
        await plane.close();
      },
      { log, graceMs: cli.graceMs + 10_000 },
    );
  };
  main().catch((err) => {
    if (err instanceof UsageError) console.error(`${err.message}\n${workerUsage(role)}`);
    else console.error(err);
    process.exit(2);
  });
}
