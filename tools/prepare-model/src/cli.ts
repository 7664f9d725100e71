#!/usr/bin/env node
// prepare-model: makes the generated models and converts / validates Hugging Face Llama checkpoints.
// Run from the repo: node --import tsx --conditions=source tools/prepare-model/src/cli.ts <command> ...
import { runCli } from "./commands.js";

process.exitCode = await runCli(process.argv.slice(2));
