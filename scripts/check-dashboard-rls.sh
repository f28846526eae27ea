#!/usr/bin/env bash
# Checks the generated Grafana dashboard of the rate limit service against real data (issue
# 13, item 5), as scripts/check-dashboard.sh does for the proxy.
#
# Starts a `tailwater backend`, a real `tailwater rls` (in-memory store; one enforced rule
# that binds under the load, one in shadow mode) and `tailwater proxy` in front of the
# backend asking the RLS about every request (`[route.rls]`), writes the RLS dashboard
# (`tailwater slo dashboard --rls`) and the operational alert rules (`tailwater slo ops`,
# checked with `promtool check rules` and loaded into Prometheus), starts a real Prometheus
# (Debian's `prometheus` package) on loopback scraping the RLS and the proxy every second,
# drives load with `tailwater load`, then evaluates every panel's query through Prometheus's
# HTTP API (scripts/dashboard-queries.py) and fails if any returns no series.
#
# Usage: scripts/check-dashboard-rls.sh   (env: BASE_PORT=19380 LOAD_SECONDS=40
#                                          TAILWATER=path/to/tailwater,
#                                          TAILWATER_REQUIRE_PROMETHEUS=1 to fail without it)
# Without `prometheus` it prints SKIPPED and exits 0, unless TAILWATER_REQUIRE_PROMETHEUS=1.
set -euo pipefail

if ! command -v prometheus >/dev/null; then
    if [ "${TAILWATER_REQUIRE_PROMETHEUS:-0}" = 1 ]; then
        echo "check-dashboard-rls: prometheus not found and TAILWATER_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)" >&2
        exit 1
    fi
    echo "check-dashboard-rls: SKIPPED: prometheus not found (apt-get install prometheus)" >&2
    exit 0
fi

BASE_PORT=${BASE_PORT:-19380}
LOAD_SECONDS=${LOAD_SECONDS:-40}
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))
PROM_PORT=$((BASE_PORT + 3))
RLS_GRPC_PORT=$((BASE_PORT + 4))
RLS_HTTP_PORT=$((BASE_PORT + 5))

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${TAILWATER:-}" ]; then
    cargo build -q -p tailwater
    TAILWATER="${CARGO_TARGET_DIR:-$root/target}/debug/tailwater"
fi
tmp=$(mktemp -d -t tailwater-dashboard-rls.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/rls"
cat >"$tmp/rls/shop.yaml" <<'EOF'
domain: shop
descriptors:
  # Binds under the 200 req/s of the load: over_limit, near_limit and within_limit hits.
  - key: generic_key
    value: api
    rate_limit:
      unit: second
      requests_per_unit: 150
  # Would bind, but only counts: shadow_mode hits.
  - key: generic_key
    value: shadow
    shadow_mode: true
    rate_limit:
      unit: second
      requests_per_unit: 20
EOF

cat >"$tmp/proxy.toml" <<EOF
[server]
listen = "127.0.0.1:$PROXY_PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[route]]
name = "api"
path_prefix = "/api"
upstream = "http://127.0.0.1:$BACKEND_PORT"
[route.rls]
address = "http://127.0.0.1:$RLS_GRPC_PORT"
domain = "shop"
timeout = "200ms"
[[route.rls.descriptor]]
entries = [{ source = "generic_key", value = "api" }]

[[route]]
name = "shadow"
path_prefix = "/shadow"
upstream = "http://127.0.0.1:$BACKEND_PORT"
[route.rls]
address = "http://127.0.0.1:$RLS_GRPC_PORT"
domain = "shop"
timeout = "200ms"
[[route.rls.descriptor]]
entries = [{ source = "generic_key", value = "shadow" }]
EOF

"$TAILWATER" proxy --config "$tmp/proxy.toml" --check >/dev/null
"$TAILWATER" slo dashboard --rls -o "$tmp/dashboard.json"
"$TAILWATER" slo ops -o "$tmp/ops.yml" --runbooks "$tmp/runbooks"
promtool check rules "$tmp/ops.yml" >/dev/null

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [ops.yml]
scrape_configs:
  - job_name: tailwater-rls
    static_configs:
      - targets: ["127.0.0.1:$RLS_HTTP_PORT"]
  - job_name: tailwater-proxy
    static_configs:
      - targets: ["127.0.0.1:$ADMIN_PORT"]
EOF

"$TAILWATER" backend --listen "127.0.0.1:$BACKEND_PORT" --workers 8 --service-time 2ms \
    >"$tmp/backend.log" 2>&1 &
pids+=($!)
"$TAILWATER" rls --config "$tmp/rls" --grpc "127.0.0.1:$RLS_GRPC_PORT" \
    --http "127.0.0.1:$RLS_HTTP_PORT" >"$tmp/rls.log" 2>&1 &
pids+=($!)
"$TAILWATER" proxy --config "$tmp/proxy.toml" --workers 1 >"$tmp/proxy.log" 2>&1 &
pids+=($!)
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

"$TAILWATER" load "http://127.0.0.1:$PROXY_PORT/api/x" --rate 200 --duration "${LOAD_SECONDS}s" \
    >"$tmp/load-api.txt" 2>&1 &
pids+=($!)
"$TAILWATER" load "http://127.0.0.1:$PROXY_PORT/shadow/x" --rate 50 --duration "${LOAD_SECONDS}s" \
    >"$tmp/load-shadow.txt" 2>&1 &
pids+=($!)

if ! python3 "$root/scripts/dashboard-queries.py" "$tmp/dashboard.json" "$PROM_PORT" "$LOAD_SECONDS"; then
    echo "--- rls.log" >&2; tail -n 20 "$tmp/rls.log" >&2 || true
    echo "--- proxy.log" >&2; tail -n 20 "$tmp/proxy.log" >&2 || true
    exit 1
fi
