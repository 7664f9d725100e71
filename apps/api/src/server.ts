// The api as a running server: tokenizer, request-plane workers, router and the HTTP app on one port.
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { DEFAULT_NAMESPACE, DeploymentIdentity } from "@trtd/apps-common";
import { declineKvOffer } from "@trtd/kv-transfer";
import { MissingFileError, readModelConfig, tokenizerIdentity, weightsIdentity } from "@trtd/model";
import type { RequestPlane } from "@trtd/request-plane";
import { createApiApp } from "./app.js";
import { createApiMetrics } from "./metrics/api-metrics.js";
import { DEFAULT_LIMITS, type ServerLimits } from "./openai/limits.js";
import { reasoningFromTemplate, type ReasoningOptions, type ReasoningParserMode } from "./openai/reasoning.js";
import { toolCallFormatFromTemplate, type ToolCallFormat, type ToolCallParserMode } from "./openai/tool-calls.js";
import {
  KvAwareSelector,
  KvIndex,
  LeastLoadedSelector,
  RequestPlaneWorkers,
  RoundRobinSelector,
  Router,
  type KvSelectorWeights,
  type PrefillPolicyOptions,
  type RouterMode,
  type RouterOptions,
} from "./router/index.js";
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
  /** Admission limit per decode worker (503 `overloaded` when every worker is at it); see RouterOptions. */
  maxRequestsPerWorker?: number;
  /** Split `<think>…</think>` into `reasoning_content` (openai/reasoning.ts). Default `auto`: when the chat template has `<think>`. */
  reasoningParser?: ReasoningParserMode;
  /** How tool calls are read from chat output (openai/tool-calls.ts). Default `auto`: the format the chat template shows. */
  toolCallParser?: ToolCallParserMode;
  /** How decode workers are chosen (default "load"): docs/design/serving.md, "KV-aware routing". */
  routerMode?: RouterMode;
  /** Weights of the kv mode's cost (KV_SELECTOR_DEFAULTS). */
  kvWeights?: KvSelectorWeights;
  /** The router's decision log (RouterOptions.onRoute): the worker each request went to and why. */
  onRoute?: RouterOptions["onRoute"];
  log?: (line: string) => void;
}

export interface RunningApiServer {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly router: Router;
  /** The reasoning parser chat completions use (from `reasoningParser` and the chat template); undefined: none. */
  readonly reasoning: ReasoningOptions | undefined;
  /** The tool-call format chat completions parse (from `toolCallParser` and the chat template); undefined: none. */
  readonly toolCalls: ToolCallFormat | undefined;
  /**
   * Stops taking connections, lets requests in progress finish for up to `graceMs` (default 0: open streams are
   * ended at once), then closes what is left, the worker clients and the tokenizer. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
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

/**
 * The deployment's identity as this api fixes it: the model and tokenizer identities of its own model directory
 * (the tokenizer always; the model when the directory has config.json and weights, else the first worker fixes
 * it), and the first matching worker's weights fingerprint, KV layout and ABI version.
 */
export function deploymentIdentityOf(modelDir: string, log: (line: string) => void = () => {}): DeploymentIdentity {
  let model: string | undefined;
  try {
    model = weightsIdentity(modelDir);
  } catch (err) {
    if (!(err instanceof MissingFileError)) throw err;
    log(`${modelDir} holds no weights (${err.message}): the first worker fixes the deployment's model identity`);
  }
  return new DeploymentIdentity({ tokenizer: tokenizerIdentity(modelDir), ...(model ? { model } : {}) });
}

/** The reasoning parser the model's chat template calls for under `mode` (see reasoningFromTemplate). */
function reasoningOf(codec: TokenizerCodec, mode: ReasoningParserMode): ReasoningOptions | undefined {
  if (mode === "none") return undefined;
  let generationPrompt: string | undefined;
  try {
    generationPrompt = codec.tokenizer.applyChatTemplate([{ role: "user", content: "x" }]);
  } catch {
    generationPrompt = undefined; // a template that refuses a lone user message: the output starts outside a block
  }
  return reasoningFromTemplate(mode, codec.tokenizer.chatTemplateSource, generationPrompt);
}

export async function startApiServer(o: ApiServerOptions): Promise<RunningApiServer> {
  const log = o.log ?? ((l: string) => console.error(l));
  const codec = TokenizerCodec.fromModelDir(o.tokenizerDir);
  const reasoning = reasoningOf(codec, o.reasoningParser ?? "auto");
  const toolCalls = toolCallFormatFromTemplate(o.toolCallParser ?? "auto", codec.tokenizer.chatTemplateSource);
  const identity = deploymentIdentityOf(o.tokenizerDir, log);
  // Worker figures are read from `workers` when /metrics is scraped (after both exist).
  const metrics = createApiMetrics(
    () =>
      (["prefill", "decode"] as const).flatMap((component) =>
        workers.instances(component).flatMap((w) => (w.load ? [{ component, instance: w.id, load: w.load }] : [])),
      ),
    () => (["prefill", "decode"] as const).flatMap((component) => Object.entries(workers.carrierCounts(component)).map(([instance, c]) => ({ component, instance, ...c }))),
  );
  const workers = new RequestPlaneWorkers(o.plane, o.namespace ?? DEFAULT_NAMESPACE, {
    identity,
    onRefused: (component, id, m) => {
      metrics.workersRefused.inc({ component, reason: m.reason });
      log(`refusing ${component} worker ${id}: ${m.reason === "missing_identity" ? "no identity" : `${m.reason} differs from the deployment's`} (${m.detail})`);
    },
  });
  // A prefill result no decode worker took: kv-transfer releases its offer (the handle stays opaque here).
  const releasePrefill = (r: { kvHandle: unknown }) => declineKvOffer(r.kvHandle, { requestPlane: o.plane });
  const mode = o.routerMode ?? "load";
  const kvIndex = mode === "kv" ? new KvIndex(workers) : undefined;
  kvIndex?.start();
  const router = new Router({
    releasePrefill,
    workers,
    decodeSelector: kvIndex ? new KvAwareSelector(kvIndex, o.kvWeights) : mode === "round-robin" ? new RoundRobinSelector() : new LeastLoadedSelector(),
    kvIndex,
    prefillSelector: kvIndex ? new KvAwareSelector(kvIndex, o.kvWeights) : undefined,
    prefill: o.prefill,
    onPrefillFallback: (err) => {
      metrics.prefillFallbacks.inc();
      log(`remote prefill failed, running aggregated: ${(err as Error).message}`);
    },
    maxRequestsPerWorker: o.maxRequestsPerWorker,
    onRoute: o.onRoute,
    onMigration: (tokens, err) => {
      metrics.migrations.inc();
      log(`decode worker lost after ${tokens} tokens, continuing on another one: ${(err as Error).message}`);
    },
  });
  const contextLength = o.limits?.contextLength ?? contextLengthOf(o.tokenizerDir) ?? DEFAULT_LIMITS.contextLength;
  const limits: Partial<ServerLimits> = {
    ...o.limits,
    contextLength,
    maxPromptTokens: o.limits?.maxPromptTokens ?? contextLength - 1,
  };
  const { app } = createApiApp({ backend: router, codec, modelName: o.modelName, apiKey: o.apiKey, limits, metrics, log, reasoning, toolCalls });
  const host = o.host ?? "127.0.0.1";
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: o.port ?? 8000 }, () => resolve(s));
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  // HTTP requests whose response has not closed yet (streams included): what a graceful stop waits for.
  let active = 0;
  server.on("request", (_req, res) => {
    active++;
    res.once("close", () => active--);
  });
  const shownHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost.includes(":") ? `[${shownHost}]` : shownHost}:${port}`,
    host,
    port,
    router,
    reasoning,
    toolCalls,
    close(graceMs = 0) {
      closing ??= (async () => {
        const http = server as ServerType & { closeAllConnections?: () => void; closeIdleConnections?: () => void };
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const end = Date.now() + graceMs;
        // Keep-alive connections that go idle are closed as they do; busy ones get until the bound.
        while (active > 0 && Date.now() < end) {
          http.closeIdleConnections?.();
          await new Promise((r) => setTimeout(r, 50));
        }
        if (active > 0) log(`stopping with ${active} requests still open after ${graceMs} ms`);
        http.closeAllConnections?.();
        await closed;
        await kvIndex?.close();
        workers.close();
        codec.free();
      })();
      return closing;
    },
  };
}
