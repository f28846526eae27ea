#!/usr/bin/env bash
# What each proxy costs the upstream behind it: the trivial backend (tailwater-bench-backend)
# runs under `valgrind --tool=callgrind` while h2load (HTTP/1.1, keep-alive, C connections,
# one request at a time on each) sends it N1 then N2 requests through tailwater proxy, nginx
# or HAProxy (one worker each, configured as scripts/callgrind-proxy.sh configures them), or
# directly ("direct"); the backend's instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1).
#
# Why: on the benchmark machine the backend shares the cores with the proxy and wrk, so what
# the proxy makes it do (the fields it adds to each request, how it spreads requests over
# connections) is part of the proxy's throughput, and no count of the proxy's own process
# shows it. EXTRA_HEADERS="name: value|name: value" adds fields to the direct path's
# requests (h2load -H), to price single fields.
#
# Usage: scripts/callgrind-upstream.sh   (env: TAILWATER=path/to/tailwater,
#        BACKEND=path/to/tailwater-bench-backend (default: the release build), N1=2000
#        N2=12000 C=8 PROXIES="direct tailwater nginx haproxy" BASE_PORT=19480 EXTRA_HEADERS)
# Needs: valgrind, h2load, nginx, haproxy, curl.
set -euo pipefail

N1=${N1:-2000}
N2=${N2:-12000}
C=${C:-8}
PROXIES=${PROXIES:-direct tailwater nginx haproxy}
BASE_PORT=${BASE_PORT:-19480}
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/peers.sh
source "$root/scripts/lib/peers.sh"
release_binaries "$root"
extra=()
if [ -n "${EXTRA_HEADERS:-}" ]; then
    IFS='|' read -r -a fields <<<"$EXTRA_HEADERS"
    for f in "${fields[@]}"; do extra+=(-H "$f"); done
fi

bench_workdir tailwater-cgu

peer_configs "$tmp" "$BACKEND_PORT" "$PROXY_PORT" 1

stop() { # pid
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# The backend's instructions over one run of $2 requests through proxy $1, into $tmp/ir.
run() { # name n
    local name=$1 n=$2 out=$tmp/cg.$1.$2 backend proxy="" url
    valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
        "$BACKEND" "127.0.0.1:$BACKEND_PORT" 2>"$tmp/backend.log" &
    backend=$!
    pids+=("$backend")
    wait_http "http://127.0.0.1:$BACKEND_PORT/" 300 "" "$tmp/backend.log"
    url="http://127.0.0.1:$PROXY_PORT/"
    local h=()
    case $name in
        direct)
            url="http://127.0.0.1:$BACKEND_PORT/"
            h=("${extra[@]}")
            ;;
        tailwater)
            RUST_LOG=warn "$TAILWATER" proxy --upstream "http://127.0.0.1:$BACKEND_PORT" \
                --listen "127.0.0.1:$PROXY_PORT" --no-admin --workers 1 2>"$tmp/$name.log" &
            ;;
        nginx) nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/$name.log" & ;;
        haproxy) haproxy -db -f "$tmp/haproxy/haproxy.cfg" >/dev/null 2>"$tmp/$name.log" & ;;
    esac
    if [ "$name" != direct ]; then
        proxy=$!
        pids+=("$proxy")
        wait_http "$url" 300 "" "$tmp/$name.log"
    fi
    h2load --h1 -n "$n" -c "$C" -m 1 -t 1 "${h[@]}" "$url" >"$tmp/h2load" 2>&1
    grep -q "$n succeeded" "$tmp/h2load" || {
        echo "callgrind-upstream: h2load failed through $name:" >&2
        grep -E "requests:|status codes" "$tmp/h2load" >&2
    }
    [ -n "$proxy" ] && stop "$proxy"
    stop "$backend"
    callgrind_annotate "$out" 2>/dev/null | awk '
        /PROGRAM TOTALS/ && !done { done = 1; gsub(",", "", $1); print $1 + 0 }' >"$tmp/ir"
}

echo "| path | backend Ir per request | Ir at N1=$N1 | Ir at N2=$N2 |"
echo "|---|---:|---:|---:|"
for name in $PROXIES; do
    run "$name" "$N1"
    read -r a <"$tmp/ir"
    run "$name" "$N2"
    read -r b <"$tmp/ir"
    per=$(awk -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" 'BEGIN {printf "%.0f", (b - a) / (n2 - n1)}')
    echo "| $name | $per | $a | $b |"
done
echo
echo "h2load --h1 -c $C -m 1, N1=$N1 N2=$N2${EXTRA_HEADERS:+, direct with: $EXTRA_HEADERS}; CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
