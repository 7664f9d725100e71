#!/usr/bin/env bash
# The trtd deployment on a GPU machine without Node or nats-server (issue 16), on a random-weight 8B-shaped model:
#   bash tools/gpu/run_deploy.sh [PARTS]        PARTS: comma list, default "all" =
#        model,openai,equality,overhead,kv,bench-long,bench-short
# Carry (git-ignored; name them in the device run's carry): .gpupack (tools/gpu/pack-node.sh + tools/gpu/pack-deploy.sh:
# node, node_modules, nats-server, the openai client), packages/trtllm/build/libtrtd_executor_cuda.so and
# packages/kv-transfer/build/libkvx.so.
# Parts (each under `timeout`, sized from what is left of TRTD_DEPLOY_BUDGET seconds, default 540):
#   model       make the model if absent (tools/gpu/make_models.py --shapes 8b, bf16, on the GPU) and give it a
#               tokenizer (tools/gpu/deploy-tokenizer.ts)
#   openai, equality, overhead, kv   against one stack: the launcher (nats-server, 1 prefill + 1 decode worker, both on
#               GPU 0 in separate processes, --gpu-memory-fraction TRTD_DEPLOY_FRACTION each, an api that disaggregates
#               every prompt) + a second api with --no-disaggregation on the same request plane; see
#               tools/gpu/deploy-checks.ts for what each checks
#   bench-long, bench-short   tools/bench experiment --sequential: 1 prefill + 1 decode vs 2 aggregated decode workers
#               on the one GPU, one stack at a time; long prompts + short outputs, then short prompts + long outputs
# Everything goes to $OUT (default /tmp/trtd-deploy-out): deploy.log (all output), one JSON per part, the stack's logs,
# bench-long/ and bench-short/ (results.json, records.jsonl, the SVG charts, logs/); summary.json and a table last,
# with the issue's targets met or missed, computed from the measurements (tools/gpu/deploy-summary.mjs).
# Overrides (a CPU dry run: TRTD_DEPLOY_EXECUTOR=reference TRTD_DEPLOY_MODEL=models/tiny plus small sizes; see README):
#   TRTD_DEPLOY_EXECUTOR (cuda), TRTD_DEPLOY_MODEL (/tmp/trtd-models/8b-bf16), TRTD_DEPLOY_FRACTION (0.3),
#   TRTD_DEPLOY_PROMPTS (40), TRTD_DEPLOY_MAX_TOKENS (24), TRTD_DEPLOY_OVERHEAD_TOKENS (1024), TRTD_DEPLOY_OVERHEAD_REPS
#   (20), TRTD_DEPLOY_OVERHEAD_WARMUP (100 requests per api first: the steady state), TRTD_DEPLOY_KV_TOKENS (2048), TRTD_DEPLOY_KV_REPS (10), TRTD_DEPLOY_THREADS (1; reference executor threads),
#   TRTD_DEPLOY_LONG ("--input-len uniform:2048:8192 --output-len uniform:16:32 --rates 1,2,4 --num-requests 10
#   --time-limit 20"), TRTD_DEPLOY_SHORT ("--input-len uniform:64:256 --output-len uniform:128:192 --rates 2,4,8
#   --num-requests 10 --time-limit 20"), TRTD_DEPLOY_BENCH_ARGS (more experiment flags for both), TRTD_DEPLOY_KV_BLOCKS
#   (experiment's KV blocks per worker: 6144 on cuda = 12 GiB for the 8B shape), TRTD_DEPLOY_MAX_TOKENS_PER_ITERATION
#   (2048) and TRTD_DEPLOY_MAX_BATCH_SIZE (64) for every executor of the run, PYTHON (/opt/torch/.venv/bin/python).
# Exit status: 0 when every part ran and its checks passed (targets are reported, not part of the status).
set -u -o pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${OUT:-/tmp/trtd-deploy-out}"
mkdir -p "$OUT"
LOG="$OUT/deploy.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
BUDGET="${TRTD_DEPLOY_BUDGET:-540}"
PARTS="${1:-all}"
[ "$PARTS" = all ] && PARTS="model,openai,equality,overhead,kv,bench-long,bench-short"
EXECUTOR="${TRTD_DEPLOY_EXECUTOR:-cuda}"
MODEL="${TRTD_DEPLOY_MODEL:-/tmp/trtd-models/8b-bf16}"
case "$MODEL" in /*) ;; *) MODEL="$REPO/$MODEL" ;; esac
FRACTION="${TRTD_DEPLOY_FRACTION:-0.3}"
THREADS="${TRTD_DEPLOY_THREADS:-1}"
# The stack's workers and the executor the overhead part opens run with the same settings (chunking changes TTFT).
MTPI="${TRTD_DEPLOY_MAX_TOKENS_PER_ITERATION:-2048}"
MBS="${TRTD_DEPLOY_MAX_BATCH_SIZE:-64}"
PYTHON="${PYTHON:-/opt/torch/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
has() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# timeout for a part: its own cap, but never past the budget minus 20 s kept for stopping and the summary.
cap() { local l=$(( $(left) - 20 )); (( l < 1 )) && l=1; (( $1 < l )) && echo "$1" || echo "$l"; }
declare -A STATUS
note() { STATUS[$1]="$2"; echo "--- part $1: $2 ($(( $(date +%s) - START )) s elapsed)"; }

echo "=== trtd deploy run: parts $PARTS, executor $EXECUTOR, model $MODEL, budget ${BUDGET}s; $(date -u +%FT%TZ); git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) cores"
timeout 20 nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"

# --- Node, nats-server and the openai client from .gpupack (the machine has none of them)
# shellcheck source=tools/gpu/unpack-node.sh
source tools/gpu/unpack-node.sh || { echo "unpack-node.sh failed: run tools/gpu/pack-node.sh and carry .gpupack"; exit 3; }
cd "$REPO"
if [ -f .gpupack/nats-server.xz ]; then
  xz -dc .gpupack/nats-server.xz > /tmp/trtd-node/bin/nats-server && chmod +x /tmp/trtd-node/bin/nats-server
fi
[ -d node_modules/openai ] || { [ -f .gpupack/openai.tar.xz ] && tar -xJf .gpupack/openai.tar.xz; }
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(command -v nats-server || true)}"
[ -x "$NATS_SERVER_BIN" ] || { echo "no nats-server: run tools/gpu/pack-deploy.sh and carry .gpupack"; exit 3; }
echo "node $(command -v node) $(node --version); nats-server $NATS_SERVER_BIN $("$NATS_SERVER_BIN" --version 2>&1 | head -1); openai $(node -p 'require("./node_modules/openai/package.json").version' 2>/dev/null || echo missing)"
NODE_TS=(node --import tsx --conditions=source)

# --- the executor library
if [ "$EXECUTOR" = cuda ]; then
  LIB="$REPO/packages/trtllm/build/libtrtd_executor_cuda.so"
  [ -f "$LIB" ] || { echo "no $LIB: build it where nvcc is and carry it"; exit 4; }
  # shellcheck source=tools/gpu/cublas-path.sh
  source tools/gpu/cublas-path.sh && add_cublas_dirs "$PYTHON"
  missing=$(ldd "$LIB" 2>&1 | grep "not found")
  [ -n "$missing" ] && echo "WARNING: $LIB does not resolve: $missing"
  EXEC_ARGS=(--executor cuda)
  STACK_MEM=(--gpu-memory-fraction "$FRACTION")
  KV_BLOCKS="${TRTD_DEPLOY_KV_BLOCKS:-6144}"
else
  LIB="$REPO/packages/trtllm/build/libtrtd_ref.so"
  [ -f "$LIB" ] || { echo "no $LIB: npm run build:native (TRTD_CUDA=OFF)"; exit 4; }
  EXEC_ARGS=(--executor reference --threads "$THREADS")
  STACK_MEM=()
  KV_BLOCKS="${TRTD_DEPLOY_KV_BLOCKS:-2048}"
fi
export TRTD_EXECUTOR_LIB="$LIB"
echo "executor library: $LIB ($(stat -c '%s bytes' "$LIB"))"

# --- the model
if has model; then
  T=$(cap 240)
  if [ ! -f "$MODEL/config.json" ]; then
    [ "$(basename "$MODEL")" = 8b-bf16 ] || { echo "$MODEL has no config.json and is not <dir>/8b-bf16"; exit 5; }
    echo "making $MODEL with make_models.py (timeout ${T}s)"
    timeout -k 5 "$T" "$PYTHON" tools/gpu/make_models.py "$(dirname "$MODEL")" --shapes 8b --dtype bfloat16
    rc=$?
    (( rc == 0 )) || { note model "make_models.py failed (rc $rc)"; exit 5; }
  fi
  timeout -k 5 60 "${NODE_TS[@]}" tools/gpu/deploy-tokenizer.ts "$MODEL" && note model ok || { note model "tokenizer check failed"; exit 5; }
fi
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL (run the model part)"; exit 5; }

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
http_ok() { node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"; }
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
# Stops a process and everything under it by PID: SIGTERM, up to $2 s, then SIGKILL for whatever is left.
stop_tree() {
  local pid=$1 grace=$2 all p i
  all="$pid $(descendants "$pid" | tr '\n' ' ')"
  kill -TERM "$pid" 2>/dev/null
  for (( i = 0; i < grace * 10; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  # what it started exits on its own shortly after (tsx's esbuild helpers when their node is gone): 3 s more
  for (( i = 0; i < 30; i++ )); do
    local alive=""
    for p in $all; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $all; do
    kill -0 "$p" 2>/dev/null && { echo "SIGKILL $p ($(ps -o comm= -p "$p" 2>/dev/null))"; kill -KILL "$p" 2>/dev/null; }
  done
  wait "$pid" 2>/dev/null
}
# Waits (bounded) for a regex in a log file while the process lives; prints the first match.
wait_line() {
  local file=$1 re=$2 pid=$3 secs=$4 i m
  for (( i = 0; i < secs * 5; i++ )); do
    m=$(grep -oE "$re" "$file" 2>/dev/null | head -1)
    [ -n "$m" ] && { echo "$m"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

LAUNCHER_PID=""
AGG_PID=""
cleanup() {
  [ -n "$AGG_PID" ] && stop_tree "$AGG_PID" 10
  [ -n "$LAUNCHER_PID" ] && stop_tree "$LAUNCHER_PID" 40
  AGG_PID=""
  LAUNCHER_PID=""
}
trap cleanup EXIT

# --- the stack for the openai / equality / overhead / kv parts
if has openai || has equality || has overhead || has kv; then
  NATS_PORT=$(free_port); API_PORT=$(free_port); AGG_PORT=$(free_port)
  # The launcher's nats-server refuses anonymous clients; the second api uses the api account the launcher writes
  # out (mode 0600; outside $OUT, whose files come back as results).
  CREDS_DIR=$(mktemp -d); CREDS="$CREDS_DIR/nats-api.env"
  T=$(cap 240)
  echo "starting the launcher: nats 127.0.0.1:$NATS_PORT, api 127.0.0.1:$API_PORT (bring-up bound ${T}s)"
  "${NODE_TS[@]}" apps/launcher/src/main.ts --context-worker-count 1 --generate-worker-count 1 --worker-name deploy \
    --initialize-request-plane --request-plane-uri "127.0.0.1:$NATS_PORT" --request-plane-credentials "$CREDS" \
    --api-server-host 127.0.0.1 --api-server-port "$API_PORT" \
    --model-dir "$MODEL" --disagg-min-prompt-tokens 1 --ready-timeout-ms $(( T * 1000 )) --max-tokens-per-iteration "$MTPI" --max-batch-size "$MBS" \
    "${EXEC_ARGS[@]}" "${STACK_MEM[@]}" \
    > "$OUT/stack-launcher.log" 2>&1 &
  LAUNCHER_PID=$!
  T0=$(date +%s)
  if m=$(wait_line "$OUT/stack-launcher.log" "OpenAI API at http://[0-9.]+:[0-9]+" "$LAUNCHER_PID" "$T"); then
    DISAGG_URL="${m#OpenAI API at }"
    ( set -a; . "$CREDS"; set +a
      exec "${NODE_TS[@]}" apps/api/src/main.ts --tokenizer "$MODEL" --request-plane-uri "127.0.0.1:$NATS_PORT" --api-server-host 127.0.0.1 \
        --api-server-port "$AGG_PORT" --worker-name deploy --no-disaggregation ) > "$OUT/stack-agg-api.log" 2>&1 &
    AGG_PID=$!
    AGG_URL="http://127.0.0.1:$AGG_PORT"
    ok=""
    for (( i = 0; i < 150; i++ )); do
      http_ok "$AGG_URL/health" && { ok=1; break; }
      kill -0 "$AGG_PID" 2>/dev/null || break
      sleep 0.2
    done
    STACK_UP_S=$(( $(date +%s) - T0 ))
    if [ -n "$ok" ]; then
      echo "stack up in ${STACK_UP_S}s: disaggregated $DISAGG_URL, aggregated $AGG_URL"
      echo "{\"stackUpS\": $STACK_UP_S, \"disaggUrl\": \"$DISAGG_URL\", \"aggUrl\": \"$AGG_URL\"}" > "$OUT/stack.json"
    else
      echo "the aggregated api did not become healthy:"; tail -20 "$OUT/stack-agg-api.log"; DISAGG_URL=""
    fi
  else
    echo "the launcher did not become ready within ${T}s:"; tail -40 "$OUT/stack-launcher.log"; DISAGG_URL=""
  fi
  CHECK=("${NODE_TS[@]}" tools/gpu/deploy-checks.ts --disagg-url "${DISAGG_URL:-}" --agg-url "${AGG_URL:-}" --model-dir "$MODEL" --threads "$THREADS" \
    --max-tokens-per-iteration "$MTPI" --max-batch-size "$MBS")
  run_check() { # part cap extra-args...
    local part=$1 c; c=$(cap "$2"); shift 2
    if [ -z "${DISAGG_URL:-}" ]; then note "$part" "not run: the stack is not up"; return; fi
    echo "=== part $part (timeout ${c}s)"
    timeout -k 5 "$c" "${CHECK[@]}" --part "$part" --out "$OUT/$part.json" "$@"
    local rc=$?
    case $rc in 0) note "$part" ok ;; 124|137) note "$part" "TIMEOUT after ${c}s" ;; *) note "$part" "failed (rc $rc)" ;; esac
  }
  has openai && run_check openai 60
  has equality && run_check equality 180 --prompts "${TRTD_DEPLOY_PROMPTS:-40}" --max-tokens "${TRTD_DEPLOY_MAX_TOKENS:-24}"
  has overhead && run_check overhead 90 --overhead-tokens "${TRTD_DEPLOY_OVERHEAD_TOKENS:-1024}" --overhead-reps "${TRTD_DEPLOY_OVERHEAD_REPS:-20}" --overhead-warmup "${TRTD_DEPLOY_OVERHEAD_WARMUP:-100}"
  has kv && run_check kv 60 --kv-tokens "${TRTD_DEPLOY_KV_TOKENS:-2048}" --kv-reps "${TRTD_DEPLOY_KV_REPS:-10}"
  cleanup
  rm -rf "$CREDS_DIR"
  echo "stack stopped ($(( $(date +%s) - START )) s elapsed)"
fi

# --- tools/bench: disaggregated vs aggregated on the same GPU budget (one stack at a time)
run_bench() { # part cap mix-args
  local part=$1 c; c=$(cap "$2")
  if (( c < 60 )); then note "$part" "not run: ${c}s left of the budget"; return; fi
  echo "=== part $part (timeout ${c}s): experiment $3 ${TRTD_DEPLOY_BENCH_ARGS:-}"
  rm -rf "$OUT/$part"
  # shellcheck disable=SC2086
  timeout -k 15 "$c" "${NODE_TS[@]}" tools/bench/src/cli.ts experiment --sequential --model-dir "$MODEL" --arrangements disagg,agg \
    --launcher-args="${EXEC_ARGS[*]}" --threads "$THREADS" --kv-block-count "$KV_BLOCKS" --max-tokens-per-iteration "$MTPI" --overhead-reps 0 --startup-timeout 240 \
    --request-timeout 60 --stop-grace 20 --out "$OUT/$part" $3 ${TRTD_DEPLOY_BENCH_ARGS:-} > "$OUT/$part.stdout" 2> >(tee "$OUT/$part.stderr" >&2)
  local rc=$?
  cat "$OUT/$part.stdout"
  case $rc in 0) note "$part" ok ;; 124|137) note "$part" "TIMEOUT after ${c}s" ;; *) note "$part" "failed (rc $rc)" ;; esac
}
has bench-long && run_bench bench-long 200 "${TRTD_DEPLOY_LONG:---input-len uniform:2048:8192 --output-len uniform:16:32 --rates 1,2,4 --num-requests 10 --time-limit 20}"
has bench-short && run_bench bench-short 200 "${TRTD_DEPLOY_SHORT:---input-len uniform:64:256 --output-len uniform:128:192 --rates 2,4,8 --num-requests 10 --time-limit 20}"

# --- the summary, last
{
  echo "{"
  first=1
  for k in "${!STATUS[@]}"; do
    [ $first = 1 ] || echo ","
    first=0
    printf '  "%s": "%s"' "$k" "${STATUS[$k]//\"/\'}"
  done
  echo; echo "}"
} > "$OUT/status.json"
echo
echo "================ DEPLOY SUMMARY (total $(( $(date +%s) - START ))s of ${BUDGET}s; executor $EXECUTOR; model $MODEL) ================"
timeout 30 node tools/gpu/deploy-summary.mjs "$OUT"
fail=0
for k in "${!STATUS[@]}"; do [ "${STATUS[$k]}" = ok ] || fail=1; done
exit $fail
