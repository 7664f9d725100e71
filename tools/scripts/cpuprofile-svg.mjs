// A V8 .cpuprofile (node --cpu-prof) as a flame graph in SVG, plus the functions with the most self time on stdout.
//   node tools/scripts/cpuprofile-svg.mjs PROFILE.cpuprofile OUT.svg [--title TEXT] [--min-percent 0.3] [--top 25]
//     [--skip-ms N] [--no-idle]
// Width is sample time. --skip-ms leaves out the first N ms (start-up); --no-idle leaves out (idle) samples, so the
// graph shows where the CPU time went. No dependencies.
import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    title: { type: "string" },
    "min-percent": { type: "string", default: "0.3" },
    top: { type: "string", default: "25" },
    "skip-ms": { type: "string", default: "0" },
    "no-idle": { type: "boolean", default: false },
  },
});
const [input, output] = positionals;
if (!input || !output) {
  console.error("usage: cpuprofile-svg.mjs PROFILE.cpuprofile OUT.svg [--title TEXT] [--min-percent P] [--top N]");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(input, "utf8"));
const byId = new Map(profile.nodes.map((n) => [n.id, { ...n, self: 0, total: 0, kids: [] }]));
// Self time per node from samples and their time deltas (µs).
const skipUs = Number(values["skip-ms"]) * 1000;
let clock = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  clock += dt;
  const n = byId.get(profile.samples[i]);
  if (!n || clock < skipUs) continue;
  if (values["no-idle"] && n.callFrame.functionName === "(idle)") continue;
  n.self += dt;
}
for (const n of byId.values()) for (const c of n.children ?? []) byId.get(c).parent = n;
for (const n of byId.values()) n.kids = (n.children ?? []).map((c) => byId.get(c));
const root = byId.get(profile.nodes[0].id);
const sumTotal = (n) => (n.total = n.self + n.kids.reduce((s, k) => s + sumTotal(k), 0));
sumTotal(root);

const label = (n) => {
  const f = n.callFrame;
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  const file = f.url.replace(/^file:\/\//, "").replace(/^.*\/node_modules\//, "~/").replace(/^.*\/(apps|packages)\//, "$1/");
  return `${name} ${file}:${f.lineNumber + 1}`;
};

// Self time by function (all call sites together).
const self = new Map();
for (const n of byId.values()) self.set(label(n), (self.get(label(n)) ?? 0) + n.self);
const total = root.total;
const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top));
console.log(`${basename(input)}: ${(total / 1000).toFixed(0)} ms sampled`);
for (const [name, us] of top) console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(1).padStart(8)} ms  ${name}`);

// Flame graph: root at the bottom, children left to right by total time.
const W = 1600;
const ROW = 17;
const minUs = (Number(values["min-percent"]) / 100) * total;
const rects = [];
let depthMax = 0;
const place = (n, x, depth) => {
  depthMax = Math.max(depthMax, depth);
  rects.push({ n, x, w: (n.total / total) * W, depth });
  let cx = x;
  for (const k of [...n.kids].sort((a, b) => b.total - a.total)) {
    if (k.total >= minUs) place(k, cx, depth + 1);
    cx += (k.total / total) * W;
  }
};
place(root, 0, 0);
const H = (depthMax + 1) * ROW + 40;
const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const colour = (n) => {
  const url = n.callFrame.url;
  if (!url) return "#c8c8c8"; // (idle), (program), (garbage collector), native
  if (url.includes("/apps/") || url.includes("/packages/")) return "#f5a25d"; // trtd
  if (url.includes("node_modules")) return "#e3d35f"; // dependencies
  return "#9ec1e6"; // node: internals
};
const out = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="monospace" font-size="11">`,
  `<rect width="100%" height="100%" fill="#fff"/>`,
  `<text x="4" y="16" font-size="14">${esc(values.title ?? basename(input))} (${(total / 1000).toFixed(0)} ms sampled; orange: trtd, yellow: node_modules, blue: node internals, grey: native/idle)</text>`,
];
for (const r of rects) {
  const y = H - (r.depth + 1) * ROW;
  const name = label(r.n);
  const pct = ((100 * r.n.total) / total).toFixed(1);
  const chars = Math.floor((r.w - 4) / 6.6);
  const text = chars >= 3 ? (name.length > chars ? `${name.slice(0, chars - 1)}…` : name) : "";
  out.push(
    `<g><title>${esc(name)} (${pct}%, ${(r.n.total / 1000).toFixed(1)} ms)</title><rect x="${r.x.toFixed(2)}" y="${y}" width="${Math.max(0.5, r.w - 0.5).toFixed(2)}" height="${ROW - 1}" fill="${colour(r.n)}"/>` +
      (text ? `<text x="${(r.x + 2).toFixed(2)}" y="${y + 12}">${esc(text)}</text>` : "") +
      `</g>`,
  );
}
out.push("</svg>");
writeFileSync(output, out.join("\n") + "\n");
console.log(`wrote ${output} (${rects.length} frames)`);
