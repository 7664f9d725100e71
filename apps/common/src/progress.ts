// Engine progress, as opposed to process liveness: a worker whose executor has running requests and counts no
// iteration for a bound is stalled (a wedged device, a deadlock, a stuck loop), even though its process, its
// heartbeats and its lease are fine. The worker publishes the verdict with its load (`stalled`), the api stops
// routing to it and moves its requests elsewhere (docs/design/failure-modes.md, "Wedged workers").

/** What the watchdog samples: the executor's cumulative iteration count and its running requests. */
export interface EngineProgressSample {
  iterations: number;
  activeRequests: number;
}

export const DEFAULT_STALL_TIMEOUT_MS = 10_000;

export class ProgressWatchdog {
  private lastIterations: number | undefined;
  private lastProgressAt: number;
  private isStalled = false;

  /**
   * @param sample reads the executor (cheap; called every `intervalMs` by the owner)
   * @param stallTimeoutMs running requests and no iteration for this long = stalled
   * @param onChange called when the verdict flips, with how long the engine has been without progress
   */
  constructor(
    private readonly sample: () => EngineProgressSample,
    readonly stallTimeoutMs: number = DEFAULT_STALL_TIMEOUT_MS,
    private readonly onChange: (stalled: boolean, sinceProgressMs: number, s: EngineProgressSample) => void = () => {},
    private readonly now: () => number = () => Date.now(),
  ) {
    this.lastProgressAt = now();
  }

  get stalled(): boolean {
    return this.isStalled;
  }

  /** Samples once; returns the verdict. Progress = the iteration count moved, or nothing is running. */
  check(): boolean {
    const s = this.sample();
    const t = this.now();
    if (s.iterations !== this.lastIterations || s.activeRequests === 0) {
      this.lastIterations = s.iterations;
      this.lastProgressAt = t;
    }
    const stalled = t - this.lastProgressAt >= this.stallTimeoutMs;
    if (stalled !== this.isStalled) {
      this.isStalled = stalled;
      this.onChange(stalled, t - this.lastProgressAt, s);
    }
    return stalled;
  }
}
