// Compatibility at registration: what a worker announces about itself (its model, weights, tokenizer, KV layout
// and executor ABI) and the one comparison the api (and any peer) makes against the deployment's identity.
// docs/design/failure-modes.md, "Compatibility at registration".
import { modelDirIdentity } from "@trtd/model";

/** A worker's identity, published with its instance (`meta.identity`). */
export interface WorkerIdentity {
  /** @trtd/model weightsIdentity of its model directory: config.json, safetensors headers, sampled tensor bytes. */
  model: string;
  /** The executor's model fingerprint (a hash of config and every weight, as loaded). */
  weights: string;
  /** @trtd/model tokenizerIdentity of its model directory. */
  tokenizer: string;
  /** The executor's KV layout fingerprint (model fingerprint, layers, kv heads, head dim, dtype, block size). */
  kvLayout: string;
  /** The trtd_executor C ABI version of its executor library. */
  abi: number;
}

/** Why a worker was refused: the first field (in this order) that differs from the deployment's. */
export const IdentityMismatchReasons = {
  /** The worker announced no (or a malformed) identity, e.g. a worker from before identities. */
  missing: "missing_identity",
  model: "model",
  tokenizer: "tokenizer",
  weights: "weights",
  kvLayout: "kv_layout",
  abi: "abi",
} as const;
export type IdentityMismatchReason = (typeof IdentityMismatchReasons)[keyof typeof IdentityMismatchReasons];

const FIELDS = ["model", "tokenizer", "weights", "kvLayout", "abi"] as const satisfies ReadonlyArray<keyof WorkerIdentity>;
const REASON: Record<(typeof FIELDS)[number], IdentityMismatchReason> = {
  model: "model",
  tokenizer: "tokenizer",
  weights: "weights",
  kvLayout: "kv_layout",
  abi: "abi",
};

export interface IdentityMismatch {
  reason: IdentityMismatchReason;
  /** One line naming every differing field with both values. */
  detail: string;
}

/** The announced identity if it is well formed, else undefined. */
export function parseWorkerIdentity(v: unknown): WorkerIdentity | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const r = v as Record<string, unknown>;
  for (const k of ["model", "weights", "tokenizer", "kvLayout"] as const) if (typeof r[k] !== "string" || (r[k] as string).length === 0) return undefined;
  if (!Number.isSafeInteger(r.abi)) return undefined;
  return { model: r.model as string, weights: r.weights as string, tokenizer: r.tokenizer as string, kvLayout: r.kvLayout as string, abi: r.abi as number };
}

/**
 * Compares an announced identity with the deployment's (fields the deployment has not fixed are not compared).
 * Undefined when the worker matches.
 */
export function identityMismatch(expected: Partial<WorkerIdentity>, announced: unknown): IdentityMismatch | undefined {
  const got = parseWorkerIdentity(announced);
  if (!got) return { reason: IdentityMismatchReasons.missing, detail: "the worker announced no model identity (meta.identity)" };
  const diffs = FIELDS.filter((k) => expected[k] !== undefined && expected[k] !== got[k]);
  if (diffs.length === 0) return undefined;
  return {
    reason: REASON[diffs[0]],
    detail: diffs.map((k) => `${k} ${String(got[k])} (deployment: ${String(expected[k])})`).join(", "),
  };
}

/**
 * The deployment's identity as one process holds it: fields fixed up front (the api's own model directory gives
 * `model` and `tokenizer`), the rest fixed by the first worker that matched those (its weights fingerprint, KV
 * layout and ABI). `check` answers every later announcement the same way for the life of the process.
 */
export class DeploymentIdentity {
  private readonly fixed: Partial<WorkerIdentity>;
  private pinnedBy: string | undefined;

  constructor(fixed: Partial<WorkerIdentity> = {}) {
    this.fixed = { ...fixed };
  }

  /** What is fixed so far, and which worker fixed the rest (undefined until one did). */
  get expected(): Readonly<Partial<WorkerIdentity>> {
    return this.fixed;
  }
  get pinnedByWorker(): string | undefined {
    return this.pinnedBy;
  }

  /** Undefined when the worker `who` with identity `announced` belongs to the deployment. */
  check(who: string, announced: unknown): IdentityMismatch | undefined {
    const m = identityMismatch(this.fixed, announced);
    if (m) return m;
    if (this.pinnedBy === undefined) {
      const got = parseWorkerIdentity(announced)!;
      for (const k of FIELDS) if (this.fixed[k] === undefined) (this.fixed as Record<string, unknown>)[k] = got[k];
      this.pinnedBy = who;
    }
    return undefined;
  }
}

/**
 * The identity a worker announces: its model directory's identities (@trtd/model) and its open executor's
 * fingerprints and ABI version (structurally typed, so this file loads nothing native).
 */
export function workerIdentity(
  modelDir: string,
  executor: { readonly model: { readonly fingerprint: string }; kvLayout(): { fingerprint: string } },
  abiVersion: number,
): WorkerIdentity {
  const dir = modelDirIdentity(modelDir);
  return { model: dir.model, tokenizer: dir.tokenizer, weights: executor.model.fingerprint, kvLayout: executor.kvLayout().fingerprint, abi: abiVersion };
}
