#!/usr/bin/env python3
"""Evaluates every panel query of a generated Grafana dashboard through a real Prometheus.

Usage: dashboard-queries.py DASHBOARD.json PROM_PORT LOAD_SECONDS

Used by scripts/check-dashboard.sh (the proxy) and scripts/check-dashboard-rls.sh (the rate
limit service): dashboard variables are replaced (`$__rate_interval` = 1m, `$route` and
`$key` = `.*`), every query is asked until it returns series (for at least 15 s of data)
or LOAD_SECONDS - 5 s pass; exits 1 if any returned none.
"""
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
    expr = expr.replace("$__rate_interval", "1m").replace("$route", ".*").replace("$key", ".*")
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
