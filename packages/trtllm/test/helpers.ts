import { afterEach, expect } from "vitest";
import { Executor, executorLibraries, UnsupportedError, type ExecutorName, type ExecutorOptions, type GenerateRequest } from "../src/index.js";

import { modelDir } from "@trtd/test-support";

export { repoRoot } from "@trtd/test-support";
export const tinyDir = modelDir;

/**
 * The implementation the conformance suites run against: $TRTD_TEST_EXECUTOR, "reference" (default) or "cuda".
 * Unset, the executor is the binding's default (so $TRTD_EXECUTOR_LIB still picks another library).
 */
export const testExecutor: ExecutorName = testExecutorFromEnv(process.env.TRTD_TEST_EXECUTOR);
const selection: ExecutorOptions = process.env.TRTD_TEST_EXECUTOR ? { executor: testExecutor } : {};

function testExecutorFromEnv(v: string | undefined): ExecutorName {
  if (v === undefined || v === "") return "reference";
  if (!Object.hasOwn(executorLibraries, v)) throw new Error(`TRTD_TEST_EXECUTOR=${v}: expected one of ${Object.keys(executorLibraries).join(", ")}`);
  return v as ExecutorName;
}

/** Opens a model on the executor under test. */
export function openExecutor(modelDir: string, options: ExecutorOptions = {}): Executor {
  return Executor.open(modelDir, { threads: 2, ...selection, ...options });
}

export function openTiny(options: ExecutorOptions = {}): Executor {
  return openExecutor(tinyDir, options);
}

/**
 * For a test file whose tests each open their own tiny executors: returns the opener; after each test every executor
 * it opened must be idle (expectIdle: nothing leaked) and is closed.
 */
export function openTinyPerTest(): (options?: ExecutorOptions) => Executor {
  const open: Executor[] = [];
  afterEach(async () => {
    for (const ex of open.splice(0)) {
      expectIdle(ex);
      await ex.close();
    }
  });
  return (options = {}) => {
    const ex = openTiny(options);
    open.push(ex);
    return ex;
  };
}

let availability: { ok: true } | { ok: false; reason: string } | undefined;

/**
 * Whether the executor under test runs on this machine. The reference always does; the CUDA executor is opened
 * once on models/tiny: "no CUDA device" makes the suites skip, any other failure (a missing library included)
 * throws, so the suites fail.
 */
export function executorAvailable(): { ok: true } | { ok: false; reason: string } {
  if (availability) return availability;
  if (testExecutor === "reference") return (availability = { ok: true });
  try {
    void openTiny().close();
    availability = { ok: true };
  } catch (err) {
    if (!(err instanceof UnsupportedError && /no CUDA device/.test(err.message))) throw err;
    availability = { ok: false, reason: `TRTD_TEST_EXECUTOR=${testExecutor}, but this machine has no GPU (${err.message})` };
  }
  return availability;
}

/** For describe.skipIf: true, with the reason printed, when the executor under test cannot run here. */
export function skipSuite(suite: string): boolean {
  const a = executorAvailable();
  if (!a.ok) console.warn(`[trtllm ${suite}] SKIPPED: ${a.reason}`);
  return !a.ok;
}

/** For it.skipIf: true, with the reason printed, when a test does not apply to the executor under test. */
export function skipFor(executor: ExecutorName, test: string, why: string): boolean {
  if (testExecutor !== executor) return false;
  console.warn(`[trtllm] SKIPPED for the ${executor} executor: ${test}: ${why}`);
  return true;
}

/** Every KV block back in the pool, nothing queued, running, pinned or reserved. */
export function expectIdle(ex: Executor): void {
  const s = ex.stats();
  expect({
    active: s.activeRequests,
    queued: s.queuedRequests,
    used: s.kvBlocksUsed,
    pinned: s.pinnedExports,
    imports: s.pendingImports,
  }).toEqual({ active: 0, queued: 0, used: 0, pinned: 0, imports: 0 });
  expect(s.kvBlocksFree).toBe(s.kvBlocksTotal);
}

export async function run(ex: Executor, request: GenerateRequest) {
  return ex.generate(request).collect();
}

