#!/usr/bin/env bash
# Checks the generated Grafana dashboard against real data (issue 13, item 5).
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
promtool check rules "$tmp/rules.yml" >/dev/null

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
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

python3 - "$tmp/dashboard.json" "$PROM_PORT" "$LOAD_SECONDS" <<'EOF'
import json, sys, time, urllib.parse, urllib.request

dashboard, port, load_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(dashboard) as f:
    d = json.load(f)
queries = [
    (p["title"], t["expr"])
    for p in d["panels"]
    for t in p["targets"]
]

def query(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$route", ".*")
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]

# Let Prometheus scrape and evaluate for a while under load, then ask every panel.
deadline = time.time() + load_seconds - 5
start = time.time()
pending = list(queries)
results = {}
while True:
    still = []
    for title, expr in pending:
        try:
            res = query(expr)
            results[expr] = "no series"
        except Exception as e:  # Prometheus not up yet, or a bad query
            res = []
            results[expr] = f"error: {e}"
        ids = sorted({r["metric"].get("sloth_id", "") for r in res} - {""})
        # A query over several SLOs must return every one of them.
        want = expr.split('sloth_id=~"')[1].split('"')[0].split("|") if 'sloth_id=~"' in expr else []
        if want and sorted(want) != ids:
            res = []
            results[expr] = f"only {ids}"
        if res and time.time() - start >= 15:
            results[expr] = f"{len(res)} series" + (f" ({', '.join(ids)})" if ids else "")
        else:
            still.append((title, expr))
    pending = still
    if not pending or time.time() > deadline:
        break
    time.sleep(1)

width = max(len(t) for t, _ in queries)
for title, expr in queries:
    print(f"{title:<{width}}  {results[expr]:<14}  {expr}")
if pending:
    print(f"check-dashboard: FAILED: {len(pending)} of {len(queries)} queries returned no series", file=sys.stderr)
    sys.exit(1)
print(f"check-dashboard: all {len(queries)} panel queries returned series")
EOF
