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
# Then a second pass: the constrained suite (test/constrained.test.ts) again with TRTD_CUDA_DEVICE_MASK=1, so that
# every executor it opens masks and draws its constrained rows on the device (the CUDA executor's switch, off by
# default until such a run has passed); the suite's own device-mask tests run in both passes.
# Output: everything to $OUT/conformance.log (OUT default /tmp/trtd-gpu-out), the vitest JSON reports to
# $OUT/conformance.json and $OUT/conformance-device-mask.json (each pass's output also alone in
# $OUT/conformance-suites.log and $OUT/conformance-device-mask.log), and a summary per pass last: passed / failed /
# skipped counts, each failure, each SKIPPED reason and each near-tie the suites accepted (with its measured margin).
# Overrides: OUT, TRTD_CONFORMANCE_TIMEOUT (seconds for vitest, default 200), TRTD_CONFORMANCE_ARGS (extra vitest
# arguments of the first pass, e.g. a test file), TRTD_CONFORMANCE_DEVICE_MASK=0 (no second pass),
# TRTD_CONFORMANCE_MASK_TIMEOUT (seconds for the second pass, default 150), TRTD_CUDA_LIB_DIRS (more folders to
# search for libcublas.so.13), TRTD_TEST_EXECUTOR=reference (a dry run of the whole script on a CPU machine, the
# suites against the reference).
# Exit status: 0 when every pass passed (no failures), 124 when one timed out, else 1 (3: no node, 4: no CUDA library).
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
MASK_PASS="${TRTD_CONFORMANCE_DEVICE_MASK:-1}"
MASK_LIMIT="${TRTD_CONFORMANCE_MASK_TIMEOUT:-150}"
unset TRTD_CUDA_DEVICE_MASK  # the first pass: the library's default (host draws for constrained rows)

# One vitest pass: run_pass <report> <limit> <pass log> [vitest args...]; returns vitest's status (124/137: timeout).
run_pass() {
  local report=$1 limit=$2 passlog=$3
  shift 3
  rm -f "$report"
  timeout -k 10 "$limit" node node_modules/vitest/vitest.mjs run --project trtllm --reporter=verbose --reporter=json \
    --outputFile.json="$report" "$@" 2>&1 | tee "$passlog"
  return "${PIPESTATUS[0]}"
}

# The summary of one pass: summarize <title> <seconds> <rc> <limit> <report> <pass log>.
summarize() {
  local title=$1 dt=$2 rc=$3 limit=$4 report=$5 passlog=$6
  echo
  echo "================ $title (vitest ${dt}s, total $(( $(date +%s) - START ))s, rc $rc) ================"
  (( rc == 124 || rc == 137 )) && echo "TIMEOUT: vitest ran past ${limit}s and was killed (the counts below are from the log, if any)"
  if [ -s "$report" ]; then
    node - "$report" <<'EOF'
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
    echo "no vitest report ($report)"
    grep -E "^ *(Tests|Test Files) " "$passlog" | tail -2
  fi
  echo "--- skipped, with reasons:"
  grep -oE "\[trtllm[^]]*\] SKIPPED[^\"]*" "$passlog" | sort | uniq -c | sed 's/^ */  /'
  echo "--- near-ties accepted (token differences at a measured bf16 margin):"
  grep -E "\[trtllm near-tie\]" "$passlog" | sed 's/^ */  /' || echo "  none"
  echo "log: $LOG  report: $report"
}

echo "TRTD_TEST_EXECUTOR=$TRTD_TEST_EXECUTOR TRTD_CUDA=$TRTD_CUDA; vitest timeout ${LIMIT}s"
T0=$(date +%s)
# shellcheck disable=SC2086
run_pass "$REPORT" "$LIMIT" "$OUT/conformance-suites.log" ${TRTD_CONFORMANCE_ARGS:-}
RC=$?
DT=$(( $(date +%s) - T0 ))

RC2=0
if [ "$MASK_PASS" != "0" ]; then
  echo
  echo "=== second pass: test/constrained.test.ts with TRTD_CUDA_DEVICE_MASK=1 (device token masks); vitest timeout ${MASK_LIMIT}s"
  T1=$(date +%s)
  TRTD_CUDA_DEVICE_MASK=1 run_pass "$OUT/conformance-device-mask.json" "$MASK_LIMIT" "$OUT/conformance-device-mask.log" test/constrained.test.ts
  RC2=$?
  DT2=$(( $(date +%s) - T1 ))
fi

summarize "CONFORMANCE SUMMARY" "$DT" "$RC" "$LIMIT" "$REPORT" "$OUT/conformance-suites.log"
if [ "$MASK_PASS" != "0" ]; then
  summarize "CONFORMANCE SUMMARY, TRTD_CUDA_DEVICE_MASK=1 (constrained suite)" "$DT2" "$RC2" "$MASK_LIMIT" \
    "$OUT/conformance-device-mask.json" "$OUT/conformance-device-mask.log"
else
  echo "(no second pass: TRTD_CONFORMANCE_DEVICE_MASK=0)"
fi
for rc in "$RC" "$RC2"; do (( rc == 124 || rc == 137 )) && exit 124; done
exit $(( RC == 0 && RC2 == 0 ? 0 : 1 ))
