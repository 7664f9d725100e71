// @trtd/prepare-model as a library: the pieces behind the CLI (src/cli.ts).
export { runCli, UsageError, USAGE } from "./commands.js";
export { convertCheckpoint, ConvertError, ConvertErrorCode, PRECISIONS, isPrecision, DEFAULT_MAX_SHARD_BYTES } from "./convert.js";
export { checkTokenizerLoads } from "./tokenizer-check.js";
export { createProgressBar } from "./progress.js";

export type { ConvertOptions, Precision } from "./convert.js";
export type { ProgressBar, ProgressOptions } from "./progress.js";
export { downloadRepo, listRepoFiles, globToRegExp, DownloadError, type DownloadOptions, type DownloadResult, type RepoFile } from "./download.js";
