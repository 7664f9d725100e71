// A real api over real parts, in this process: the in-process request plane, one decode worker on the native
// reference executor with models/tiny, the real tokenizer, and the HTTP server on 127.0.0.1 at a port the OS picks.
import { EXECUTOR_DEFAULTS } from "@trtd/apps-common";
import { startDecodeWorker, type RunningDecodeWorker } from "@trtd/decode";
import { connect, createInProcessPlane, startNatsServer, type NatsServerHandle, type RequestPlane } from "@trtd/request-plane";
import { eventually, modelDir } from "@trtd/test-support";
import { startApiServer, type ApiServerOptions, type RunningApiServer, type ServerLimits } from "../../src/index.js";

export interface RealApi {
  readonly url: string;
  readonly server: RunningApiServer;
  readonly decode: RunningDecodeWorker;
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
}

export async function startRealApi(limits: Partial<ServerLimits> = {}, o: RealApiOptions = {}): Promise<RealApi> {
  const dir = o.modelDir ?? modelDir;
  const nats: NatsServerHandle | undefined = o.nats ? await startNatsServer() : undefined;
  const plane: RequestPlane = nats ? await connect(nats.uri, { directLink: o.directLink }) : createInProcessPlane();
  const workerPlane: RequestPlane = nats ? await connect(nats.uri, { directLink: o.directLink }) : plane;
  const closePlanes = async () => {
    if (workerPlane !== plane) await workerPlane.close();
    await plane.close();
    await nats?.stop();
  };
  const logs: string[] = [];
  const decode = await startDecodeWorker({ plane: workerPlane, executor: { ...EXECUTOR_DEFAULTS, modelDir: dir, threads: 1, kvBlockCount: 256 } });
  let server: RunningApiServer | undefined;
  try {
    server = await startApiServer({ plane, tokenizerDir: dir, modelName: "tiny", reasoningParser: o.reasoningParser, host: "127.0.0.1", port: 0, limits, log: (l) => logs.push(l) });
    const router = server.router;
    await eventually(() => router.readiness().ready, 10_000, "the api to see the decode worker", { intervalMs: 20 });
    const s = server;
    return {
      url: s.url,
      server: s,
      decode,
      natsUri: nats?.uri,
      logs,
      async stop() {
        await s.close();
        await decode.stop(1000);
        await closePlanes();
      },
    };
  } catch (err) {
    await server?.close();
    await decode.stop(1000);
    await closePlanes();
    throw err;
  }
}
