// @trtd/launcher: the deploy launcher as a library (tests, tools/scripts/start.mjs go through main.ts).
export type { LauncherCli } from "./cli.js";
export type { Deployment, LaunchOptions } from "./launch.js";
export type { ChildSpec, SupervisorOptions, AppName, WedgedOptions } from "./supervisor.js";
export { parseLauncherCli, workerArgv, prefillArgv, apiArgv, heapNodeArgs, LAUNCHER_USAGE, DEFAULT_API_HEAP_MB, DEFAULT_WORKER_HEAP_MB, MIN_HEAP_MB } from "./cli.js";
export { launch, LaunchError } from "./launch.js";
export { Supervisor, appCommand, DEFAULT_WEDGED, API_PROBE_INTERVAL_MS, API_PROBE_TIMEOUT_MS } from "./supervisor.js";
