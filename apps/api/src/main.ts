// `nx run api:serve` / `node --import tsx --conditions=source apps/api/src/main.ts --request-plane-uri ...`
import { apiReadyLine, DEFAULT_MODEL_DIR, DEFAULT_NAMESPACE, makeLogger, natsAuthFromEnv, natsInboxPrefix, onShutdownSignal, UsageError } from "@trtd/apps-common";
import { connect } from "@trtd/request-plane";
import { API_USAGE, parseApiCli } from "./cli.js";
import { startApiServer } from "./server.js";

async function main(argv: string[]): Promise<void> {
  const log = makeLogger("api");
  const cli = parseApiCli(argv, DEFAULT_MODEL_DIR);
  if (cli.help) {
    console.log(API_USAGE);
    return;
  }
  const plane = await connect(cli.requestPlaneUri, { name: "trtd-api", inboxPrefix: natsInboxPrefix(cli.namespace ?? DEFAULT_NAMESPACE, "api"), directLink: cli.directLink, ...natsAuthFromEnv() });
  const server = await startApiServer({ ...cli, plane, log });
  // The ready line on stdout (apps/common's ready-line.ts): the launcher and tests wait for it.
  console.log(apiReadyLine({ url: server.url, model: cli.modelName }));
  if (server.reasoning) log(`reasoning parser on (--reasoning-parser ${cli.reasoningParser}): <think>…</think> goes to reasoning_content${server.reasoning.startsInReasoning ? "; the prompt opens the block" : ""}`);
  if (server.toolCalls) log(`tool-call parser ${server.toolCalls} (--tool-call-parser ${cli.toolCallParser}): chat completions take tools`);
  onShutdownSignal(
    async () => {
      await server.close(cli.graceMs);
      await plane.close();
    },
    { log, graceMs: cli.graceMs + 10_000 },
  );
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof UsageError) console.error(`${err.message}\n${API_USAGE}`);
  else console.error(err);
  process.exit(2);
});
