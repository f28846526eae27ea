#!/usr/bin/env bash
# `tailwater rls` on Redis atomic against "one Redis round trip per request", in
# alternating rounds on one machine (issue 17's goal: RLS time per call <= 1.2x that).
#
#   scripts/bench-rls-redis.sh              # 3 rounds of 100 000 calls each
#   N=200000 ROUNDS=5 scripts/bench-rls-redis.sh
#
# One redis-server (no persistence) and two services over it: `group` (group commit, the
# default) and `single` (--redis-group-commit false: one script per call). Each round runs,
# one after the other:
#   1. h2load against `group`   (h2c, 4 connections x 16 streams, the gRPC-framed request
#      with one descriptor, as in the issue);
#   2. h2load against `single`;
#   3. redis-benchmark, 64 connections (the same concurrency), replaying the EVALSHA the
#      service sends for ONE call (captured with MONITOR from `single`: the per-call
#      script; `group` sends the same work for a lone call). That is "one Redis round trip
#      per request": the mean latency of a client that waits for one script per request.
# Printed per run: calls/s, mean latency, CPU per decision of the service and of
# redis-server (utime + stime from /proc/PID/stat over the run / decisions), the
# 1-minute load average, and the ratio mean / redis-benchmark mean of the same round.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$(mktemp -d /tmp/bench-rls-redis.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-target}

for tool in h2load redis-server redis-benchmark redis-cli python3; do
    command -v $tool >/dev/null || { echo "$tool missing" >&2; exit 1; }
done
[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release -p tailwater >&2
TW="$TARGET/release/tailwater"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REDIS_PORT=$(free_port)
G_PORT=$(free_port); G_HTTP=$(free_port); S_PORT=$(free_port); S_HTTP=$(free_port)

mkdir -p "$OUT/config"
cat >"$OUT/config/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
YAML
python3 - "$OUT/request.bin" <<'PY'
import struct, sys
def field(num, payload):
    return bytes([num << 3 | 2, len(payload)]) + payload
entry = field(1, b"user") + field(2, b"alice")
msg = field(1, b"bench") + field(2, field(1, entry))
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY

PIDS=()
trap 'kill ${PIDS[*]} 2>/dev/null || true' EXIT
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=($REDIS_PID)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

start_rls() { # port http group_commit log
    "$TW" rls --config "$OUT/config" --grpc "127.0.0.1:$1" --http "127.0.0.1:$2" \
        --redis "redis://127.0.0.1:$REDIS_PORT/" --redis-timeout 100ms --failure-policy closed \
        --redis-group-commit "$3" >"$4" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && break; sleep 0.1; done
}
start_rls "$G_PORT" "$G_HTTP" true "$OUT/group.log"; G_PID=${PIDS[-1]}
start_rls "$S_PORT" "$S_HTTP" false "$OUT/single.log"; S_PID=${PIDS[-1]}

url() { echo "http://127.0.0.1:$1/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"; }
h2() { # port n [clients streams]
    h2load -n "$2" -c "${3:-4}" -m "${4:-16}" -d "$OUT/request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$(url "$1")"
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
load1() { cut -d' ' -f1 /proc/loadavg; }
# h2load's mean "time for request" in ms (it prints us, ms or s).
mean_ms() { awk '/^time for request:/ {v = $6; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    print (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : v)); exit}' "$1"; }

h2 "$G_PORT" 20000 >"$OUT/warm-group.txt"
h2 "$S_PORT" 20000 >"$OUT/warm-single.txt"

# The per-call EVALSHA, captured from the one-script-per-call service.
redis-cli -p "$REDIS_PORT" MONITOR >"$OUT/monitor.txt" 2>&1 &
MON=$!
sleep 0.3
h2 "$S_PORT" 1 1 1 >/dev/null
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
[[ ${#EVAL[@]} -gt 3 ]] || { echo "no EVALSHA captured" >&2; exit 1; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "per-call script replayed by redis-benchmark: ${EVAL[*]:0:3} ... (${#EVAL[@]} words)"
echo "round  what  calls/s  mean_ms  svc_cpu_us/dec  redis_cpu_us/dec  load1  ratio_to_rtt"

rls_round() { # round name port pid
    local f="$OUT/r$1-$2.txt" b r ra rb
    b=$(ticks "$4"); rb=$(ticks "$REDIS_PID")
    h2 "$3" "$N" >"$f"
    ra=$(ticks "$REDIS_PID"); r=$(ticks "$4")
    local ok rps
    ok=$(awk '/^requests:/ {print $8}' "$f")
    rps=$(awk '/^finished in/ {print $4}' "$f")
    echo "$ok $rps $(mean_ms "$f") $(python3 -c "print(f'{($r - $b) / $TCK / max($ok, 1) * 1e6:.2f} {($ra - $rb) / $TCK / max($ok, 1) * 1e6:.2f}')") $(load1)"
}

for r in $(seq "$ROUNDS"); do
    read -r g_ok g_rps g_mean g_cpu g_rcpu g_load < <(rls_round "$r" group "$G_PORT" "$G_PID")
    read -r s_ok s_rps s_mean s_cpu s_rcpu s_load < <(rls_round "$r" single "$S_PORT" "$S_PID")
    rb=$(ticks "$REDIS_PID")
    redis-benchmark -p "$REDIS_PORT" -c 64 -n "$N" --csv "${EVAL[@]}" 2>/dev/null | tail -1 >"$OUT/r$r-rtt.csv"
    ra=$(ticks "$REDIS_PID")
    read -r b_rps b_mean < <(awk -F, '{gsub(/"/, ""); print $2, $3}' "$OUT/r$r-rtt.csv")
    b_rcpu=$(python3 -c "print(f'{($ra - $rb) / $TCK / $N * 1e6:.2f}')")
    ratio() { python3 -c "print(f'{$1 / $b_mean:.2f}x')"; }
    echo "$r  rls group commit  $g_rps  $g_mean  $g_cpu  $g_rcpu  $g_load  $(ratio "$g_mean")"
    echo "$r  rls one script/call  $s_rps  $s_mean  $s_cpu  $s_rcpu  $s_load  $(ratio "$s_mean")"
    echo "$r  redis-benchmark EVALSHA c=64  $b_rps  $b_mean  -  $b_rcpu  $(load1)  1.00x"
    [[ $g_ok == "$N" && $s_ok == "$N" ]] || echo "  (not every call succeeded: group $g_ok, single $s_ok)"
done
for p in "$G_HTTP" "$S_HTTP"; do
    curl -s "http://127.0.0.1:$p/metrics" | grep -E '^tailwater_rls_calls_total|^tailwater_rls_redis_(calls|grouped_decisions)_total' || true
done
echo "outputs in $OUT"
