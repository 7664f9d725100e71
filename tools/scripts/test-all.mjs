// The README's test command: builds what is missing, runs every vitest project once, and ends with the
// plain "N passed, N failed" line that CI reads. Extra arguments go to vitest (e.g. a project filter).
import { spawnSync } from "node:child_process";
import { readFileSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import setup, { repoRoot } from "./assets.mjs";

try {
  await setup();
} catch (err) {
  console.error(`setup failed: ${err.message}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}
// The whole repository type-checks (tsc over every package, app and tool; tests run sources without it).
const typecheck = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json", "--noEmit"], { stdio: "inherit", cwd: repoRoot });
console.log(typecheck.status === 0 ? "typecheck: ok" : "typecheck: FAILED");

const outDir = join(repoRoot, ".trtd");
mkdirSync(outDir, { recursive: true });
const report = join(outDir, "vitest-report.json");
rmSync(report, { force: true }); // never read a previous run's report
const r = spawnSync(
  process.execPath,
  ["node_modules/vitest/vitest.mjs", "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: "inherit", cwd: repoRoot },
);
let passed = 0;
let failed = 0;
try {
  const json = JSON.parse(readFileSync(report, "utf8"));
  passed = json.numPassedTests;
  // A suite that failed to load has no tests of its own: count it once as a failure.
  failed = json.numFailedTests + json.testResults.filter((s) => s.status === "failed" && s.assertionResults.length === 0).length;
} catch (err) {
  console.error(`could not read the vitest report (${err.message})`);
  failed = Math.max(failed, 1);
}
if (r.status !== 0 && failed === 0) failed = 1;
// The type check counts as one more check.
if (typecheck.status === 0) passed += 1;
else failed += 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
