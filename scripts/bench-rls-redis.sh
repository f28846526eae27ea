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
source scripts/rls-bench-common.sh
rls_require h2load redis-server redis-benchmark redis-cli python3
REDIS_PORT=$(rls_free_port)
G_PORT=$(rls_free_port); G_HTTP=$(rls_free_port); S_PORT=$(rls_free_port); S_HTTP=$(rls_free_port)
rls_fixture

PIDS=()
trap 'kill ${PIDS[*]} 2>/dev/null || true' EXIT
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=($REDIS_PID)
rls_wait_port "$REDIS_PORT"

start_rls() { # port http group_commit log
    "$TW" rls --config "$OUT/config" --grpc "127.0.0.1:$1" --http "127.0.0.1:$2" \
        --redis "redis://127.0.0.1:$REDIS_PORT/" --redis-timeout 100ms --failure-policy closed \
        --redis-group-commit "$3" >"$4" 2>&1 &
    PIDS+=($!)
    rls_wait_port "$1"
}
start_rls "$G_PORT" "$G_HTTP" true "$OUT/group.log"; G_PID=${PIDS[-1]}
start_rls "$S_PORT" "$S_HTTP" false "$OUT/single.log"; S_PID=${PIDS[-1]}

url() { echo "http://127.0.0.1:$1$RLS_PATH"; }
h2() { # port n [clients streams]
    rls_h2 "$(url "$1")" "$2" "${3:-4}" "${4:-16}"
}
ticks() { rls_ticks "$1"; }
load1() { rls_load1; }
# h2load's mean "time for request" in ms (it prints us, ms or s).
mean_ms() { awk '/^time for request:/ {v = $6; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    print (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : v)); exit}' "$1"; }

h2 "$G_PORT" 20000 >"$OUT/warm-group.txt"
h2 "$S_PORT" 20000 >"$OUT/warm-single.txt"

# The per-call EVALSHA, captured from the one-script-per-call service.
mapfile -t EVAL < <(rls_capture_evalsha "$REDIS_PORT" "$(url "$S_PORT")")
[[ ${#EVAL[@]} -gt 3 ]] || { echo "no EVALSHA captured" >&2; exit 1; }
echo "cpu: $(rls_cpu_name)"
echo "per-call script replayed by redis-benchmark: ${EVAL[*]:0:3} ... (${#EVAL[@]} words)"
echo "round  what  calls/s  mean_ms  svc_cpu_us/dec  redis_cpu_us/dec  load1  ratio_to_rtt"

rls_round() { # round name port pid
    local f="$OUT/r$1-$2.txt" b r ra rb
    b=$(ticks "$4"); rb=$(ticks "$REDIS_PID")
    h2 "$3" "$N" >"$f"
    ra=$(ticks "$REDIS_PID"); r=$(ticks "$4")
    local ok rps
    ok=$(rls_ok "$f")
    rps=$(rls_rate "$f")
    echo "$ok $rps $(mean_ms "$f") $(rls_cpu_us "$b" "$r" "$ok") $(rls_cpu_us "$rb" "$ra" "$ok") $(load1)"
}

for r in $(seq "$ROUNDS"); do
    read -r g_ok g_rps g_mean g_cpu g_rcpu g_load < <(rls_round "$r" group "$G_PORT" "$G_PID")
    read -r s_ok s_rps s_mean s_cpu s_rcpu s_load < <(rls_round "$r" single "$S_PORT" "$S_PID")
    rb=$(ticks "$REDIS_PID")
    redis-benchmark -p "$REDIS_PORT" -c 64 -n "$N" --csv "${EVAL[@]}" 2>/dev/null | tail -1 >"$OUT/r$r-rtt.csv"
    ra=$(ticks "$REDIS_PID")
    read -r b_rps b_mean < <(awk -F, '{gsub(/"/, ""); print $2, $3}' "$OUT/r$r-rtt.csv")
    b_rcpu=$(rls_cpu_us "$rb" "$ra" "$N")
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
