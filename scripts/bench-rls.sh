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
#
# With REDIS=1 the script also measures, side by side in the same run, the Redis round trip
# the atomic store pays per call: the exact EVALSHA the service sends (captured with
# MONITOR) replayed by redis-benchmark at the same concurrency (64 connections) and with one
# connection, and a PING. The issue's goal is RLS time per call <= 1.2x that round trip.
#
# CPU per decision = (utime + stime of the server process, from /proc/PID/stat) / calls.
# h2load shares the two cores with the server, as in the issue's limitador figure.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-400000}
RUNS=${RUNS:-3}
PORT=${PORT:-18181}
HTTP_PORT=${HTTP_PORT:-18180}
OUT=${OUT:-$(mktemp -d /tmp/bench-rls.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-target}

command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 1; }
[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release -p tailwater >&2
TW="$TARGET/release/tailwater"

mkdir -p "$OUT/config"
cat >"$OUT/config/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
YAML

# RateLimitRequest{domain: "bench", descriptors: [{entries: [{key: "user", value: "alice"}]}]}
# in protobuf, behind the 5-byte gRPC frame header (uncompressed, big-endian length).
python3 - "$OUT/request.bin" <<'PY'
import struct, sys
def field(num, payload):
    return bytes([num << 3 | 2, len(payload)]) + payload
entry = field(1, b"user") + field(2, b"alice")
descriptor = field(1, entry)
msg = field(1, b"bench") + field(2, descriptor)
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY

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
        for _ in $(seq 50); do
            redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        # A generous per-call timeout: measure Redis, not the failure policy.
        STORE=(--redis "redis://127.0.0.1:$REDIS_PORT/" --redis-timeout 100ms --failure-policy closed
            --redis-mode "${REDIS_MODE:-atomic}")
    fi
    "$TW" rls --config "$OUT/config" --grpc "127.0.0.1:$PORT" --http "127.0.0.1:$HTTP_PORT" \
        "${STORE[@]}" >"$OUT/server.log" 2>&1 &
fi
PID=$!
trap 'kill $PID ${REDIS_PID:-} 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.1
done

URL="http://127.0.0.1:$PORT/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
h2() {
    h2load -n "$1" -c 4 -m 16 -d "$OUT/request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$URL"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
TCK=$(getconf CLK_TCK)

h2 20000 >"$OUT/warmup.txt"
echo "run  calls  decisions/s  mean  cpu_us_per_decision"
for r in $(seq "$RUNS"); do
    before=$(cpu_ticks)
    h2 "$N" >"$OUT/run$r.txt"
    after=$(cpu_ticks)
    ok=$(awk '/^requests:/ {print $8}' "$OUT/run$r.txt")
    rps=$(awk '/^finished in/ {print $4}' "$OUT/run$r.txt")
    mean=$(awk '/^time for request:/ {print $6}' "$OUT/run$r.txt")
    cpu=$(python3 -c "print(f'{($after - $before) / $TCK / max($ok, 1) * 1e6:.2f}')")
    echo "$r  $ok  $rps  $mean  $cpu"
done
grep -h "status codes" "$OUT"/run*.txt | head -1

if [[ ${REDIS:-0} == 1 && ${REDIS_MODE:-atomic} == atomic ]]; then
    # The service's own EVALSHA, captured from MONITOR during one call, replayed as is.
    redis-cli -p "$REDIS_PORT" MONITOR >"$OUT/monitor.txt" 2>&1 &
    MON=$!
    sleep 0.3
    h2load -n 1 -c 1 -d "$OUT/request.bin" -H 'content-type: application/grpc' \
        -H 'te: trailers' "$URL" >/dev/null
    sleep 0.3
    kill $MON 2>/dev/null || true
    wait $MON 2>/dev/null || true
    mapfile -t EVAL < <(python3 - "$OUT/monitor.txt" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if '"EVALSHA"' in line:
        for a in re.findall(r'"((?:[^"\\]|\\.)*)"', line.split('] ', 1)[1]):
            print(a)
        break
PY
)
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
