// The TensorRT-LLM shim's own C++ tests, run in the README's test command. Without TensorRT-LLM (always, here and
// in CI) its CMake project builds the parts that need none: the pure unit tests (engine config reader,
// context-phase blob, JSON reader) and the disaggregation smoke program, which runs on CPU against the reference
// executor (KV copied) and against the engine-transfer test double (KV carried in the context-phase state).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot, tinyDir } from "./helpers.js";

const shimDir = join(repoRoot, "packages/trtllm/shim");
const buildDir = join(repoRoot, "packages/trtllm/build/shim");
const refLib = join(repoRoot, "packages/trtllm/build/libtrtd_ref.so");

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 240_000 });
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

describe("TensorRT-LLM shim project (built without TensorRT-LLM)", () => {
  it("builds and passes ctest: pure unit tests, CPU smoke on the reference executor and on the engine double", () => {
    const configure = run("cmake", ["-S", shimDir, "-B", buildDir, "-DCMAKE_BUILD_TYPE=Release", `-DTRTD_REF_LIB=${refLib}`, `-DTRTD_TEST_MODEL=${tinyDir}`]);
    expect(configure.status, configure.output).toBe(0);
    const build = run("cmake", ["--build", buildDir, "-j", "2"]);
    expect(build.status, build.output).toBe(0);
    const ctest = run("ctest", ["--test-dir", buildDir, "--output-on-failure"]);
    expect(ctest.status, ctest.output).toBe(0);
    expect(ctest.output).toMatch(/100% tests passed(, 0 tests failed)? out of 3/); // ctest 3.x and 4.x wordings
    for (const name of ["trtd_shim_pure_test", "smoke_reference_copy", "smoke_engine_double"]) expect(ctest.output).toContain(name);
  }, 300_000);
});
