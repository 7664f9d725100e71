import { describe, expect, it } from "vitest";
import { lineChart, niceTicks, sweepCharts, type SweepResult } from "../src/index.js";

/** A strict little XML well-formedness check: balanced tags, quoted attributes, escaped text. */
function checkWellFormed(xml: string): string[] {
  const stack: string[] = [];
  const tags: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    const between = xml.slice(pos, m.index);
    if (/[<>]/.test(between) || /&(?!(lt|gt|amp|quot|apos);)/.test(between)) throw new Error(`bad text before ${m[0]}: ${between}`);
    pos = re.lastIndex;
    const [, close, name, , selfClose] = m;
    tags.push(name);
    if (close) {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
    } else if (!selfClose) stack.push(name);
  }
  if (xml.slice(pos).trim() !== "") throw new Error(`trailing text: ${xml.slice(pos)}`);
  if (stack.length) throw new Error(`unclosed: ${stack.join(",")}`);
  return tags;
}

describe("SVG charts", () => {
  it("nice ticks cover the range with round steps", () => {
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(0, 0.37)).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    const t = niceTicks(3, 1234);
    expect(t[0]).toBeLessThanOrEqual(3);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(1234);
  });

  it("a line chart is well-formed SVG with a path per series, legend, axis labels and escaped text", () => {
    const svg = lineChart({
      title: "TTFT <p50> & p90",
      xLabel: "rate",
      yLabel: "ms",
      series: [
        { name: "disagg 1P+1D", points: [[1, 10], [2, 20], [4, 80]] },
        { name: "agg 2D", points: [[1, 12], [2, 40], [4, NaN]], dashed: true },
      ],
      guides: [{ y: 50, label: "SLO 50 ms" }],
    });
    const tags = checkWellFormed(svg);
    expect(tags[0]).toBe("svg");
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(tags.filter((t) => t === "path")).toHaveLength(2);
    expect(tags.filter((t) => t === "circle")).toHaveLength(5); // the NaN point is skipped
    expect(svg).toContain("TTFT &lt;p50&gt; &amp; p90");
    for (const s of ["disagg 1P+1D", "agg 2D", "SLO 50 ms", ">rate<", ">ms<"]) expect(svg).toContain(s);
    // Every coordinate is a finite number.
    for (const m of svg.matchAll(/ (?:x|y|x1|y1|x2|y2|cx|cy)="([^"]*)"/g)) expect(Number.isFinite(Number(m[1])), m[0]).toBe(true);
  });

  it("an empty chart is still well-formed", () => {
    checkWellFormed(lineChart({ title: "empty", xLabel: "x", yLabel: "y", series: [] }));
  });

  it("sweepCharts makes four well-formed charts from a sweep", () => {
    const summary = (ttft: number, att: number) => ({
      sent: 10, completed: 10, failed: 0, notSent: 0, durationS: 5, requestThroughput: 2, outputTokenThroughput: 100, totalTokenThroughput: 300,
      ttftMs: { count: 10, p50: ttft, p90: ttft * 2 }, tpotMs: { count: 10, p50: 5, p90: 8 }, itlMs: { count: 90 }, e2eMs: { count: 10 },
      sloAttainment: att, errors: [],
    });
    const sweep: SweepResult = {
      slo: { ttftMs: 100, tpotMs: 10 },
      goodput: { target: 0.9, sweptRate: 1, interpolatedRate: 1.5, saturated: false, highestPassingRate: 1 },
      points: [1, 2].map((rate, i) => ({ rate, arrival: "poisson" as const, maxConcurrency: null, records: [], summary: summary(10 * (i + 1), 1 - i * 0.5) })),
    };
    const charts = sweepCharts([{ name: "a", sweep }, { name: "b", sweep }]);
    expect(Object.keys(charts).sort()).toEqual(["attainment.svg", "throughput.svg", "tpot.svg", "ttft.svg"]);
    for (const svg of Object.values(charts)) checkWellFormed(svg);
    expect(charts["ttft.svg"]).toContain("SLO 100 ms");
  });
});
