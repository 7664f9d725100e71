// The api as a running server: tokenizer, request-plane workers, router and the HTTP app on one port.
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { DEFAULT_NAMESPACE } from "@trtd/apps-common";
import { MissingFileError, readModelConfig } from "@trtd/model";
import type { RequestPlane } from "@trtd/request-plane";
import { createApiApp } from "./app.js";
import { createApiMetrics } from "./metrics/api-metrics.js";
import { DEFAULT_LIMITS, type ServerLimits } from "./openai/limits.js";
import { RequestPlaneWorkers, Router, type PrefillPolicyOptions } from "./router/index.js";
import { TokenizerCodec } from "./tokenizer-adapter.js";

export interface ApiServerOptions {
  plane: RequestPlane;
  /** Model directory holding the tokenizer files (and config.json, for the context length). */
  tokenizerDir: string;
  modelName: string;
  host?: string;
  /** 0 = a free port the OS picks. */
  port?: number;
  namespace?: string;
  apiKey?: string;
  limits?: Partial<ServerLimits>;
  prefill?: PrefillPolicyOptions;
  log?: (line: string) => void;
}

export interface RunningApiServer {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly router: Router;
  /** Stops listening (open streams are ended), closes the worker clients, frees the tokenizer. Idempotent. */
  close(): Promise<void>;
}

/** The context length from the model's config.json; undefined for a tokenizer-only directory. */
export function contextLengthOf(modelDir: string): number | undefined {
  try {
    return readModelConfig(modelDir).maxPositionEmbeddings;
  } catch (err) {
    if (err instanceof MissingFileError) return undefined;
    throw err;
  }
}

export async function startApiServer(o: ApiServerOptions): Promise<RunningApiServer> {
  const log = o.log ?? ((l: string) => console.error(l));
  const codec = TokenizerCodec.fromModelDir(o.tokenizerDir);
  const workers = new RequestPlaneWorkers(o.plane, o.namespace ?? DEFAULT_NAMESPACE);
  const metrics = createApiMetrics(() =>
    (["prefill", "decode"] as const).flatMap((component) =>
      workers.instances(component).flatMap((w) => (w.load ? [{ component, instance: w.id, load: w.load }] : [])),
    ),
  );
  const router = new Router({
    workers,
    prefill: o.prefill,
    onPrefillFallback: (err) => {
      metrics.prefillFallbacks.inc();
      log(`remote prefill failed, running aggregated: ${(err as Error).message}`);
    },
  });
  const contextLength = o.limits?.contextLength ?? contextLengthOf(o.tokenizerDir) ?? DEFAULT_LIMITS.contextLength;
  const limits: Partial<ServerLimits> = {
    ...o.limits,
    contextLength,
    maxPromptTokens: o.limits?.maxPromptTokens ?? contextLength - 1,
  };
  const { app } = createApiApp({ backend: router, codec, modelName: o.modelName, apiKey: o.apiKey, limits, metrics, log });
  const host = o.host ?? "127.0.0.1";
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: o.port ?? 8000 }, () => resolve(s));
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost.includes(":") ? `[${shownHost}]` : shownHost}:${port}`,
    host,
    port,
    router,
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        });
        workers.close();
        codec.free();
      })();
      return closing;
    },
  };
}
