#!/usr/bin/env bash
# Checks the generated Grafana dashboard against real data (issue 13, item 5).
# (The rate limit service's dashboard: scripts/check-dashboard-rls.sh.)
#
# Starts two `tailwater backend`s, `tailwater proxy` in front of them (three routes: one
# healthy, one rate-limited, one overloaded so that the limit binds, requests are shed and
# the algorithm reports its RTT and gradient estimates), writes the SLO rules (`tailwater slo generate`) and the dashboard
# (`tailwater slo dashboard`) from the same config and spec, starts a real Prometheus
# (Debian's `prometheus` package) on loopback scraping the proxy's admin listener every
# second with those recording rules loaded, drives load with `tailwater load`, then
# evaluates every panel's query through Prometheus's HTTP API (`$route` = `.*`,
# `$__rate_interval` = 1m) and fails if any returns no series.
#
# Usage: scripts/check-dashboard.sh   (env: BASE_PORT=19280 LOAD_SECONDS=40
#                                      TAILWATER=path/to/tailwater,
#                                      TAILWATER_REQUIRE_PROMETHEUS=1 to fail without it)
# Without `prometheus` it prints SKIPPED and exits 0, unless TAILWATER_REQUIRE_PROMETHEUS=1.
set -euo pipefail

if ! command -v prometheus >/dev/null; then
    if [ "${TAILWATER_REQUIRE_PROMETHEUS:-0}" = 1 ]; then
        echo "check-dashboard: prometheus not found and TAILWATER_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)" >&2
        exit 1
    fi
    echo "check-dashboard: SKIPPED: prometheus not found (apt-get install prometheus)" >&2
    exit 0
fi

BASE_PORT=${BASE_PORT:-19280}
LOAD_SECONDS=${LOAD_SECONDS:-40}
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))
PROM_PORT=$((BASE_PORT + 3))
SLOW_PORT=$((BASE_PORT + 4))

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${TAILWATER:-}" ]; then
    cargo build -q -p tailwater
    TAILWATER="${CARGO_TARGET_DIR:-$root/target}/debug/tailwater"
fi
tmp=$(mktemp -d -t tailwater-dashboard.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$PROXY_PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[route]]
name = "api"
path_prefix = "/api"
upstream = "http://127.0.0.1:$BACKEND_PORT"

[[route]]
name = "limited"
path_prefix = "/limited"
upstream = "http://127.0.0.1:$BACKEND_PORT"
[[route.rate_limit]]
name = "few"
rate = 20
period = "1s"

[[route]]
name = "busy"
path_prefix = "/busy"
upstream = "http://127.0.0.1:$SLOW_PORT"
EOF

cat >"$tmp/slo.yaml" <<'EOF'
version: tailwater/v1
service: shop
traffic_guard: off
slos:
  - name: availability
    objective: 99.9
    route: api
    sli: availability
  - name: latency
    objective: 99
    route: api
    sli: latency
    threshold: 0.25
EOF

"$TAILWATER" proxy --config "$tmp/proxy.toml" --check >/dev/null
"$TAILWATER" slo generate "$tmp/slo.yaml" -o "$tmp/rules.yml"
"$TAILWATER" slo dashboard --proxy-config "$tmp/proxy.toml" --spec "$tmp/slo.yaml" -o "$tmp/dashboard.json"
"$TAILWATER" slo ops -o "$tmp/ops.yml"
promtool check rules "$tmp/rules.yml" "$tmp/ops.yml" >/dev/null

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml, ops.yml]
scrape_configs:
  - job_name: tailwater
    static_configs:
      - targets: ["127.0.0.1:$ADMIN_PORT"]
EOF

"$TAILWATER" backend --listen "127.0.0.1:$BACKEND_PORT" --workers 8 --service-time 2ms \
    >"$tmp/backend.log" 2>&1 &
pids+=($!)
"$TAILWATER" backend --listen "127.0.0.1:$SLOW_PORT" --workers 2 --service-time 20ms \
    >"$tmp/slow.log" 2>&1 &
pids+=($!)
"$TAILWATER" proxy --config "$tmp/proxy.toml" --workers 1 >"$tmp/proxy.log" 2>&1 &
pids+=($!)
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

"$TAILWATER" load "http://127.0.0.1:$PROXY_PORT/api/x" --rate 200 --duration "${LOAD_SECONDS}s" \
    >"$tmp/load-api.txt" 2>&1 &
pids+=($!)
"$TAILWATER" load "http://127.0.0.1:$PROXY_PORT/limited/x" --rate 50 --duration "${LOAD_SECONDS}s" \
    >"$tmp/load-limited.txt" 2>&1 &
pids+=($!)
"$TAILWATER" load "http://127.0.0.1:$PROXY_PORT/busy/x" --rate 300 --duration "${LOAD_SECONDS}s" \
    >"$tmp/load-busy.txt" 2>&1 &
pids+=($!)

python3 "$root/scripts/dashboard-queries.py" "$tmp/dashboard.json" "$PROM_PORT" "$LOAD_SECONDS"
