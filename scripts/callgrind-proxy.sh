#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: tailwater proxy, nginx and HAProxy
# in front of the same trivial backend, each run under `valgrind --tool=callgrind` with one
# worker (tailwater `--workers 1`; nginx `master_process off; worker_processes 1`; HAProxy
# `-db`, `nbthread 1`), driven by h2load (HTTP/1.1, keep-alive, C connections, one request
# at a time on each) for a fixed count of requests. Each proxy runs twice, for N1 and N2
# requests, from start to exit; instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1),
# so start-up, connection set-up and shutdown cancel out.
#
# Why: wall-clock CPU per request swings with the machine's load (other builds share its
# cores); instruction counts do not. They count user space only: the kernel's share (the
# system calls) is counted separately with `strace -c -f` (STRACE=1), as calls per request.
#
# Two parts of a run are taken apart (issue 18), so that the proxy's own cost per request
# reads without noise:
# - quanta's one-off TSC calibration (`once_cell::imp::initialize_or_wait`, inclusive) is
#   subtracted from every run's total: it loops for a wall-clock time, not a fixed count,
#   so under valgrind it varied by millions of instructions between runs (hundreds per
#   request); scripts/callgrind-access-log.sh subtracts it too; so is the burn rates' tick
#   (`tailwater_proxy::burn::spawn_tick`, inclusive), which runs once a second, not once a
#   request (a run under valgrind lasts a varying number of seconds);
# - the adaptive limit's per-sample update (`Headroom`'s `LimitAlgorithm::update`,
#   inclusive, in tailwater-core) is printed in its own column, and the proxy's cost less
#   it in another: it is the limit algorithm's cost, not the proxy's request path.
#
# Usage: scripts/callgrind-proxy.sh   (env: TAILWATER=path/to/tailwater (default: the
#        release build), BACKEND=path/to/tailwater-bench-backend, N1=2000 N2=12000 C=8,
#        PROXIES="tailwater nginx haproxy", STRACE=0|1, KEEP=dir to keep the callgrind
#        files for callgrind_annotate, MODE=forward|https, CACHE_SIM=0|1: also simulate the
#        caches (`--cache-sim=yes`) and print the instruction-cache and data-cache misses a
#        request (first level) and last-level misses, what instruction counts cannot see)
# Needs: valgrind, h2load, nginx, haproxy, curl (strace for STRACE=1).
set -euo pipefail

N1=${N1:-2000}
N2=${N2:-12000}
C=${C:-8}
PROXIES=${PROXIES:-tailwater nginx haproxy}
STRACE=${STRACE:-0}
CACHE_SIM=${CACHE_SIM:-0}
cache_sim=()
[ "$CACHE_SIM" = 1 ] && cache_sim=(--cache-sim=yes)
MODE=${MODE:-forward}
BASE_PORT=${BASE_PORT:-19280}
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
root=$(cd "$(dirname "$0")/.." && pwd)
TLS_DIR=$root/crates/tailwater-test/tls
# shellcheck source=scripts/lib/peers.sh
source "$root/scripts/lib/peers.sh"
release_binaries "$root"
SCHEME=http
[ "$MODE" = https ] && SCHEME=https

bench_workdir tailwater-cg

# wait_http, and the proxies' last words when it fails.
up() { # url
    wait_http "$1" 300 "$TLS_DIR/ca.pem" && return 0
    tail -n 5 "$tmp"/*.log >&2 || true
    return 1
}

"$BACKEND" "127.0.0.1:$BACKEND_PORT" 2>"$tmp/backend.log" &
pids+=($!)
up "http://127.0.0.1:$BACKEND_PORT/"

tls_dir=
[ "$MODE" = https ] && tls_dir=$TLS_DIR
peer_configs "$tmp" "$BACKEND_PORT" "$PROXY_PORT" 1 "$tls_dir"
tw_args=(--upstream "http://127.0.0.1:$BACKEND_PORT")
if [ "$MODE" = https ]; then
    printf '[server.tls]\ncert = "%s"\nkey = "%s"\n[[route]]\nupstream = "http://127.0.0.1:%s"\n' \
        "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$BACKEND_PORT" >"$tmp/https.toml"
    tw_args=(--config "$tmp/https.toml")
fi

# Starts proxy $1 under the tool command in $2 (callgrind or strace); its pid in $started.
start() { # name out
    local name=$1 out=$2 tool
    if [ "$out" = strace ]; then
        tool=(strace -c -f -o "$tmp/$name.strace")
    else
        tool=(valgrind --tool=callgrind "${cache_sim[@]}" --callgrind-out-file="$out" --dump-instr=no)
    fi
    case $name in
        tailwater)
            RUST_LOG=warn "${tool[@]}" "$TAILWATER" proxy "${tw_args[@]}" \
                --listen "127.0.0.1:$PROXY_PORT" --no-admin --workers 1 >/dev/null 2>"$tmp/$name.log" &
            ;;
        nginx) "${tool[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/$name.log" & ;;
        haproxy) "${tool[@]}" haproxy -db -f "$tmp/haproxy/haproxy.cfg" >/dev/null 2>"$tmp/$name.log" & ;;
    esac
    started=$!
    pids+=("$started")
}

stop() { # pid
    # Under strace the proxy is strace's child: signal the proxy, strace then exits too.
    local child
    child=$(pgrep -P "$1" | head -n 1 || true)
    if [ -n "$child" ] && grep -q strace "/proc/$1/comm" 2>/dev/null; then
        kill -TERM "$child"
    else
        kill -TERM "$1"
    fi
    wait "$1" 2>/dev/null || true
}

# Instructions of one run of proxy $1 serving $2 requests.
instructions() { # name n
    local name=$1 n=$2 out=$tmp/cg.$1.$2 pid
    start "$name" "$out"
    pid=$started
    up "$SCHEME://127.0.0.1:$PROXY_PORT/"
    h2load --h1 -n "$n" -c "$C" -m 1 -t 1 "$SCHEME://127.0.0.1:$PROXY_PORT/" >"$tmp/h2load.$name.$n" 2>&1
    grep -q "succeeded, 0 failed\|$n succeeded" "$tmp/h2load.$name.$n" || {
        echo "callgrind-proxy: h2load failed against $name:" >&2
        grep -E "requests:|status codes" "$tmp/h2load.$name.$n" >&2
    }
    stop "$pid"
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out" "$KEEP/"
    # The whole process's instructions less the TSC calibration and the burn tick, and the
    # limit's updates (all inclusive; 0 where a proxy has no such function).
    callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null | awk '
        function n(s) { gsub(",", "", s); return s + 0 }
        /PROGRAM TOTALS/ && !total { total = n($1) }
        /once_cell::imp::initialize_or_wait/ && !calib { calib = n($1) }
        /tailwater_proxy::burn::spawn_tick::\{\{closure\}\}/ && !tick { tick = n($1) }
        /Headroom as [^ ]*LimitAlgorithm>::update/ && !update { update = n($1) }
        END { printf "%d %d\n", total - calib - tick, update }' >"$tmp/ir"
    # With the cache simulation: the whole run's first-level instruction misses, data
    # misses (read + write) and last-level misses (instruction + data).
    callgrind_annotate --threshold=100 "$out" 2>/dev/null | awk '
        function n(s) { gsub(",", "", s); return s + 0 }
        # The events in the order their totals are printed (callgrind: Ir Dr Dw I1mr D1mr
        # D1mw ILmr DLmr DLmw).
        /^Events shown:/ { for (i = 3; i <= NF; i++) ev[i - 2] = $i }
        /PROGRAM TOTALS/ && !done {
            done = 1; k = 0
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) v[ev[++k]] = n($i)
            printf "%d %d %d\n", v["I1mr"], v["D1mr"] + v["D1mw"], v["ILmr"] + v["DLmr"] + v["DLmw"]
        }' >"$tmp/misses"
}

declare -A misses=()
echo "| proxy | Ir per request (user space, less TSC calibration and burn tick) | of which the limit's update (Headroom) | the rest | Ir at N1=$N1 | Ir at N2=$N2 |"
echo "|---|---:|---:|---:|---:|---:|"
for name in $PROXIES; do
    instructions "$name" "$N1"
    read -r a ua <"$tmp/ir"
    read -r -a m1 <"$tmp/misses"
    instructions "$name" "$N2"
    read -r b ub <"$tmp/ir"
    read -r -a m2 <"$tmp/misses"
    misses[$name]=$(awk -v n1="$N1" -v n2="$N2" -v a="${m1[*]}" -v b="${m2[*]}" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= 3; i++) {
            d = (y[i] - x[i]) / (n2 - n1)
            printf "%s%.0f", (i > 1 ? " | " : ""), (d > -0.5 && d < 0.5) ? 0 : d
        } }')
    per=$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN {printf "%.0f", (b - a) / (n2 - n1)}')
    upd=$(awk -v a="$ua" -v b="$ub" -v n1="$N1" -v n2="$N2" 'BEGIN {printf "%.0f", (b - a) / (n2 - n1)}')
    echo "| $name | $per | $upd | $((per - upd)) | $a | $b |"
done

if [ "$CACHE_SIM" = 1 ]; then
    echo
    echo "Simulated cache misses per request (callgrind --cache-sim=yes, N2 - N1 requests):"
    echo
    echo "| proxy | I1 misses | D1 misses (read + write) | LL misses |"
    echo "|---|---:|---:|---:|"
    for name in $PROXIES; do echo "| $name | ${misses[$name]} |"; done
fi

if [ "$STRACE" = 1 ]; then
    echo
    echo "System calls per request (strace -c -f, N2 - N1 requests, $C connections):"
    for name in $PROXIES; do
        declare -A calls=()
        for n in "$N1" "$N2"; do
            start "$name" strace
            pid=$started
            up "$SCHEME://127.0.0.1:$PROXY_PORT/"
            h2load --h1 -n "$n" -c "$C" -m 1 -t 1 "$SCHEME://127.0.0.1:$PROXY_PORT/" >/dev/null 2>&1
            stop "$pid"
            cp "$tmp/$name.strace" "$tmp/$name.strace.$n"
        done
        echo "$name:"
        # syscall name -> calls, for both runs; per request = difference / (N2 - N1).
        awk -v n1="$N1" -v n2="$N2" '
            FNR == 1 { f++ }
            $NF ~ /^[a-z_0-9]+$/ && $1 ~ /^[0-9.]+$/ && $NF != "total" {
                c[f, $NF] = $4; names[$NF] = 1
            }
            END {
                total = 0
                for (s in names) {
                    d = (c[2, s] - c[1, s]) / (n2 - n1)
                    if (d > 0.005) printf "  %-16s %.2f\n", s, d
                    total += d
                }
                printf "  %-16s %.2f\n", "all", total
            }' "$tmp/$name.strace.$N1" "$tmp/$name.strace.$N2"
    done
fi
echo
echo "h2load --h1 -c $C -m 1, N1=$N1 N2=$N2, MODE=$MODE; CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
