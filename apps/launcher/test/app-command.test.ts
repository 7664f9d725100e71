// How the launcher runs its children: as it runs itself (these tests run it from sources), dist/ when forced, and
// a missing dist/ as an error that names the build.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { appCommand } from "../src/supervisor.js";

const dirs: string[] = [];
function fakeRepo(withDist: boolean): string {
  const root = mkdtempSync(join(tmpdir(), "trtd-appcmd-"));
  dirs.push(root);
  mkdirSync(join(root, "apps/api/src"), { recursive: true });
  writeFileSync(join(root, "apps/api/src/main.ts"), "");
  if (withDist) {
    mkdirSync(join(root, "apps/api/dist"), { recursive: true });
    writeFileSync(join(root, "apps/api/dist/main.js"), "");
  }
  return root;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("appCommand", () => {
  it("runs children from sources through tsx while the launcher itself runs from sources", () => {
    const root = fakeRepo(true);
    expect(appCommand(root, "api", {})).toEqual(["--import", "tsx", "--conditions=source", join(root, "apps/api/src/main.ts")]);
  });

  it("runs dist/main.js when TRTD_RUN_DIST=1, even from sources", () => {
    const root = fakeRepo(true);
    expect(appCommand(root, "api", { TRTD_RUN_DIST: "1", TRTD_SOURCE: "1" })).toEqual([join(root, "apps/api/dist/main.js")]);
  });

  it("refuses a missing dist/ with the command that builds it", () => {
    const root = fakeRepo(false);
    expect(() => appCommand(root, "api", { TRTD_RUN_DIST: "1" })).toThrow(/dist\/main\.js is missing: build the apps \("npm start" does/);
  });
});
