#!/usr/bin/env bash
# `tailwater load --rls-*` (gRPC mode) vs h2load, side by side against one `tailwater rls`
# (in-memory store): the same ShouldRateLimit request (domain bench, one descriptor
# user=alice), h2c, 4 connections, 64 calls outstanding at most.
#
#   scripts/bench-rls-loadgen.sh               # RUNS=3 alternating pairs, 10 s each
#   RATE=60000 DURATION=10s RUNS=3 scripts/bench-rls-loadgen.sh
#
# h2load is closed-loop (4 x 16 streams, as fast as the server answers); tailwater load is
# open-loop at RATE with --max-in-flight 64 (it cannot exceed the same concurrency; sends
# it delays at the cap are counted). Reported per tool: calls answered per second, and the
# client's own CPU per call (utime + stime of the client process / calls). The ratio of
# interest: our CPU per call / h2load's (the cost of the honest measurement), and our
# achieved rate / h2load's.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RATE=${RATE:-100000}
DURATION=${DURATION:-10s}
PORT=${PORT:-18281}
HTTP_PORT=${HTTP_PORT:-18280}
OUT=${OUT:-$(mktemp -d /tmp/bench-rls-loadgen.XXXXXX)}
# PROFILE=debug SKIP_BUILD=1: an already built dev binary (opt-level 1; not a fair figure).
source scripts/rls-bench-common.sh
rls_require h2load python3
# The same request, framed for h2load (tailwater load builds it from --rls-*).
rls_fixture

"$TW" rls --config "$OUT/config" --grpc "127.0.0.1:$PORT" --http "127.0.0.1:$HTTP_PORT" \
    >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
rls_wait_port "$PORT"
echo "cpu: $(rls_cpu_name)"

URL="http://127.0.0.1:$PORT"
secs=${DURATION%s}
# CPU seconds (user + system) of a finished command, from GNU time's format.
# timed OUTFILE CMD...: runs CMD with stdout to OUTFILE, prints its CPU seconds.
timed() {
    local out=$1; shift
    /usr/bin/time -f "%U %S" -o "$OUT/time.txt" "$@" >"$out"
    awk '{print $1 + $2}' "$OUT/time.txt"
}

echo "run  tool            calls/s    cpu_us_per_call  notes"
for r in $(seq "$RUNS"); do
    cpu=$(timed "$OUT/h2load$r.txt" h2load -D "$secs" -c 4 -m 16 -d "$OUT/request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        "$URL$RLS_PATH")
    ok=$(rls_ok "$OUT/h2load$r.txt")
    rps=$(rls_rate "$OUT/h2load$r.txt")
    echo "$r  h2load          $rps  $(python3 -c "print(f'{$cpu / max($ok, 1) * 1e6:.2f}')")  ok=$ok"
    cpu=$(timed "$OUT/load$r.txt" "$TW" load "$URL" --rls-domain bench --rls-descriptor user=alice \
        -c 4 --max-in-flight 64 -R "$RATE" -d "$DURATION" -q --json "$OUT/load$r.json")
    python3 - "$OUT/load$r.json" "$cpu" "$r" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); cpu = float(sys.argv[2])
ok = j["grpc"].get("OK", 0)
print(f'{sys.argv[3]}  tailwater load  {j["achieved_rate"]:.0f}  {cpu / max(ok, 1) * 1e6:.2f}'
      f'  ok={ok} p99={j["latency_us"]["corrected"]["p99"]}us delayed_by_cap={j["delayed_by_cap"]}')
PY
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "outputs in $OUT"
