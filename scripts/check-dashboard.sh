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

NAME=check-dashboard
DEFAULT_BASE_PORT=19280
# shellcheck source=scripts/dashboard-common.sh
source "$(dirname "$0")/dashboard-common.sh"
BACKEND_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))
SLOW_PORT=$((BASE_PORT + 4))

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

prometheus_config rules.yml ops.yml -- "tailwater=127.0.0.1:$ADMIN_PORT"
start_backend "$BACKEND_PORT" 8 2ms backend.log
start_backend "$SLOW_PORT" 2 20ms slow.log
"$TAILWATER" proxy --config "$tmp/proxy.toml" --workers 1 >"$tmp/proxy.log" 2>&1 &
pids+=($!)
start_prometheus

start_load /api/x 200 load-api.txt
start_load /limited/x 50 load-limited.txt
start_load /busy/x 300 load-busy.txt

python3 "$root/scripts/dashboard-queries.py" "$tmp/dashboard.json" "$PROM_PORT" "$LOAD_SECONDS"
