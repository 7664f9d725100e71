// Reading the api's Prometheus text at /metrics.

export interface WorkerGauge {
  name: string;
  component: string;
  instance: string;
  value: number;
}

/** `trtd_worker_*{component,instance}` gauges from the api's /metrics (workers publish their load about every second). */
export async function workerGauges(apiUrl: string): Promise<WorkerGauge[]> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const out: WorkerGauge[] = [];
  for (const m of text.matchAll(/^(trtd_worker_\w+)\{component="(\w+)",instance="([\w-]+)"\} (\S+)$/gm)) {
    out.push({ name: m[1], component: m[2], instance: m[3], value: Number(m[4]) });
  }
  return out;
}

/** One metric's value (a sample without labels, or with exactly the given label text); 0 when absent. */
export async function metricValue(apiUrl: string, sample: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}
