// The api's command line (the seed's flags plus limits and routing knobs), parsed by apps/common's cli.ts.
import { statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { DEFAULT_GRACE_MS, DEFAULT_NAMESPACE, intFlag, optionalIntFlag, parseFlags, portFlag, requestPlaneFlagOptions, requestPlaneFlags, stringFlag, UsageError, valueFlags } from "@trtd/apps-common";
import { DEFAULT_MAX_REQUESTS_PER_WORKER, KV_SELECTOR_DEFAULTS, PREFILL_POLICY_DEFAULTS, ROUTER_MODES, type RouterMode } from "./router/index.js";
import { DEFAULT_LIMITS } from "./openai/limits.js";
import { REASONING_PARSER_MODES, type ReasoningParserMode } from "./openai/reasoning.js";
import { TOOL_CALL_PARSER_MODES, type ToolCallParserMode } from "./openai/tool-calls.js";
import type { ApiServerOptions } from "./server.js";
import type { DirectLinkOptions } from "@trtd/request-plane";

export const API_USAGE = `usage: api --tokenizer MODEL_DIR --request-plane-uri nats://HOST:PORT [options]
  --tokenizer PATH | --model-dir DIR  model directory with the tokenizer files, or a file in it (default models/tiny)
  --request-plane-uri URI             NATS server (default nats://127.0.0.1:4222)
  --api-server-host HOST              listen address (default 127.0.0.1)
  --api-server-port PORT              listen port, 0 = any free port (default 8000)
  --model-name NAME                   the model id clients send (default: the model directory's name)
  --worker-name NAME                  the deployment's namespace on the request plane (default ${DEFAULT_NAMESPACE})
  --direct-data-path on|off           request and reply frames to the worker a request is routed to go over a direct
                                      TCP link to it, not through nats-server (NATS stays the control plane and the
                                      fallback; default on)
  --api-key KEY                       require "Authorization: Bearer KEY" (default: $TRTD_API_KEY, else none)
  --max-body-bytes N                  (default ${DEFAULT_LIMITS.maxBodyBytes})
  --max-prompt-tokens N               (default: the model's context length - 1)
  --request-timeout-ms N              per-request deadline (default ${DEFAULT_LIMITS.requestTimeoutMs})
  --disagg-min-prompt-tokens N        shorter prompts run aggregated (default ${PREFILL_POLICY_DEFAULTS.minPromptTokens})
  --max-prefill-load N                skip prefill workers at this many outstanding requests (default ${PREFILL_POLICY_DEFAULTS.maxPrefillLoad})
  --max-requests-per-worker N         admission limit: when every decode worker has N requests outstanding, new
                                      ones get 503 overloaded at once (default ${DEFAULT_MAX_REQUESTS_PER_WORKER})
  --router-mode kv|load|round-robin   how decode workers are chosen: kv = prefix-cache overlap and load (see
                                      docs/design/serving.md), load = fewest outstanding requests (default load)
  --kv-overlap-weight X               kv mode: weight of the prompt blocks a worker must compute (default ${KV_SELECTOR_DEFAULTS.overlapWeight})
  --kv-load-weight X                  kv mode: weight of the blocks a worker holds for running requests (default ${KV_SELECTOR_DEFAULTS.loadWeight})
  --grace-ms N                        on SIGTERM, how long requests in progress may finish (default ${DEFAULT_GRACE_MS})
  --reasoning-parser auto|none|think  split <think>…</think> of chat completions into reasoning_content: auto when
                                      the chat template has <think> (default auto)
  --tool-call-parser auto|none|llama3_json|hermes
                                      how chat output is read into tool_calls: auto reads the format from the chat
                                      template (<tool_call>: hermes; Llama 3.1's: llama3_json); none refuses tools
                                      (default auto)
  --no-disaggregation                 always run aggregated on decode workers`;

export const apiFlagOptions = {
  ...requestPlaneFlagOptions,
  ...valueFlags("tokenizer", "model-dir", "api-server-host", "api-server-port", "model-name", "api-key", "max-body-bytes", "max-prompt-tokens"),
  ...valueFlags("request-timeout-ms", "disagg-min-prompt-tokens", "max-prefill-load", "max-requests-per-worker", "grace-ms", "reasoning-parser", "tool-call-parser"),
  ...valueFlags("router-mode", "kv-overlap-weight", "kv-load-weight"),
  "no-disaggregation": { type: "boolean" },
  help: { type: "boolean" },
} as const;

export interface ApiCli extends Omit<ApiServerOptions, "plane"> {
  requestPlaneUri: string;
  /** --direct-data-path (the api only opens links: the host flags concern workers). */
  directLink: DirectLinkOptions;
  /** On SIGTERM, how long requests in progress may finish. */
  graceMs: number;
  help: boolean;
}

function routerModeFlag(value: string | undefined): RouterMode {
  if (value === undefined) return "load";
  const mode = ROUTER_MODES.find((m) => m === value);
  if (!mode) throw new UsageError(`--router-mode must be one of ${ROUTER_MODES.join(", ")}, got ${value}`);
  return mode;
}

/** A finite number >= 0 (a weight), or the fallback when absent. */
function weightFlag(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a number >= 0, got ${value}`);
  return n;
}

function reasoningParserFlag(value: string | undefined): ReasoningParserMode {
  if (value === undefined) return "auto";
  const mode = REASONING_PARSER_MODES.find((m) => m === value);
  if (!mode) throw new UsageError(`--reasoning-parser must be one of ${REASONING_PARSER_MODES.join(", ")}, got ${value}`);
  return mode;
}

function toolCallParserFlag(value: string | undefined): ToolCallParserMode {
  if (value === undefined) return "auto";
  const mode = TOOL_CALL_PARSER_MODES.find((m) => m === value);
  if (!mode) throw new UsageError(`--tool-call-parser must be one of ${TOOL_CALL_PARSER_MODES.join(", ")}, got ${value}`);
  return mode;
}

export function parseApiCli(argv: string[], defaultModelDir: string): ApiCli {
  const v = parseFlags(argv, apiFlagOptions);
  // --tokenizer may name the model directory or a file in it (e.g. its tokenizer.model).
  let tokenizerDir = resolve(stringFlag(v, "tokenizer") ?? stringFlag(v, "model-dir") ?? defaultModelDir);
  try {
    if (statSync(tokenizerDir).isFile()) tokenizerDir = dirname(tokenizerDir);
  } catch {
    throw new UsageError(`--tokenizer: ${tokenizerDir} does not exist`);
  }
  const limits: ApiCli["limits"] = {};
  for (const [flag, key] of [["max-body-bytes", "maxBodyBytes"], ["max-prompt-tokens", "maxPromptTokens"], ["request-timeout-ms", "requestTimeoutMs"]] as const) {
    const n = optionalIntFlag(v[flag], flag);
    if (n !== undefined) limits[key] = n;
  }
  return {
    tokenizerDir,
    ...requestPlaneFlags(v),
    host: stringFlag(v, "api-server-host") ?? "127.0.0.1",
    port: portFlag(v["api-server-port"], "api-server-port", { fallback: 8000 }),
    modelName: stringFlag(v, "model-name") ?? basename(tokenizerDir),
    apiKey: stringFlag(v, "api-key") ?? (process.env.TRTD_API_KEY || undefined),
    limits,
    prefill: {
      enabled: v["no-disaggregation"] !== true,
      minPromptTokens: intFlag(v["disagg-min-prompt-tokens"], "disagg-min-prompt-tokens", { min: 0, fallback: PREFILL_POLICY_DEFAULTS.minPromptTokens }),
      maxPrefillLoad: intFlag(v["max-prefill-load"], "max-prefill-load", { min: 1, fallback: PREFILL_POLICY_DEFAULTS.maxPrefillLoad }),
    },
    maxRequestsPerWorker: intFlag(v["max-requests-per-worker"], "max-requests-per-worker", { min: 1, fallback: DEFAULT_MAX_REQUESTS_PER_WORKER }),
    reasoningParser: reasoningParserFlag(stringFlag(v, "reasoning-parser")),
    toolCallParser: toolCallParserFlag(stringFlag(v, "tool-call-parser")),
    routerMode: routerModeFlag(stringFlag(v, "router-mode")),
    kvWeights: {
      overlapWeight: weightFlag(stringFlag(v, "kv-overlap-weight"), "kv-overlap-weight", KV_SELECTOR_DEFAULTS.overlapWeight),
      loadWeight: weightFlag(stringFlag(v, "kv-load-weight"), "kv-load-weight", KV_SELECTOR_DEFAULTS.loadWeight),
    },
    graceMs: intFlag(v["grace-ms"], "grace-ms", { min: 0, fallback: DEFAULT_GRACE_MS }),
    help: v.help === true,
  };
}
