#!/usr/bin/env bash
# The access log's CPU cost per request, counted in instructions by callgrind (issue 13):
# deterministic on a loaded machine, where wall-clock throughput is not (see
# scripts/bench-proxy.sh ACCESS_LOG=1 for the throughput ratio).
#
# Starts tailwater-bench-backend, then `tailwater proxy --workers 1` (the route of
# scripts/bench-proxy.sh's ACCESS_LOG=1 mode, without and with `[access_log]`) under
# `valgrind --tool=callgrind`, drives it with `h2load --h1` for exactly N1 and then N2
# requests (keep-alive, C connections), and counts the proxy process's instructions (all
# threads: the workers and the log's writer). Per request = (Ir(N2) - Ir(N1)) / (N2 - N1),
# which cancels start-up and shutdown. Prints the per-request counts off and on, and
# their ratio, and the "log functions only" figure: the on - off difference of the
# instructions spent in the log's own functions and what they call for copies and
# comparisons (functions whose names match LOG_FNS), which leaves out the ±150 of noise
# in the whole process's totals.
#
# TARGETS=N spreads the requests over N targets (`/t0` ... ), taken in turn, so that a
# connection never repeats its last request (the log's per-connection head cache then
# misses every time: its worst case); the default, 1, requests `/` only.
#
# Usage: scripts/callgrind-access-log.sh   (env: N1=2000 N2=12000 C=4 FORMAT=text|json
#                                           TARGETS=1
#                                           BIN=dir with release tailwater and
#                                           tailwater-bench-backend, BASE_PORT=19480,
#                                           KEEP=dir to keep the callgrind outputs for
#                                           callgrind_annotate)
# Needs: valgrind, h2load (nghttp2-client), curl.
set -euo pipefail

N1=${N1:-2000}
N2=${N2:-12000}
C=${C:-4}
FORMAT=${FORMAT:-text}
TARGETS=${TARGETS:-1}
BASE_PORT=${BASE_PORT:-19480}
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p tailwater -p tailwater-proxy --bins
    BIN="${CARGO_TARGET_DIR:-$root/target}/release"
fi
# shellcheck source=lib/scratch.sh
source "$root/scripts/lib/scratch.sh"
# shellcheck source=lib/peers.sh
source "$root/scripts/lib/peers.sh"
scratch callgrind
before_cleanup() { # KEEP: the callgrind outputs outlive the run
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP" && cp "$tmp"/callgrind.* "$KEEP"/ 2>/dev/null || true
    fi
}

# Another job's server on one of these ports would answer in place of ours (and be
# counted as ours): refuse to start.
for port in "$BACKEND_PORT" "$PROXY_PORT" "$ADMIN_PORT"; do
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
        echo "callgrind-access-log: port $port is in use; set BASE_PORT" >&2
        exit 1
    fi
done

"$BIN/tailwater-bench-backend" "127.0.0.1:$BACKEND_PORT" 2>"$tmp/backend.log" &
pids+=($!)
wait_http "http://127.0.0.1:$BACKEND_PORT/" 600

printf '[[route]]\nupstream = "http://127.0.0.1:%s"\n' "$BACKEND_PORT" >"$tmp/off.toml"
cp "$tmp/off.toml" "$tmp/on.toml"
printf '[access_log]\npath = "%s"\nformat = "%s"\n' "$tmp/access.log" "$FORMAT" >>"$tmp/on.toml"

# Instructions of one proxy run serving N requests (the warm-up request included).
instructions() { # config n
    local out="$tmp/callgrind.$1.$2"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN/tailwater" proxy --config "$tmp/$1.toml" --listen "127.0.0.1:$PROXY_PORT" \
        --admin "127.0.0.1:$ADMIN_PORT" --workers 1 2>"$tmp/valgrind.$1.$2.log" &
    local pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$PROXY_PORT/" 600
    kill -0 "$pid" 2>/dev/null || {
        echo "callgrind-access-log: the proxy exited:" >&2
        tail -n 5 "$tmp/valgrind.$1.$2.log" >&2
        return 1
    }
    local uris=("http://127.0.0.1:$PROXY_PORT/")
    if [ "$TARGETS" -gt 1 ]; then
        uris=()
        for i in $(seq 0 $((TARGETS - 1))); do uris+=("http://127.0.0.1:$PROXY_PORT/t$i"); done
    fi
    h2load --h1 -n "$2" -c "$C" -t 1 "${uris[@]}" >"$tmp/h2load.$1.$2.txt"
    grep -q "$2 succeeded" "$tmp/h2load.$1.$2.txt" || {
        echo "callgrind-access-log: not every request succeeded:" >&2
        cat "$tmp/h2load.$1.$2.txt" >&2
        return 1
    }
    kill -TERM "$pid"
    wait "$pid" || true
    # The summary line of the whole process (all threads' instructions), less quanta's
    # one-off TSC calibration (`once_cell::imp::initialize_or_wait`, inclusive): it loops
    # for a wall-clock time, not a fixed count, so under valgrind it varied from 1.8 to
    # 5.7 million instructions between runs, up to ~800 per request of noise at N2 - N1 =
    # 5000.
    callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '
        /PROGRAM TOTALS/ && !total {gsub(",", "", $1); total = $1}
        /once_cell::imp::initialize_or_wait/ && !calib {gsub(",", "", $1); calib = $1}
        END {print total - calib}'
}

# The functions counted as the log's (exclusive counts; see the header).
LOG_FNS=${LOG_FNS:-'access_log|Cursor|LocalKey|memcpy|memcmp|memmove|quanta|h1::serve'}

# Exclusive instructions of the functions matching LOG_FNS in one run's output.
log_fns() { # config n
    callgrind_annotate --inclusive=no --threshold=100 "$tmp/callgrind.$1.$2" 2>/dev/null |
        awk -v re="$LOG_FNS" '$1 ~ /^[0-9,]+$/ && $0 ~ re {gsub(",", "", $1); s += $1} END {print s + 0}'
}

declare -A per fns
for cfg in off on; do
    a=$(instructions "$cfg" "$N1")
    b=$(instructions "$cfg" "$N2")
    per[$cfg]=$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN {printf "%.0f", (b - a) / (n2 - n1)}')
    fns[$cfg]=$(awk -v a="$(log_fns "$cfg" "$N1")" -v b="$(log_fns "$cfg" "$N2")" -v n1="$N1" -v n2="$N2" 'BEGIN {printf "%.0f", (b - a) / (n2 - n1)}')
    echo "$cfg: Ir($N1) = $a, Ir($N2) = $b: ${per[$cfg]} instructions per request (${fns[$cfg]} in LOG_FNS)" >&2
done
echo "log functions only: $((fns[on] - fns[off])) instructions per request" >&2
lines=$(wc -l <"$tmp/access.log")
echo "access log ($FORMAT, $TARGETS target(s)): ${per[off]} instructions per request off, ${per[on]} on: $(awk -v a="${per[on]}" -v b="${per[off]}" 'BEGIN {printf "%.3fx (+%.1f %%)", a / b, (a / b - 1) * 100}'); $lines lines logged; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
