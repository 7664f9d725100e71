// @trtd/launcher: the deploy launcher as a library (tests, tools/scripts/start.mjs go through main.ts).
export type { LauncherCli } from "./cli.js";
export type { Deployment, LaunchOptions } from "./launch.js";
export type { ChildSpec, SupervisorOptions, AppName } from "./supervisor.js";
export { parseLauncherCli, workerArgv, prefillArgv, apiArgv, LAUNCHER_USAGE } from "./cli.js";
export { launch, LaunchError } from "./launch.js";
export { Supervisor, appCommand } from "./supervisor.js";
