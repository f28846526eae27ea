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

NAME=check-dashboard-rls
DEFAULT_BASE_PORT=19380
# shellcheck source=scripts/dashboard-common.sh
source "$(dirname "$0")/dashboard-common.sh"
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))
RLS_GRPC_PORT=$((BASE_PORT + 4))
RLS_HTTP_PORT=$((BASE_PORT + 5))

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

prometheus_config ops.yml -- "tailwater-rls=127.0.0.1:$RLS_HTTP_PORT" \
    "tailwater-proxy=127.0.0.1:$ADMIN_PORT"
start_backend "$BACKEND_PORT" 8 2ms backend.log
"$TAILWATER" rls --config "$tmp/rls" --grpc "127.0.0.1:$RLS_GRPC_PORT" \
    --http "127.0.0.1:$RLS_HTTP_PORT" >"$tmp/rls.log" 2>&1 &
pids+=($!)
"$TAILWATER" proxy --config "$tmp/proxy.toml" --workers 1 >"$tmp/proxy.log" 2>&1 &
pids+=($!)
start_prometheus

start_load /api/x 200 load-api.txt
start_load /shadow/x 50 load-shadow.txt

if ! python3 "$root/scripts/dashboard-queries.py" "$tmp/dashboard.json" "$PROM_PORT" "$LOAD_SECONDS"; then
    echo "--- rls.log" >&2; tail -n 20 "$tmp/rls.log" >&2 || true
    echo "--- proxy.log" >&2; tail -n 20 "$tmp/proxy.log" >&2 || true
    exit 1
fi
