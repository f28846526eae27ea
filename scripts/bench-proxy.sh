#!/usr/bin/env bash
# Benchmark: tailwater proxy vs nginx and HAProxy as reverse proxies, side by side in one run.
#
# HAProxy (Debian's 2.6, when installed; HAPROXY=0 skips it) runs with nbthread = cores,
# `http-reuse always` and no logging; in MODE=shed its server takes `maxconn 8` with a 1 ms
# queue timeout (so the excess is answered 503 at once).
#
# Both sit in front of the same trivial backend (tailwater-bench-backend: 200 + 13 bytes)
# and are driven by wrk with the same threads, connections and duration; the direct path
# (wrk → backend) is the baseline for "added latency". nginx gets Debian's defaults plus:
# worker_processes = number of cores, upstream keepalive, proxy_http_version 1.1, no
# caching, no access log (both configurations come from scripts/lib/peers.sh, shared with
# scripts/callgrind-proxy.sh and scripts/netns-proxy.sh). tailwater runs
# `tailwater proxy --upstream ...` with its default adaptive limit (`recommended`, Headroom,
# + CoDel queue), the configuration a user gets without a file, and --workers = number of
# cores (its default; thread-per-core like nginx's worker processes).
# Besides throughput and latency it reports each proxy's CPU time per request (user and
# kernel, from /proc/PID/stat over the measured runs, warm-ups excluded).
#
# MODE=shed measures saying no instead: the backend is slow (`tailwater backend`, 8 workers,
# 20 ms each: 400 req/s), each proxy admits at most 8 requests at once (nginx: `limit_conn`
# with status 503; tailwater: a fixed limit of 8 without a queue) and answers the rest with
# 503 at once, so nearly every response is a refusal. The direct path is skipped there.
#
# MODE=https terminates TLS: both proxies listen with the test certificate
# (crates/tailwater-test/tls/server.pem, ECDSA P-256) and forward in the clear to the same
# trivial backend; wrk speaks HTTPS with keep-alive (so handshakes are few and the cost
# measured is encryption and framing per request). The direct path is skipped there.
#
# ACCESS_LOG=1 also runs a second tailwater with the same configuration plus `[access_log]`
# (ACCESS_LOG_FORMAT=text|json, to a file in the run's temporary directory), measured right
# after or before the first in every round (the order alternates), and reports its
# throughput against the first's: the access log's cost (issue 13's goal: <= 3 %).
# Rounds alternate the order of the proxies (odd: nginx, HAProxy, tailwater; even: the
# reverse); each round prints every proxy's CPU per request, and the summary gives per
# round tailwater's throughput over the best peer's and its CPU per request over the
# cheapest peer's, with the load average and the CPU model.
#
# PEERS=0 (with ACCESS_LOG=1) measures only the access log's cost: tailwater and the logged
# tailwater, no direct path, nginx or HAProxy, so that many short paired slices fit in a run.
# With SLICES > 1 the two take adjacent slices (ABBA: odd slices tailwater first, even ones
# the logged one first), and the summary also gives the on/off ratio of every adjacent pair
# with their geometric mean, median and its 95 % confidence interval (Student's t): on this
# shared machine throughput drifts by +-15 % within seconds, so only adjacent slices compare
# like with like. AA=1 runs the "logged" tailwater without `[access_log]` (both identical):
# an A/A control that shows the resolution of the measurement itself.
#
# SLICES=k cuts each round's DURATION into k slices (whole seconds) that the contenders take
# in turn, the order reversed every other slice (see below); unset, each contender runs
# DURATION once a round. The summary also gives each path's per-round mean and median, and
# the mean and median of every per-round ratio.
#
# Usage: scripts/bench-proxy.sh            (env: DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=2
#                                           MODE=forward|shed|https ACCESS_LOG=0|1 SKIP_BUILD=0|1:
#                                           1 uses the binaries already built;
#                                           PROFILE=dist|release: the cargo profile built
#                                           and run (default dist, see below);
#                                           SLICES=1; PIN=0|1 and FLOOR=1|0, see below)
#
# PROFILE=dist (the default) builds tailwater and the backend with the workspace's `dist`
# profile (Cargo.toml: fat LTO, one codegen unit), the one for binaries you deploy, as the
# peers are Debian's optimised builds; PROFILE=release measures the `release` build instead
# (session 24: 13 % more user time a request).
#
# FLOOR=1 (the default in MODE=forward when HAProxy is installed; FLOOR=0 skips it) also
# runs the floor: HAProxy in `mode tcp` (scripts/lib/peers.sh, floor_config), a byte pump
# with one backend connection per client connection, no HTTP parsing and no added fields.
# It makes the same four syscalls a request as the HTTP proxies and nothing else, so it
# shows what an HTTP proxy would reach if all of its own work were free. The summary gives
# per round the floor's throughput over the best HTTP peer's and its CPU per request over
# the cheapest's (how much room the goals leave on this machine at all), and tailwater's
# throughput over the floor's.
#
# PIN=1 is an experiment, not the default comparison: it pins worker N of every proxy to
# CPU N mod cores with `taskset` once they run (all three alike: what nginx's
# `worker_cpu_affinity auto` and HAProxy's `cpu-map` would do, and what a tailwater option
# would have to do), to measure whether CPU affinity is worth offering. None of the three
# pins by default, and a sidecar sharing its host should not.
# Needs: wrk, nginx (Debian package), cargo. Prints a Markdown table; exits 0 even when the
# goals (>= 1.0x nginx throughput, added p99 <= nginx's) are missed, and says so.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
MODE=${MODE:-forward}
case $MODE in forward | shed | https) ;; *) echo "bench-proxy: MODE must be forward, shed or https" >&2; exit 1 ;; esac
SCHEME=http
[ "$MODE" = https ] && SCHEME=https
TLS_DIR=$(cd "$(dirname "$0")/../crates/tailwater-test/tls" && pwd)
WARMUP=${WARMUP:-2s}
BASE_PORT=${BASE_PORT:-19180}
BACKEND_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
TAILWATER_PORT=$((BASE_PORT + 2))
ADMIN_PORT=$((BASE_PORT + 3))
HAPROXY_PORT=$((BASE_PORT + 4))
TWLOG_PORT=$((BASE_PORT + 5))
TWLOG_ADMIN_PORT=$((BASE_PORT + 6))
FLOOR_PORT=$((BASE_PORT + 7))
ACCESS_LOG=${ACCESS_LOG:-0}
PEERS=${PEERS:-1}
AA=${AA:-0}
if [ "$PEERS" = 0 ] && [ "$ACCESS_LOG" != 1 ]; then
    echo "bench-proxy: PEERS=0 needs ACCESS_LOG=1 (it measures the access log's cost only)" >&2
    exit 1
fi
HAPROXY=${HAPROXY:-1}
[ "$PEERS" = 0 ] && HAPROXY=0
command -v haproxy >/dev/null || HAPROXY=0
FLOOR=${FLOOR:-1}
{ [ "$HAPROXY" = 1 ] && [ "$MODE" = forward ] && [ "$PEERS" = 1 ]; } || FLOOR=0
CORES=$(nproc)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tmp=$(mktemp -d -t tailwater-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

for tool in wrk nginx cargo curl; do
    command -v "$tool" >/dev/null || { echo "bench-proxy: $tool not found" >&2; exit 1; }
done

PROFILE=${PROFILE:-dist}
case $PROFILE in dist | release) ;; *) echo "bench-proxy: PROFILE must be dist or release" >&2; exit 1 ;; esac
echo "building the $PROFILE binaries..." >&2
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --profile "$PROFILE" -q -p tailwater -p tailwater-proxy --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/$PROFILE"

# shellcheck source=scripts/lib/peers.sh
source "$root/scripts/lib/peers.sh"
up() { # url: waits for it, shows the logs when it never answers
    wait_http "$1" 100 "$TLS_DIR/ca.pem" "$tmp"/*.log
}

if [ "$MODE" = shed ]; then
    "$bin/tailwater" backend --listen "127.0.0.1:$BACKEND_PORT" --workers 8 --service-time 20ms \
        2>"$tmp/backend.log" >/dev/null &
else
    "$bin/tailwater-bench-backend" "127.0.0.1:$BACKEND_PORT" 2>"$tmp/backend.log" &
fi
pids+=($!)
backend_pid=$!
up "http://127.0.0.1:$BACKEND_PORT/"

# The peers as their users configure them (scripts/lib/peers.sh), one directory each so
# that both can listen at once.
peer_tls=""
[ "$MODE" = https ] && peer_tls=$TLS_DIR
peer_shed=""
[ "$MODE" = shed ] && peer_shed=8
peer_configs "$tmp/nginx-peer" "$BACKEND_PORT" "$NGINX_PORT" "$CORES" "$peer_tls" "$peer_shed"
nginx -p "$tmp/nginx-peer/nginx" -c "$tmp/nginx-peer/nginx/nginx.conf" 2>"$tmp/nginx.log" &
pids+=($!)
nginx_pid=$!
up "$SCHEME://127.0.0.1:$NGINX_PORT/"

if [ "$HAPROXY" = 1 ]; then
    peer_configs "$tmp/haproxy-peer" "$BACKEND_PORT" "$HAPROXY_PORT" "$CORES" "$peer_tls" "$peer_shed"
    haproxy -db -f "$tmp/haproxy-peer/haproxy/haproxy.cfg" 2>"$tmp/haproxy.log" &
    pids+=($!)
    haproxy_pid=$!
    up "$SCHEME://127.0.0.1:$HAPROXY_PORT/"
fi
if [ "$FLOOR" = 1 ]; then
    floor_config "$tmp/floor-peer" "$BACKEND_PORT" "$FLOOR_PORT" "$CORES"
    haproxy -db -f "$tmp/floor-peer/floor/haproxy.cfg" 2>"$tmp/floor.log" &
    pids+=($!)
    floor_pid=$!
    up "http://127.0.0.1:$FLOOR_PORT/"
fi

if [ "$MODE" = shed ]; then
    cat >"$tmp/shed.toml" <<EOF
[[route]]
upstream = "http://127.0.0.1:$BACKEND_PORT"
[route.limit]
algorithm = "static"
limit = 8
[route.queue]
discipline = "none"
EOF
    tailwater_config=(--config "$tmp/shed.toml")
elif [ "$MODE" = https ]; then
    cat >"$tmp/https.toml" <<EOF
[server.tls]
cert = "$TLS_DIR/server.pem"
key = "$TLS_DIR/server.key"
[[route]]
upstream = "http://127.0.0.1:$BACKEND_PORT"
EOF
    tailwater_config=(--config "$tmp/https.toml")
elif [ "$ACCESS_LOG" = 1 ]; then
    # The same route as `--upstream`, from a file, so that the logged proxy differs by
    # `[access_log]` only.
    printf '[[route]]\nupstream = "http://127.0.0.1:%s"\n' "$BACKEND_PORT" >"$tmp/forward.toml"
    tailwater_config=(--config "$tmp/forward.toml")
else
    tailwater_config=(--upstream "http://127.0.0.1:$BACKEND_PORT")
fi
if [ "$ACCESS_LOG" = 1 ]; then
    cat "${tailwater_config[1]}" >"$tmp/logged.toml"
    # AA=1: the same configuration without the log (an A/A control).
    [ "$AA" = 1 ] || printf '[access_log]\npath = "%s"\nformat = "%s"\n' "$tmp/access.log" "${ACCESS_LOG_FORMAT:-text}" >>"$tmp/logged.toml"
    touch "$tmp/access.log"
    RUST_LOG=warn "$bin/tailwater" proxy --config "$tmp/logged.toml" --listen "127.0.0.1:$TWLOG_PORT" \
        --admin "127.0.0.1:$TWLOG_ADMIN_PORT" --workers "$CORES" 2>"$tmp/twlog.log" &
    pids+=($!)
    twlog_pid=$!
    up "$SCHEME://127.0.0.1:$TWLOG_PORT/"
fi
RUST_LOG=warn "$bin/tailwater" proxy "${tailwater_config[@]}" --listen "127.0.0.1:$TAILWATER_PORT" \
    --admin "127.0.0.1:$ADMIN_PORT" \
    --workers "$CORES" 2>"$tmp/tailwater.log" &
pids+=($!)
tailwater_pid=$!
up "$SCHEME://127.0.0.1:$TAILWATER_PORT/"

if [ "${PIN:-0}" = 1 ]; then
    command -v taskset >/dev/null || { echo "bench-proxy: PIN=1 needs taskset" >&2; exit 1; }
    pin_each() { # thread ids (an nginx worker is one thread): the Nth to CPU N mod cores
        local n=0 id
        for id in "$@"; do
            taskset -p -c $((n % CORES)) "$id" >/dev/null
            n=$((n + 1))
        done
    }
    workers_of() { # pid: tailwater's worker threads, in the order they were started
        local t
        for t in $(ls "/proc/$1/task" | sort -n); do
            case $(cat "/proc/$1/task/$t/comm") in tailwater-worke*) echo "$t" ;; esac
        done
    }
    # shellcheck disable=SC2046
    pin_each $(pgrep -P "$nginx_pid" | sort -n)
    # shellcheck disable=SC2046
    [ "$HAPROXY" = 1 ] && pin_each $(ls "/proc/$haproxy_pid/task" | sort -n)
    # shellcheck disable=SC2046
    [ "$FLOOR" = 1 ] && pin_each $(ls "/proc/$floor_pid/task" | sort -n)
    # shellcheck disable=SC2046
    pin_each $(workers_of "$tailwater_pid")
    # shellcheck disable=SC2046
    [ "$ACCESS_LOG" = 1 ] && pin_each $(workers_of "$twlog_pid")
    echo "PIN=1: every proxy's workers pinned one per CPU (taskset)" >&2
fi

# The processes doing each path's work: nginx's workers, tailwater's one process.
procs_of() { # name
    case $1 in
        direct) echo "$backend_pid" ;;
        nginx) pgrep -P "$nginx_pid" | tr '\n' ' ' ;;
        haproxy) echo "$haproxy_pid" ;;
        floor) echo "$floor_pid" ;;
        tailwater) echo "$tailwater_pid" ;;
        twlog) echo "$twlog_pid" ;;
    esac
}
# utime and stime (clock ticks) summed over the given pids.
cpu_ticks() {
    local u=0 s=0 a b p
    for p in "$@"; do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
        u=$((u + a))
        s=$((s + b))
    done
    echo "$u $s"
}
TICK=$(getconf CLK_TCK)

# Converts wrk's latency ("812.00us", "1.23ms", "1.01s") to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
    }'
}

declare -A rps p50 p99 non2xx reqs utime stime last lastcpu
# This round's sums over its slices (SLICES), and every round's figures (for the medians).
declare -A slice_rps
declare -A r_rps r_p50 r_p99 r_n r_u r_s r_bad rounds_rps rounds_cpu
round_ratios=""
log_ratios=""
pair_ratios=""
haproxy_ratios=""
warm() { # name port
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$SCHEME://127.0.0.1:$2/" >/dev/null
}
# One measured run of DURATION (or of one slice, SLICES > 1), added to the round's sums.
measure() { # name port duration label
    local name=$1 port=$2 out u0 s0 u1 s1 n r l50 l99 bad
    # shellcheck disable=SC2046
    read -r u0 s0 < <(cpu_ticks $(procs_of "$name"))
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$3" --latency "$SCHEME://127.0.0.1:$port/")
    # shellcheck disable=SC2046
    read -r u1 s1 < <(cpu_ticks $(procs_of "$name"))
    echo "$out" >"$tmp/wrk-$name-$round$4.txt"
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    r=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    l50=$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")
    l99=$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    r_n[$name]=$(( ${r_n[$name]:-0} + n ))
    r_u[$name]=$(( ${r_u[$name]:-0} + u1 - u0 ))
    r_s[$name]=$(( ${r_s[$name]:-0} + s1 - s0 ))
    r_bad[$name]=$(( ${r_bad[$name]:-0} + ${bad:-0} ))
    r_rps[$name]=$(awk -v a="${r_rps[$name]:-0}" -v b="$r" 'BEGIN {print a + b}')
    r_p50[$name]=$(awk -v a="${r_p50[$name]:-0}" -v b="$l50" 'BEGIN {print a + b}')
    r_p99[$name]=$(awk -v a="${r_p99[$name]:-0}" -v b="$l99" 'BEGIN {print a + b}')
    slice_rps[$name.$round$4]=$r
    if [ "$SLICES" -gt 1 ]; then
        printf 'round %s%s %-9s %10s req/s  p50 %8s us  p99 %8s us\n' "$round" "$4" "$name" "$r" "$l50" "$l99" >&2
    fi
}
# Closes contender NAME's round: its means over the slices (one slice: that run's figures)
# become this round's figures and are added to the summary's.
end_round() { # name
    local name=$1 k=$SLICES r l50 l99
    r=$(awk -v a="${r_rps[$name]}" -v k="$k" 'BEGIN {print a / k}')
    l50=$(awk -v a="${r_p50[$name]}" -v k="$k" 'BEGIN {print a / k}')
    l99=$(awk -v a="${r_p99[$name]}" -v k="$k" 'BEGIN {print a / k}')
    reqs[$name]=$(( ${reqs[$name]:-0} + r_n[$name] ))
    utime[$name]=$(( ${utime[$name]:-0} + r_u[$name] ))
    stime[$name]=$(( ${stime[$name]:-0} + r_s[$name] ))
    rps[$name]=$(awk -v a="${rps[$name]:-0}" -v b="$r" 'BEGIN {print a + b}')
    p50[$name]=$(awk -v a="${p50[$name]:-0}" -v b="$l50" 'BEGIN {print a + b}')
    p99[$name]=$(awk -v a="${p99[$name]:-0}" -v b="$l99" 'BEGIN {print a + b}')
    non2xx[$name]=$(( ${non2xx[$name]:-0} + r_bad[$name] ))
    last[$name]=$r
    # This round's CPU time per request (user + kernel, us).
    lastcpu[$name]=$(awk -v u="${r_u[$name]}" -v s="${r_s[$name]}" -v n="${r_n[$name]}" -v t="$TICK" \
        'BEGIN {printf "%.2f", (u + s) * 1e6 / t / n}')
    rounds_rps[$name]+=" $r"
    rounds_cpu[$name]+=" ${lastcpu[$name]}"
    printf 'round %s %-9s %10s req/s  p50 %8s us  p99 %8s us  non-2xx %s  CPU %s us/req\n' "$round" "$name" "$r" "$l50" "$l99" "${r_bad[$name]}" "${lastcpu[$name]}" >&2
    unset "r_rps[$name]" "r_p50[$name]" "r_p99[$name]" "r_n[$name]" "r_u[$name]" "r_s[$name]" "r_bad[$name]"
}

# SLICES=k: each round's DURATION is cut into k slices, and the contenders take turns
# slice by slice (the order reversed every other slice), so that drift of a shared
# machine (another job starting, a CPU's frequency) falls on all of them alike rather than
# on whichever ran at the time. Each contender warms up once per round, before its first
# slice. Unset (1): one run of DURATION per contender and round, as before.
SLICES=${SLICES:-1}
slice_duration=$DURATION
if [ "$SLICES" -gt 1 ]; then
    seconds=$(awk -v d="$DURATION" 'BEGIN {
        n = d + 0
        if (d ~ /m$/) n *= 60; else if (d ~ /h$/) n *= 3600
        print n }')
    slice_seconds=$((seconds / SLICES))
    [ "$slice_seconds" -ge 1 ] || { echo "bench-proxy: DURATION=$DURATION is too short for SLICES=$SLICES (1 s a slice at least)" >&2; exit 1; }
    [ $((slice_seconds * SLICES)) = "$seconds" ] || echo "bench-proxy: $seconds s do not split into $SLICES whole slices; each takes ${slice_seconds} s" >&2
    slice_duration=${slice_seconds}s
fi
# One slice of every contender, in ORDER (nginx, haproxy, tailwater; twlog follows or
# precedes tailwater by the round's parity); warms each up first on slice 1.
run_slice() { # order slice
    local name label="" run
    [ "$SLICES" -gt 1 ] && label=".$2"
    for name in $1; do
        case $name in
            direct) run=(direct "$BACKEND_PORT") ;;
            nginx) run=(nginx "$NGINX_PORT") ;;
            haproxy) [ "$HAPROXY" = 1 ] || continue; run=(haproxy "$HAPROXY_PORT") ;;
            floor) run=(floor "$FLOOR_PORT") ;;
            tailwater) run=(tailwater "$TAILWATER_PORT") ;;
            twlog) run=(twlog "$TWLOG_PORT") ;;
        esac
        [ "$2" = 1 ] && warm "${run[@]}"
        measure "${run[@]}" "$slice_duration" "$label"
    done
}

# Per round: tailwater's throughput over the best peer's, and its CPU per request over the
# cheapest peer's (the goals: >= 1.1x HTTP/1.1, >= 1.0x HTTPS; CPU <= 0.9x, every round).
best_ratios=""
cpu_ratios=""
floor_best_ratios=""
floor_cpu_ratios=""
tw_floor_ratios=""
for round in $(seq 1 "$ROUNDS"); do
    # The order alternates (odd rounds: nginx, HAProxy, tailwater; even rounds: the
    # reverse), so that no proxy always runs on a machine warmed, or loaded, by another.
    # With ACCESS_LOG=1 the logged tailwater runs right after the other in odd rounds and
    # right before it in even ones.
    order="nginx haproxy tailwater"
    [ "$ACCESS_LOG" = 1 ] && order="nginx haproxy tailwater twlog"
    if [ $((round % 2)) = 0 ]; then
        order="tailwater haproxy nginx"
        [ "$ACCESS_LOG" = 1 ] && order="twlog tailwater haproxy nginx"
    fi
    if [ "$FLOOR" = 1 ]; then
        if [ $((round % 2)) = 0 ]; then order="floor $order"; else order="$order floor"; fi
    fi
    [ "$MODE" = forward ] && order="direct $order"
    if [ "$PEERS" = 0 ]; then
        order="tailwater twlog"
        [ $((round % 2)) = 0 ] && order="twlog tailwater"
    fi
    reversed=$(echo "$order" | awk '{for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "")}')
    for slice in $(seq 1 "$SLICES"); do
        if [ $((slice % 2)) = 1 ]; then run_slice "$order" "$slice"; else run_slice "$reversed" "$slice"; fi
    done
    for name in $order; do
        [ "$name" = haproxy ] && [ "$HAPROXY" != 1 ] && continue
        end_round "$name"
    done
    [ "$ACCESS_LOG" = 1 ] && log_ratios+=$(awk -v t="${last[twlog]}" -v n="${last[tailwater]}" 'BEGIN {printf " %.3f", t / n}')
    if [ "$ACCESS_LOG" = 1 ] && [ "$SLICES" -gt 1 ]; then
        for slice in $(seq 1 "$SLICES"); do
            pair_ratios+=$(awk -v t="${slice_rps[twlog.$round.$slice]}" -v n="${slice_rps[tailwater.$round.$slice]}" 'BEGIN {printf " %.4f", t / n}')
        done
    fi
    [ "$PEERS" = 0 ] && continue
    round_ratios+=$(awk -v t="${last[tailwater]}" -v n="${last[nginx]}" 'BEGIN {printf " %.2f", t / n}')
    best=${last[nginx]}
    cheapest=${lastcpu[nginx]}
    if [ "$HAPROXY" = 1 ]; then
        haproxy_ratios+=$(awk -v t="${last[tailwater]}" -v n="${last[haproxy]}" 'BEGIN {printf " %.2f", t / n}')
        best=$(awk -v a="$best" -v b="${last[haproxy]}" 'BEGIN {print (a > b) ? a : b}')
        cheapest=$(awk -v a="$cheapest" -v b="${lastcpu[haproxy]}" 'BEGIN {print (a < b) ? a : b}')
    fi
    best_ratios+=$(awk -v t="${last[tailwater]}" -v b="$best" 'BEGIN {printf " %.2f", t / b}')
    cpu_ratios+=$(awk -v t="${lastcpu[tailwater]}" -v c="$cheapest" 'BEGIN {printf " %.2f", t / c}')
    if [ "$FLOOR" = 1 ]; then
        floor_best_ratios+=$(awk -v t="${last[floor]}" -v b="$best" 'BEGIN {printf " %.2f", t / b}')
        floor_cpu_ratios+=$(awk -v t="${lastcpu[floor]}" -v c="$cheapest" 'BEGIN {printf " %.2f", t / c}')
        tw_floor_ratios+=$(awk -v t="${last[tailwater]}" -v f="${last[floor]}" 'BEGIN {printf " %.2f", t / f}')
    fi
done

# Mean and median of a list of per-round figures.
mean_median() { # values...
    echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '
        { v[NR] = $1; sum += $1 }
        END {
            if (NR == 0) { print "mean -, median -"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "mean %.2f, median %.2f", sum / NR, m
        }'
}
# How many of a list of per-round ratios are at least (ge) or at most (le) a goal.
rounds_meeting() { # ge|le goal "ratios"
    echo "$3" | awk -v op="$1" -v g="$2" '{n = 0; for (i = 1; i <= NF; i++) if (op == "ge" ? $i >= g : $i <= g) n++; print n}'
}
# "met" when every round meets the goal, else "MISSED".
every_round() { # ge|le goal "ratios"
    [ "$(rounds_meeting "$1" "$2" "$3")" = "$(echo "$3" | wc -w)" ] && echo met || echo MISSED
}
avg() { awk -v a="$1" -v n="$ROUNDS" 'BEGIN {printf "%.0f", a / n}'; }
d50=$(avg "${p50[direct]:-0}")
d99=$(avg "${p99[direct]:-0}")
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds (averaged)$([ "$SLICES" -gt 1 ] && echo ", $SLICES alternating slices of $slice_duration a round"), tailwater built with --profile $PROFILE, $CORES cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| path | req/s | p50 (us) | p99 (us) | added p50 (us) | added p99 (us) | non-2xx | CPU user / kernel per request (us) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
paths="direct nginx tailwater"
[ "$MODE" = forward ] || paths="nginx tailwater"
[ "$HAPROXY" = 1 ] && paths="${paths/nginx/nginx haproxy}"
[ "$FLOOR" = 1 ] && paths="$paths floor"
[ "$ACCESS_LOG" = 1 ] && paths="$paths twlog"
[ "$PEERS" = 0 ] && paths="tailwater twlog"
for name in $paths; do
    r=$(avg "${rps[$name]}")
    a50=$(avg "${p50[$name]}")
    a99=$(avg "${p99[$name]}")
    cpu=$(awk -v u="${utime[$name]}" -v s="${stime[$name]}" -v n="${reqs[$name]}" -v t="$TICK" \
        'BEGIN {printf "%.2f / %.2f", u * 1e6 / t / n, s * 1e6 / t / n}')
    if [ "$name" = floor ]; then
        echo "| floor (HAProxy mode tcp, no HTTP work) | $r | $a50 | $a99 | $((a50 - d50)) | $((a99 - d99)) | ${non2xx[$name]} | $cpu |"
    elif [ "$name" = direct ]; then
        echo "| $name (backend's CPU) | $r | $a50 | $a99 | - | - | ${non2xx[$name]} | $cpu |"
    elif [ "$MODE" != forward ] || [ "$PEERS" = 0 ]; then
        echo "| $name | $r | $a50 | $a99 | - | - | ${non2xx[$name]} | $cpu |"
    else
        echo "| $name | $r | $a50 | $a99 | $((a50 - d50)) | $((a99 - d99)) | ${non2xx[$name]} | $cpu |"
    fi
done
echo
echo "Per round (over $ROUNDS rounds$([ "$SLICES" -gt 1 ] && echo ", each of $SLICES alternating slices of $slice_duration")): mean and median"
echo
echo "| path | req/s mean | req/s median | CPU per request (us) mean | CPU per request (us) median |"
echo "|---|---:|---:|---:|---:|"
for name in $paths; do
    echo "${rounds_rps[$name]}" | tr ' ' '\n' | sed '/^$/d' | sort -g >"$tmp/med.rps"
    echo "${rounds_cpu[$name]}" | tr ' ' '\n' | sed '/^$/d' | sort -g >"$tmp/med.cpu"
    paste -d' ' <(awk '{v[NR] = $1; s += $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f %.0f\n", s / NR, m}' "$tmp/med.rps") \
        <(awk '{v[NR] = $1; s += $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f\n", s / NR, m}' "$tmp/med.cpu") |
        awk -v n="$name" '{printf "| %s | %s | %s | %s | %s |\n", n, $1, $2, $3, $4}'
done
ratio=$(awk -v t="${rps[tailwater]}" -v n="${rps[nginx]:-0}" 'BEGIN {if (n > 0) printf "%.2f", t / n; else print "-"}')
if [ "$ACCESS_LOG" = 1 ]; then
    lratio=$(awk -v t="${rps[twlog]}" -v n="${rps[tailwater]}" 'BEGIN {printf "%.3f", t / n}')
    cost=$(awk -v r="$lratio" 'BEGIN {printf "%.1f", (1 - r) * 100}')
    dropped=$(curl -fsS "http://127.0.0.1:$TWLOG_ADMIN_PORT/metrics" | awk '/^tailwater_access_log_dropped_total/ {print $2}')
    echo
    echo "access log (twlog = tailwater$([ "$AA" = 1 ] && echo ", without [access_log]: AA=1, an A/A control" || echo " + [access_log] ${ACCESS_LOG_FORMAT:-text}")): throughput on / off ${lratio}x, cost ${cost} % (goal <= 3 %: $(awk -v c="$cost" 'BEGIN {print (c <= 3.0) ? "met" : "MISSED"}')); per round:${log_ratios} ($(mean_median $log_ratios)); $(wc -l <"$tmp/access.log") lines written, ${dropped:-?} dropped"
    if [ -n "$pair_ratios" ]; then
        # Every adjacent pair of slices (ABBA): the on/off ratios' geometric mean (the mean
        # of their logarithms: a plain mean of ratios this noisy is biased upwards, and
        # would not give the reciprocal with the roles swapped), its 95 % confidence
        # interval (Student's t on the logarithms, df = pairs - 1 rounded down to a tabled
        # df: conservative), and the median.
        echo "$pair_ratios" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '
            { v[NR] = $1; l = log($1); s += l; ss += l * l }
            END {
                n = NR; mean = s / n
                sd = (n > 1) ? sqrt((ss - n * mean * mean) / (n - 1)) : 0
                df = n - 1
                t = (df >= 99) ? 1.984 : (df >= 49) ? 2.010 : (df >= 29) ? 2.045 : (df >= 19) ? 2.093 : (df >= 9) ? 2.262 : (df >= 4) ? 2.776 : (df >= 3) ? 3.182 : (df >= 2) ? 4.303 : 12.706
                h = t * sd / sqrt(n)
                g = exp(mean); lo = exp(mean - h); hi = exp(mean + h)
                med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
                printf "paired slices: %d adjacent on/off pairs, ratio geometric mean %.4f (cost %.2f %%), 95 %% CI %.4f-%.4f (cost %.2f to %.2f %%), median %.4f, sd of log ratios %.3f; goal <= 3 %% by the estimate: %s, by the whole interval: %s\n", \
                    n, g, (1 - g) * 100, lo, hi, (1 - hi) * 100, (1 - lo) * 100, med, sd, \
                    (g >= 0.97) ? "met" : "MISSED", (lo >= 0.97) ? "met" : "not shown"
            }'
        echo "per pair:${pair_ratios}"
    fi
fi
if [ "$PEERS" = 0 ]; then
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    exit 0
fi
if [ "$HAPROXY" = 1 ]; then
    hratio=$(awk -v t="${rps[tailwater]}" -v n="${rps[haproxy]}" 'BEGIN {printf "%.2f", t / n}')
    echo
    echo "throughput tailwater / HAProxy: ${hratio}x; per round:${haproxy_ratios} ($(mean_median $haproxy_ratios))"
fi
goal=1.10
[ "$MODE" = https ] && goal=1.00
[ "$MODE" != shed ] && echo && echo "per round, throughput tailwater / best peer:${best_ratios} ($(mean_median $best_ratios); goal >= ${goal}x every round: $(every_round ge "$goal" "$best_ratios"))"
[ "$MODE" != shed ] && echo "per round, CPU per request tailwater / cheapest peer:${cpu_ratios} ($(mean_median $cpu_ratios); goal <= 0.90x every round: $(every_round le 0.9 "$cpu_ratios"))"
if [ "$FLOOR" = 1 ]; then
    # How many rounds the floor itself would pass each goal in: a proxy doing HTTP work
    # cannot beat a byte pump making the same syscalls, so a goal the floor misses in a
    # round is out of any HTTP proxy's reach in that round.
    echo "per round, the floor (no HTTP work) / best peer:${floor_best_ratios} ($(mean_median $floor_best_ratios); >= 1.10x in $(rounds_meeting ge 1.1 "$floor_best_ratios") of $ROUNDS rounds)"
    echo "per round, the floor's CPU per request / cheapest peer:${floor_cpu_ratios} ($(mean_median $floor_cpu_ratios); <= 0.90x in $(rounds_meeting le 0.9 "$floor_cpu_ratios") of $ROUNDS rounds)"
    echo "per round, throughput tailwater / the floor:${tw_floor_ratios} ($(mean_median $tw_floor_ratios))"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)$([ "${PIN:-0}" = 1 ] && echo "; workers pinned (PIN=1)")"
if [ "$MODE" = shed ]; then
    echo
    echo "shed throughput tailwater / nginx: ${ratio}x (no goal; nearly every answer is a 503); per round:${round_ratios}"
    exit 0
fi
if [ "$MODE" = https ]; then
    echo
    echo "HTTPS throughput tailwater / nginx: ${ratio}x (goal >= 1.00x: $(awk -v r="$ratio" 'BEGIN {print (r >= 1.0) ? "met" : "MISSED"}')); per round:${round_ratios}"
    exit 0
fi
t_add99=$(( $(avg "${p99[tailwater]}") - d99 ))
n_add99=$(( $(avg "${p99[nginx]}") - d99 ))
echo
echo "throughput tailwater / nginx: ${ratio}x (goal >= 1.00x: $(awk -v r="$ratio" 'BEGIN {print (r >= 1.0) ? "met" : "MISSED"}')); per round:${round_ratios}"
echo "added p99: tailwater ${t_add99} us vs nginx ${n_add99} us (goal <= nginx: $([ "$t_add99" -le "$n_add99" ] && echo met || echo MISSED))"
echo "tailwater limiter at the end: $(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -E '^tailwater_limiter_limit' || true)"
