// A real api over real parts, in this process: the in-process request plane, one decode worker (and, when asked,
// one prefill worker) on the native reference executor with models/tiny, the real tokenizer, and the HTTP server
// on 127.0.0.1 at a port the OS picks.
import { EXECUTOR_DEFAULTS } from "@trtd/apps-common";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { startPrefillWorker, type RunningPrefillWorker } from "@trtd/prefill";
import { connect, createInProcessPlane, startNatsServer, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import { eventually, modelDir } from "@trtd/test-support";
import { startApiServer, type ApiServerOptions, type PrefillPolicyOptions, type RunningApiServer, type ServerLimits } from "../../src/index.js";

export interface RealApi {
  readonly url: string;
  readonly server: RunningApiServer;
  readonly decode: RunningDecodeWorker;
  /** The prefill worker, when started with `prefill`. */
  readonly prefill?: RunningPrefillWorker;
  /** The nats-server's `nats://host:port` when started with `nats: true`. */
  readonly natsUri?: string;
  /** Lines the api logged (unexpected 500s). */
  readonly logs: string[];
  stop(): Promise<void>;
}

export interface RealApiOptions {
  /** The model directory of the worker and the api (default models/tiny). */
  modelDir?: string;
  reasoningParser?: ApiServerOptions["reasoningParser"];
  /** Put the worker and the api on a real nats-server (started here, one connection each) instead of the in-process plane. */
  nats?: boolean;
  /** With `nats`: the planes' direct data path (default: the request plane's, on). */
  directLink?: boolean;
  /**
   * Also start a prefill worker (on a request-plane connection of its own with `nats`) and route by this prefill
   * policy (e.g. `{ minPromptTokens: 1 }`: every prompt is prefilled remotely). The api is ready once it sees both.
   */
  prefill?: PrefillPolicyOptions;
}

export async function startRealApi(limits: Partial<ServerLimits> = {}, o: RealApiOptions = {}): Promise<RealApi> {
  const dir = o.modelDir ?? modelDir;
  const nats: NatsServerHandle | undefined = o.nats ? await startNatsServer() : undefined;
  const plane: RequestPlane = nats ? await connect(nats.uri, { directLink: o.directLink }) : createInProcessPlane();
  const workerPlane: RequestPlane = nats ? await connect(nats.uri, { directLink: o.directLink }) : plane;
  const prefillPlane: RequestPlane | undefined = o.prefill ? (nats ? await connect(nats.uri, { directLink: o.directLink }) : plane) : undefined;
  const closePlanes = async () => {
    if (prefillPlane && prefillPlane !== plane) await prefillPlane.close();
    if (workerPlane !== plane) await workerPlane.close();
    await plane.close();
    await nats?.stop();
  };
  const logs: string[] = [];
  const executor = { ...EXECUTOR_DEFAULTS, modelDir: dir, threads: 1, kvBlockCount: 256 };
  const decode = await startDecodeWorker({ plane: workerPlane, executor });
  let prefill: RunningPrefillWorker | undefined;
  let server: RunningApiServer | undefined;
  const stopAll = async () => {
    await server?.close();
    await prefill?.stop(1000);
    await decode.stop(1000);
    await closePlanes();
  };
  try {
    if (prefillPlane) prefill = await startPrefillWorker({ plane: prefillPlane, executor });
    server = await startApiServer({ plane, tokenizerDir: dir, modelName: "tiny", reasoningParser: o.reasoningParser, prefill: o.prefill, host: "127.0.0.1", port: 0, limits, log: (l) => logs.push(l) });
    const router = server.router;
    const prefillWorkers = prefill ? 1 : 0;
    await eventually(() => router.readiness().ready && router.readiness().prefillWorkers === prefillWorkers, 10_000, "the api to see its workers", { intervalMs: 20 });
    const s = server;
    return {
      url: s.url,
      server: s,
      decode,
      prefill,
      natsUri: nats?.uri,
      logs,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
