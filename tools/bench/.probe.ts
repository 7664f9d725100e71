import { Executor } from "@trtd/trtllm";
const dir = process.argv[2];
const ex = Executor.open(dir, { threads: 1, maxBatchSize: 64, maxTokensPerIteration: 2048, kvTokensPerBlock: 16, kvBlockCount: 2048 });
for (const n of [128, 512, 1024, 1536]) {
  const prompt = Array.from({ length: n }, (_, i) => 1000 + (i * 7) % 5000);
  for (let rep = 0; rep < 2; rep++) {
    const t0 = performance.now(); let first = 0; let count = 0;
    for await (const c of ex.generate({ prompt, maxNewTokens: 32 })) { if (c.tokens.length && !first) first = performance.now() - t0; count += c.tokens.length; }
    const tot = performance.now() - t0;
    console.log(`n=${n} ttft=${first.toFixed(1)}ms decode/token=${((tot - first) / (count - 1)).toFixed(2)}ms tokens=${count}`);
  }
}
await ex.close();
