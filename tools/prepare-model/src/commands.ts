// The prepare-model subcommands. runCli returns the exit code; errors print one clear line (plus a cause) to stderr.
// Flags are parsed here with parseArgs, not by the apps' parser (apps/common's cli.ts): subcommands take
// positionals, none of the flags is an app's, and this tool makes models/tiny before any app is built or run.
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { generateModel, isTorchDtype, ModelError, validateModelDir, writeModelDir, type ModelDirReport, type TorchDtype } from "@trtd/model";
import { createProgressBar } from "./progress.js";
import { convertCheckpoint, ConvertError, isPrecision } from "./convert.js";
import { checkTokenizerLoads } from "./tokenizer-check.js";
import { downloadRepo, DownloadError } from "./download.js";

export const USAGE = `Usage: prepare-model <command> [options]

Commands:
  tiny  --out DIR [--seed N] [--dtype float32|float16|bfloat16]   generate the tiny Llama model (seconds)
  small --out DIR [--seed N] [--dtype ...]                        generate the ≈90M-parameter model
  download ORG/NAME --out DIR [--revision R] [--include GLOB]... [--parallel N]
                                                                  fetch a hub repository (HF_TOKEN, HF_ENDPOINT)
  convert <hf-dir> --out DIR [--copy] [--precision bf16|fp16|fp8]
                                                                  validate a HF checkpoint and link/copy it, or
                                                                  write its weights in that precision
  validate <dir>                                                  validate a model directory
`;

/** A usage error: bad command line. */
export class UsageError extends Error {
  readonly code = "USAGE" as const;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function describe(report: ModelDirReport): string {
  const c = report.config;
  const t = report.tokenizer;
  const tok = t.kind === "tiktoken-encoding" ? `tiktoken ${t.encoding}` : t.kind === "tokenizer-json" ? `tokenizer.json (${t.ranks} tokens)` : `tokenizer.model (${t.ranks} ranks)`;
  return (
    `${c.architecture}, ${(report.parameterCount / 1e6).toFixed(1)}M params, hidden ${c.hiddenSize}, ${c.numLayers} layers, ` +
    `${c.numHeads} heads / ${c.numKvHeads} kv heads, head_dim ${c.headDim}, vocab ${c.vocabSize}, ${report.dtypes.join("+")}, ` +
    `${report.weightFiles.length} weight file(s), tokenizer: ${tok}`
  );
}

async function generate(preset: "tiny" | "small", args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { out: { type: "string" }, seed: { type: "string", default: "0" }, dtype: { type: "string", default: "float32" } },
    allowPositionals: true,
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  if (!values.out) throw new UsageError(`${preset} needs --out DIR`);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UsageError(`--seed must be a non-negative integer, got ${values.seed}`);
  if (!isTorchDtype(values.dtype)) throw new UsageError(`--dtype must be float32, float16 or bfloat16, got ${values.dtype}`);
  const dtype: TorchDtype = values.dtype;
  const out = resolve(values.out);
  const t0 = performance.now();
  const gen = createProgressBar(`${preset} generate`, { unit: "params" });
  gen.log(`generating ${preset} (seed ${seed}, ${dtype}) into ${out}`);
  const model = generateModel({ preset, seed, onProgress: (done, total, tensor) => gen.update(done, total, tensor) });
  const params = [...model.tensors.values()].reduce((s, t) => s + t.data.length, 0);
  gen.finish(`${(params / 1e6).toFixed(1)}M parameters in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const t1 = performance.now();
  const bar = createProgressBar(`${preset} write`);
  const { bytes } = writeModelDir(out, model, { dtype, onProgress: (done, total, tensor) => bar.update(done, total, tensor) });
  const report = validateModelDir(out);
  bar.finish(`wrote ${(bytes / (1 << 20)).toFixed(1)} MiB in ${((performance.now() - t1) / 1000).toFixed(1)} s: ${describe(report)}`);
}

async function convert(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { out: { type: "string" }, copy: { type: "boolean", default: false }, precision: { type: "string" } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError("convert needs exactly one <hf-dir>");
  if (!values.out) throw new UsageError("convert needs --out DIR");
  const precision = values.precision;
  if (precision !== undefined && !isPrecision(precision)) throw new UsageError(`--precision must be bf16, fp16 or fp8, got ${precision}`);
  const bar = createProgressBar("convert");
  const report = await convertCheckpoint(resolve(positionals[0]), resolve(values.out), {
    copy: values.copy,
    ...(precision ? { precision } : {}),
    onProgress: (done, total, file) => bar.update(done, total, file),
    log: (m) => bar.log(m),
  });
  for (const w of report.warnings) bar.log(`warning: ${w}`);
  bar.finish(`${resolve(values.out)}: ${describe(report)}`);
}

async function download(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { out: { type: "string" }, revision: { type: "string" }, include: { type: "string", multiple: true }, parallel: { type: "string", default: "4" } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError("download needs exactly one ORG/NAME");
  if (!values.out) throw new UsageError("download needs --out DIR");
  const parallel = Number(values.parallel);
  if (!Number.isSafeInteger(parallel) || parallel < 1 || parallel > 64) throw new UsageError(`--parallel must be an integer from 1 to 64, got ${values.parallel}`);
  const out = resolve(values.out);
  const bar = createProgressBar("download");
  const t0 = performance.now();
  const r = await downloadRepo(positionals[0]!, out, {
    ...(values.revision ? { revision: values.revision } : {}),
    ...(values.include ? { include: values.include } : {}),
    parallel,
    onProgress: (done, total, file) => bar.update(done, total, file),
    log: (m) => bar.log(m),
  });
  const s = (performance.now() - t0) / 1000;
  bar.finish(
    `${r.repo}@${r.commit.slice(0, 12)}: ${r.files.length} files, ${(r.bytes / (1 << 20)).toFixed(1)} MiB in ${s.toFixed(1)} s` +
      (r.resumedBytes ? ` (${(r.resumedBytes / (1 << 20)).toFixed(1)} MiB already on disk)` : "") + `, verified, in ${out}`,
  );
}

async function validate(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError("validate needs exactly one <dir>");
  const dir = resolve(positionals[0]);
  const report = validateModelDir(dir);
  await checkTokenizerLoads(dir, report);
  for (const w of report.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(`ok ${dir}: ${describe(report)}\n`);
}

/** Runs one command; returns the process exit code (0 ok, 1 failure, 2 usage). */
export async function runCli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "tiny":
      case "small":
        await generate(command, rest);
        return 0;
      case "convert":
        await convert(rest);
        return 0;
      case "download":
        await download(rest);
        return 0;
      case "validate":
        await validate(rest);
        return 0;
      case undefined:
      case "-h":
      case "--help":
        process.stdout.write(USAGE);
        return command === undefined ? 1 : 0;
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (e) {
    const err = e as Error;
    const code = (err as { code?: unknown }).code;
    if (err instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_"))) {
      process.stderr.write(`prepare-model: ${err.message}\n\n${USAGE}`);
      return 1;
    }
    const label = err instanceof ModelError || err instanceof DownloadError ? `${err.name} [${err.code}]` : err.name;
    process.stderr.write(`\nprepare-model: ${label}: ${err.message}\n`);
    if (err.cause instanceof Error) process.stderr.write(`  caused by: ${err.cause.message}\n`);
    if (!(err instanceof ModelError) && !(err instanceof ConvertError) && !(err instanceof DownloadError)) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
