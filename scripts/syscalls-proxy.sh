#!/usr/bin/env bash
# System calls, context switches and CPU per proxied request, counted by `perf stat` at full
# speed: tailwater proxy, nginx and HAProxy side by side in front of the same trivial
# backend (the peers as scripts/bench-proxy.sh configures them: scripts/lib/peers.sh, one
# worker per core), each driven in turn by the same wrk run (keep-alive, THREADS threads,
# CONNECTIONS connections, DURATION). perf attaches to the proxy's processes (all of nginx's
# workers, all of tailwater's and HAProxy's threads) for the run only; the counts are
# divided by the requests wrk completed.
#
# Why: callgrind (scripts/callgrind-proxy.sh) counts user-space instructions under a
# slowed-down proxy, where one readiness poll serves many requests; at full speed the
# kernel's share (system calls, sleeps and wake-ups) is ~80 % of a request's CPU, and these
# counts hold on a busy machine where wall-clock CPU does not.
#
# Usage: scripts/syscalls-proxy.sh   (env: DURATION=5s CONNECTIONS=64 THREADS=2 ROUNDS=1
#        PROXIES="tailwater nginx haproxy" BASE_PORT=19380 WORKERS=nproc
#        TAILWATER=path/to/tailwater BACKEND=path/to/tailwater-bench-backend (default: the
#        release build), BEFORE=path/to/another/tailwater (also measured, as "before"))
# Needs: perf (syscalls tracepoints), wrk, nginx, haproxy, curl.
set -euo pipefail

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
PROXIES=${PROXIES:-tailwater nginx haproxy}
BASE_PORT=${BASE_PORT:-19380}
WORKERS=${WORKERS:-$(nproc)}
BACKEND_PORT=$BASE_PORT
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/peers.sh
source "$root/scripts/lib/peers.sh"
release_binaries "$root"
[ -n "${BEFORE:-}" ] && PROXIES="$PROXIES before"

bench_workdir tailwater-sys


"$BACKEND" "127.0.0.1:$BACKEND_PORT" 2>"$tmp/backend.log" &
backend_pid=$!
pids+=($!)
wait_http "http://127.0.0.1:$BACKEND_PORT/" 100

declare -A port pid
n=1
for name in $PROXIES; do
    n=$((n + 1))
    port[$name]=$((BASE_PORT + n))
    case $name in
        tailwater | before)
            bin=$TAILWATER
            [ "$name" = before ] && bin=$BEFORE
            RUST_LOG=warn "$bin" proxy --upstream "http://127.0.0.1:$BACKEND_PORT" \
                --listen "127.0.0.1:${port[$name]}" --no-admin --workers "$WORKERS" \
                2>"$tmp/$name.log" &
            ;;
        nginx)
            peer_configs "$tmp/nginx-peer" "$BACKEND_PORT" "${port[$name]}" "$WORKERS"
            nginx -p "$tmp/nginx-peer/nginx" -c "$tmp/nginx-peer/nginx/nginx.conf" 2>"$tmp/$name.log" &
            ;;
        haproxy)
            peer_configs "$tmp/haproxy-peer" "$BACKEND_PORT" "${port[$name]}" "$WORKERS"
            haproxy -db -f "$tmp/haproxy-peer/haproxy/haproxy.cfg" 2>"$tmp/$name.log" &
            ;;
    esac
    pid[$name]=$!
    pids+=($!)
    wait_http "http://127.0.0.1:${port[$name]}/" 100 "" "$tmp/$name.log"
done

# The processes perf attaches to: the proxy and its children (nginx's workers).
targets() { # pid
    { echo "$1"; pgrep -P "$1" || true; } | paste -sd, -
}

bevents=context-switches,task-clock
events=context-switches,cpu-migrations,task-clock,raw_syscalls:sys_enter
calls="read recvfrom recvmsg readv write sendto sendmsg writev epoll_wait epoll_pwait epoll_pwait2 epoll_ctl futex clock_gettime getsockopt setsockopt accept4 close madvise mmap munmap brk sched_yield"
for c in $calls; do events="$events,syscalls:sys_enter_$c"; done

echo "| proxy | round | req/s | syscalls / req | by call (per request) | context switches / req | migrations / req | CPU µs / req | backend: context switches / req | backend: CPU µs / req | wrk: context switches / req | wrk: CPU µs / req | machine idle % |"
echo "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$ROUNDS"); do
    for name in $PROXIES; do
        url="http://127.0.0.1:${port[$name]}/"
        wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "$url" >/dev/null 2>&1 # warm-up
        # The backend's share is counted too: how a proxy talks to it (how many connections,
        # how its messages arrive) moves the backend's cost per request, and on this
        # machine every core the backend spends is one the proxy and wrk do not get.
        perf stat -x, -e "$bevents" -p "$backend_pid" -o "$tmp/perf.backend.$name" &
        bperf=$!
        idle0=$(awk '/^cpu / {print $5 + $6}' /proc/stat)
        perf stat -x, -e "$events" -p "$(targets "${pid[$name]}")" -o "$tmp/perf.$name" -- \
            perf stat -x, -e "$bevents" -o "$tmp/perf.wrk.$name" -- \
            wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$url" >"$tmp/wrk.$name" 2>&1
        idle1=$(awk '/^cpu / {print $5 + $6}' /proc/stat)
        kill -INT "$bperf"
        wait "$bperf" 2>/dev/null || true
        secs=$(awk '/requests in/ {sub(/s,?$/, "", $4); print $4}' "$tmp/wrk.$name")
        rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.$name")
        others=$(awk -F, -v reqs="$(awk '/requests in/ {print $1}' "$tmp/wrk.$name")" '
            FNR == 1 { f++ }
            $3 == "context-switches" { cs[f] = $1 } $3 == "task-clock" { ms[f] = $1 }
            END { printf "%.3f | %.2f | %.3f | %.2f", cs[1] / reqs, ms[1] * 1000 / reqs, cs[2] / reqs, ms[2] * 1000 / reqs }' \
            "$tmp/perf.backend.$name" "$tmp/perf.wrk.$name")
        idle=$(awk -v a="$idle0" -v b="$idle1" -v hz="$(getconf CLK_TCK)" -v s="$secs" -v c="$(nproc)" \
            'BEGIN { printf "%.0f", 100 * (b - a) / hz / s / c }')
        reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk.$name")
        awk -F, -v reqs="$reqs" -v name="$name" -v round="$round" -v rps="$rps" -v others="$others" -v idle="$idle" '
            /^#/ || NF < 3 { next }
            {
                v = $1; e = $3
                if (e == "raw_syscalls:sys_enter") all = v
                else if (e == "context-switches") cs = v
                else if (e == "cpu-migrations") mig = v
                else if (e == "task-clock") ms = v
                else if (e ~ /^syscalls:sys_enter_/) {
                    sub("syscalls:sys_enter_", "", e)
                    if (v / reqs >= 0.005) by = by sprintf("%s%s %.2f", by == "" ? "" : ", ", e, v / reqs)
                    known += v
                }
            }
            END {
                other = (all - known) / reqs
                if (other >= 0.005) by = by sprintf(", other %.2f", other)
                printf "| %s | %d | %.0f | %.2f | %s | %.3f | %.3f | %.2f | %s | %s |\n", name, round, rps,
                    all / reqs, by, cs / reqs, mig / reqs, ms * 1000 / reqs, others, idle
            }' "$tmp/perf.$name"
    done
done
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $WORKERS workers each; CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
