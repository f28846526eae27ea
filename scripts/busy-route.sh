#!/usr/bin/env bash
# The dashboard check's busy route on real sockets, alone (issue 16, session 11): a
# `tailwater backend` of 2 workers × 20 ms (100 req/s) behind `tailwater proxy` with its
# default limit (no [route.limit]: Headroom), offered 300 req/s from the first request by
# `tailwater load` (100 connections, its default). Prints the limit, the algorithm's baseline
# (`tailwater_limiter_min_rtt_seconds`) and recent RTT every second, then the load's summary.
#
# Started under overload, Headroom used to learn the first round's queue as its baseline
# (0.6 s for a 20 ms service) and a limit of ~120 that, above the client's 100 connections,
# never bound again: every request waited behind a backend queue of ~98.
#
# Usage: scripts/busy-route.sh   (env: BASE_PORT=19380 LOAD_SECONDS=10 RATE=300
#                                 TAILWATER=path/to/tailwater)
set -euo pipefail

BASE_PORT=${BASE_PORT:-19380}
LOAD_SECONDS=${LOAD_SECONDS:-10}
RATE=${RATE:-300}
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ -z "${TAILWATER:-}" ]; then
    cargo build -q --release -p tailwater
    TAILWATER="${CARGO_TARGET_DIR:-$root/target}/release/tailwater"
fi
# shellcheck source=lib/scratch.sh
source "$root/scripts/lib/scratch.sh"
scratch busy-route

cat >"$tmp/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$PROXY_PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[route]]
name = "busy"
path_prefix = "/busy"
upstream = "http://127.0.0.1:$BACKEND_PORT"
TOML

"$TAILWATER" backend --listen "127.0.0.1:$BACKEND_PORT" --workers 2 --service-time 20ms \
    >"$tmp/backend.log" 2>&1 &
pids+=($!)
"$TAILWATER" proxy --config "$tmp/proxy.toml" >"$tmp/proxy.log" 2>&1 &
pids+=($!)

# Wait (with a deadline) until both listen.
ready() { curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null &&
    curl -sS -o /dev/null "http://127.0.0.1:$BACKEND_PORT/" 2>/dev/null; }
deadline=$((SECONDS + 20))
until ready; do
    if [ $SECONDS -ge $deadline ]; then
        echo "busy-route: the proxy or backend did not start" >&2
        cat "$tmp/proxy.log" "$tmp/backend.log" >&2
        exit 1
    fi
    sleep 0.2
done

gauge() {
    curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk -v m="$1" '!found && $1 ~ "^"m"\\{" && $1 ~ /route="busy"/ { print $2; found = 1 }'
}

"$TAILWATER" load "http://127.0.0.1:$PROXY_PORT/busy/x" --rate "$RATE" \
    --duration "${LOAD_SECONDS}s" >"$tmp/load.txt" 2>&1 &
load=$!
pids+=($load)
printf '%4s %7s %10s %10s\n' s limit baseline rtt
for ((s = 1; s <= LOAD_SECONDS; s++)); do
    sleep 1 # a sampling period, not synchronisation: the load runs on its own clock
    printf '%4d %7s %10s %10s\n' "$s" "$(gauge tailwater_limiter_limit)" \
        "$(gauge tailwater_limiter_min_rtt_seconds)" "$(gauge tailwater_limiter_rtt_seconds)"
done
wait "$load"
cat "$tmp/load.txt"
