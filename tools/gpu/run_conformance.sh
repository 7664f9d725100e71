#!/usr/bin/env bash
# The trtllm vitest conformance suites against the CUDA executor, on a GPU machine without Node:
#   bash tools/gpu/run_conformance.sh
# Carry (git-ignored, so name them in the device run's carry): .gpupack (tools/gpu/pack-node.sh: the node
# binary and node_modules) and packages/trtllm/build/libtrtd_executor_cuda.so (prebuilt; never built here).
# What it does: sources tools/gpu/unpack-node.sh, puts the toolkit's cuBLAS on LD_LIBRARY_PATH (the prebuilt
# library's RUNPATH names the build machine's cuda-deps), checks that the library resolves its dependencies,
# then runs `vitest run --project trtllm` with TRTD_TEST_EXECUTOR=cuda and TRTD_CUDA=OFF under `timeout`.
# The vitest globalSetup (tools/scripts/assets.mjs) builds the reference executor, the sampler check, the C smoke
# client and kv-transfer's helper with cmake + g++, and makes models/tiny with `node --import tsx`; TRTD_CUDA=OFF
# keeps it from compiling the CUDA executor with nvcc (minutes), so the carried library is what the suites load
# (test/helpers.ts: Executor.open({ executor: "cuda" }) -> build/libtrtd_executor_cuda.so).
# Output: everything to $OUT/conformance.log (OUT default /tmp/trtd-gpu-out), the vitest JSON report to
# $OUT/conformance.json, and a summary last: passed / failed / skipped counts, each failure, each SKIPPED reason
# and each near-tie the suites accepted (with its measured margin).
# Overrides: OUT, TRTD_CONFORMANCE_TIMEOUT (seconds for vitest, default 200), TRTD_CONFORMANCE_ARGS (extra vitest
# arguments, e.g. a test file), TRTD_CUDA_LIB_DIRS (more folders to search for libcublas.so.13),
# TRTD_TEST_EXECUTOR=reference (a dry run of the whole script on a CPU machine, the suites against the reference).
# Exit status: 0 when vitest passed (no failures), 124 on timeout, else 1 (3: no node, 4: no CUDA library).
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/trtd-gpu-out}"
mkdir -p "$OUT"
LOG="$OUT/conformance.log"
REPORT="$OUT/conformance.json"
: > "$LOG"
rm -f "$REPORT"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
LIMIT="${TRTD_CONFORMANCE_TIMEOUT:-200}"
echo "=== trtd conformance (trtllm suites, TRTD_TEST_EXECUTOR=${TRTD_TEST_EXECUTOR:-cuda}) $(date -u +%FT%TZ) in $REPO; git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) cores"
timeout 20 nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"

# shellcheck source=tools/gpu/unpack-node.sh
source tools/gpu/unpack-node.sh || { echo "unpack-node.sh failed: run tools/gpu/pack-node.sh and carry .gpupack"; exit 3; }
cd "$REPO"
command -v node >/dev/null || { echo "no node on PATH after unpack-node.sh"; exit 3; }
echo "node: $(command -v node) $(node --version)"
[ -f node_modules/vitest/vitest.mjs ] || { echo "no vitest in node_modules: carry .gpupack/test-tools.tar.xz (tools/gpu/pack-node.sh packs it)"; exit 3; }

LIB="$REPO/packages/trtllm/build/libtrtd_executor_cuda.so"
[ -f "$LIB" ] || { echo "no $LIB: build it where nvcc is (npm run build:native) and carry packages/trtllm/build/libtrtd_executor_cuda.so"; exit 4; }
echo "library: $LIB ($(stat -c '%s bytes, %y' "$LIB"))"
# cuBLAS at run time: the toolkit's (or a pip wheel's), wherever libcublas.so.13 is.
# shellcheck source=tools/gpu/cublas-path.sh
source tools/gpu/cublas-path.sh && add_cublas_dirs python3
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
missing=$(ldd "$LIB" 2>&1 | grep "not found")
if [ -n "$missing" ]; then
  echo "WARNING: $LIB does not resolve: $missing (the CUDA suites will fail to open it; set TRTD_CUDA_LIB_DIRS)"
else
  ldd "$LIB" | grep -i cublas
fi

export TRTD_TEST_EXECUTOR="${TRTD_TEST_EXECUTOR:-cuda}"  # "reference": a CPU dry run of this script, suites run
export TRTD_CUDA=OFF     # the setup must not compile the CUDA executor here: the carried one is tested
export NO_COLOR=1 FORCE_COLOR=0 CI=1
echo "TRTD_TEST_EXECUTOR=$TRTD_TEST_EXECUTOR TRTD_CUDA=$TRTD_CUDA; vitest timeout ${LIMIT}s"
T0=$(date +%s)
# shellcheck disable=SC2086
timeout -k 10 "$LIMIT" node node_modules/vitest/vitest.mjs run --project trtllm --reporter=verbose --reporter=json \
  --outputFile.json="$REPORT" ${TRTD_CONFORMANCE_ARGS:-}
RC=$?
DT=$(( $(date +%s) - T0 ))

echo
echo "================ CONFORMANCE SUMMARY (vitest ${DT}s, total $(( $(date +%s) - START ))s, rc $RC) ================"
(( RC == 124 || RC == 137 )) && echo "TIMEOUT: vitest ran past ${LIMIT}s and was killed (the counts below are from the log, if any)"
if [ -s "$REPORT" ]; then
  node - "$REPORT" <<'EOF'
const r = JSON.parse(require("node:fs").readFileSync(process.argv[2], "utf8"));
const loadFailures = r.testResults.filter((s) => s.status === "failed" && s.assertionResults.length === 0);
const skipped = r.numPendingTests + (r.numTodoTests ?? 0);
console.log(`${r.numPassedTests} passed, ${r.numFailedTests + loadFailures.length} failed, ${skipped} skipped (of ${r.numTotalTests} tests in ${r.testResults.length} files)`);
for (const s of loadFailures) console.log(`FAILED TO LOAD ${s.name.replace(/^.*packages\//, "packages/")}: ${(s.message ?? "").split("\n")[0]}`);
for (const s of r.testResults)
  for (const a of s.assertionResults)
    if (a.status === "failed") console.log(`FAIL ${s.name.replace(/^.*\/test\//, "")} > ${a.fullName}: ${(a.failureMessages?.[0] ?? "").split("\n")[0].slice(0, 300)}`);
EOF
else
  echo "no vitest report ($REPORT)"
  grep -E "^ *(Tests|Test Files) " "$LOG" | tail -2
fi
echo "--- skipped, with reasons:"
grep -oE "\[trtllm[^]]*\] SKIPPED[^\"]*" "$LOG" | sort | uniq -c | sed 's/^ */  /'
echo "--- near-ties accepted (token differences at a measured bf16 margin):"
grep -E "\[trtllm near-tie\]" "$LOG" | sed 's/^ */  /' || echo "  none"
echo "log: $LOG  report: $REPORT"
(( RC == 124 || RC == 137 )) && exit 124
exit $(( RC == 0 ? 0 : 1 ))
