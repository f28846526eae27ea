#!/usr/bin/env bash
# Throughput and CPU per decision of `tailwater rls` (in-memory store) under h2load, the
# neutral HTTP/2 client from Debian's nghttp2-client: h2c, 4 connections x 16 concurrent
# streams, one gRPC-framed ShouldRateLimit request with one descriptor, sent N times.
#
#   scripts/bench-rls.sh                 # 3 runs of 400 000 calls after a warm-up
#   N=200000 RUNS=5 scripts/bench-rls.sh
#   LIMITADOR=/path/to/limitador-server scripts/bench-rls.sh   # the same against limitador
#   REDIS=1 scripts/bench-rls.sh         # the Redis atomic store (starts its own redis-server)
#   REDIS=1 REDIS_MODE=leased scripts/bench-rls.sh   # the Redis leased store
#   CALLGRIND=1 N=10000 scripts/bench-rls.sh  # instructions per decision (valgrind)
#   RLS_ARGS="--grpc-threads 0" scripts/bench-rls.sh  # extra server flags (here: the old runtime)
#
# With REDIS=1 the script also measures, side by side in the same run, the Redis round trip
# the atomic store pays per call: the exact EVALSHA the service sends (captured with
# MONITOR) replayed by redis-benchmark at the same concurrency (64 connections) and with one
# connection, and a PING. The issue's goal is RLS time per call <= 1.2x that round trip.
#
# CPU per decision = (utime + stime of the server process, from /proc/PID/stat) / calls,
# also split into user and system time.
# h2load shares the two cores with the server, as in the issue's limitador figure.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-400000}
RUNS=${RUNS:-3}
PORT=${PORT:-18181}
HTTP_PORT=${HTTP_PORT:-18180}
OUT=${OUT:-$(mktemp -d /tmp/bench-rls.XXXXXX)}
source scripts/rls-bench-common.sh
rls_require h2load python3
rls_fixture

if [[ -n ${LIMITADOR:-} ]]; then
    cat >"$OUT/limits.yaml" <<'YAML'
- namespace: bench
  max_value: 1000000000
  seconds: 1
  conditions: []
  variables: ["descriptors[0].user"]
YAML
    "$LIMITADOR" --rls-port "$PORT" --http-port "$HTTP_PORT" "$OUT/limits.yaml" memory >"$OUT/server.log" 2>&1 &
else
    STORE=()
    if [[ ${REDIS:-0} == 1 ]]; then
        REDIS_PORT=${REDIS_PORT:-18379}
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
            >"$OUT/redis.log" 2>&1 &
        REDIS_PID=$!
        rls_wait_port "$REDIS_PORT"
        # A generous per-call timeout: measure Redis, not the failure policy.
        STORE=(--redis "redis://127.0.0.1:$REDIS_PORT/" --redis-timeout 100ms --failure-policy closed
            --redis-mode "${REDIS_MODE:-atomic}")
    fi
    WRAP=()
    if [[ ${CALLGRIND:-0} == 1 ]]; then
        # Instructions, not time: deterministic on a loaded machine. Instrumentation is off
        # until the warm-up is done (callgrind_control -i on), then dumped after the run.
        rls_require valgrind callgrind_control
        WRAP=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.%p")
    fi
    "${WRAP[@]}" "$TW" rls --config "$OUT/config" --grpc "127.0.0.1:$PORT" --http "127.0.0.1:$HTTP_PORT" \
        "${STORE[@]}" ${RLS_ARGS:-} >"$OUT/server.log" 2>&1 &
fi
PID=$!
trap 'kill $PID ${REDIS_PID:-} 2>/dev/null || true' EXIT
rls_wait_port "$PORT"

URL="http://127.0.0.1:$PORT$RLS_PATH"
echo "cpu: $(rls_cpu_name); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ ${CALLGRIND:-0} == 1 ]]; then
    # One run of N calls (say N=10000: about 100x slower than native), counted from
    # after a 2 000-call warm-up. Instructions per decision = Ir / successful calls.
    rls_h2 "$URL" 2000 >"$OUT/warmup.txt"
    callgrind_control -i on "$PID" >/dev/null
    rls_h2 "$URL" "$N" >"$OUT/run1.txt"
    callgrind_control -d "$PID" >/dev/null
    callgrind_control -i off "$PID" >/dev/null
    ok=$(rls_ok "$OUT/run1.txt")
    f=$(ls -t "$OUT"/callgrind.* | head -1)
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    echo "callgrind: $ok calls, $ir instructions, $((ir / ok)) instructions per decision ($f)"
    echo "functions: callgrind_annotate $f | head -60"
    exit 0
fi
rls_h2 "$URL" 20000 >"$OUT/warmup.txt"
echo "run  calls  decisions/s  mean  cpu_us_per_decision  (user  system)  load1"
for r in $(seq "$RUNS"); do
    before=$(rls_ticks $PID)
    ubefore=$(awk '{print $14}' "/proc/$PID/stat")
    rls_h2 "$URL" "$N" >"$OUT/run$r.txt"
    after=$(rls_ticks $PID)
    uafter=$(awk '{print $14}' "/proc/$PID/stat")
    ok=$(rls_ok "$OUT/run$r.txt")
    rps=$(rls_rate "$OUT/run$r.txt")
    mean=$(awk '/^time for request:/ {print $6}' "$OUT/run$r.txt")
    echo "$r  $ok  $rps  $mean  $(rls_cpu_us "$before" "$after" "$ok")  ($(rls_cpu_us "$ubefore" "$uafter" "$ok")  $(rls_cpu_us "$((before - ubefore))" "$((after - uafter))" "$ok"))  $(rls_load1)"
done
grep -h "status codes" "$OUT"/run*.txt | head -1

if [[ ${REDIS:-0} == 1 && ${REDIS_MODE:-atomic} == atomic ]]; then
    # The service's own EVALSHA, captured from MONITOR during one call, replayed as is.
    mapfile -t EVAL < <(rls_capture_evalsha "$REDIS_PORT" "$URL")
    echo "redis round trip (redis-benchmark, the service's EVALSHA: ${EVAL[*]:0:4} ...)"
    echo "clients  command  requests/s  avg_ms  p50_ms"
    for c in 64 1; do
        for cmd in EVALSHA PING; do
            if [[ $cmd == PING ]]; then args=(PING); else args=("${EVAL[@]}"); fi
            redis-benchmark -p "$REDIS_PORT" -c "$c" -n "$((c == 1 ? 50000 : N / 2))" --csv \
                "${args[@]}" 2>/dev/null | tail -1 |
                awk -F, -v c="$c" -v cmd="$cmd" '{for (i = 1; i <= NF; i++) gsub(/"/, "", $i); print c "  " cmd "  " $2 "  " $3 "  " $5}'
        done
    done
fi
# HTTP 200 does not mean a decision (gRPC errors travel in trailers): count the service's own.
if [[ -z ${LIMITADOR:-} ]]; then
    curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep '^tailwater_rls_calls_total'
fi
echo "outputs in $OUT"
