#!/usr/bin/env bash
# Benchmark: answering while the upstream is down. tailwater proxy and nginx each proxy to a
# loopback port nobody listens on (DEAD_PORT, default 9: below the ephemeral range, so no
# test or client ever binds it), and wrk drives each in turn, ROUNDS times alternating.
# Every answer is a local 502 (or a 503 when the limit sheds); what differs is whether the
# client connection survives it. A proxy that closes after each 502 makes every client
# reconnect per request: an outage becomes a reconnect storm on top of it.
#
#   SKIP_BUILD=1 ROUNDS=3 DURATION=5s scripts/bench-upstream-down.sh
#   BEFORE=/path/to/older/tailwater ...   # also run an older build, side by side
#
# Prints answers per second and wrk's socket errors per proxy and round.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
DEAD_PORT=${DEAD_PORT:-9}
BASE_PORT=${BASE_PORT:-19410}
CORES=$(nproc)

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "bench-upstream-down: $tool not found" >&2; exit 1; }
done
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p tailwater --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
tw="$target_dir/release/tailwater"

tmp=$(mktemp -d /tmp/bench-upstream-down.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/peers.sh
source "$root/scripts/lib/peers.sh"
answers() { # url: waits until it answers anything (a 502 is the expected answer)
    for _ in $(seq 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "bench-upstream-down: $1 never answered" >&2
    return 1
}

declare -A url
mkdir -p "$tmp/nginx"
{
    nginx_head "$tmp" "$CORES"
    cat <<EOF
    upstream dead { server 127.0.0.1:$DEAD_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$BASE_PORT;
        location / {
            proxy_pass http://dead;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$tmp/nginx/nginx.conf"
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.log" &
pids+=($!)
url[nginx]="http://127.0.0.1:$BASE_PORT/"

start_tailwater() { # name binary port
    RUST_LOG=error "$2" proxy --upstream "http://127.0.0.1:$DEAD_PORT" --listen "127.0.0.1:$3" \
        --admin "127.0.0.1:$(($3 + 100))" --workers "$CORES" 2>"$tmp/$1.log" &
    pids+=($!)
    url[$1]="http://127.0.0.1:$3/"
}
start_tailwater tailwater "$tw" $((BASE_PORT + 1))
names=(tailwater nginx)
if [ -n "${BEFORE:-}" ]; then
    start_tailwater before "$BEFORE" $((BASE_PORT + 2))
    names=(tailwater before nginx)
fi
for n in "${names[@]}"; do answers "${url[$n]}"; done

echo "upstream down (127.0.0.1:$DEAD_PORT refuses); wrk -t1 -c$CONNS -d$DURATION; CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '%-6s %-10s %12s %10s  %s\n' round proxy "answers/s" "non-2xx" "socket errors"
for r in $(seq "$ROUNDS"); do
    for n in "${names[@]}"; do
        out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "${url[$n]}" 2>&1)
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
        errs=$(grep -o 'Socket errors:.*' <<<"$out" || echo "none")
        printf '%-6s %-10s %12s %10s  %s\n' "$r" "$n" "$rps" "${non2xx:-0}" "$errs"
    done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
