#!/usr/bin/env bash
# Where `tailwater load`'s send lag comes from: the scheduling delay (runnable -> running) of its
# pacing thread and of its runtime workers, from `perf sched`, for one or more builds side by
# side (alternating, ROUNDS rounds), at RATE req/s over TLS against nginx (as bench-load.sh).
#
#   scripts/bench-load-sched.sh /tmp/tailwater-main target/release/tailwater
#   ROUNDS=3 RATE=20000 scripts/bench-load-sched.sh BIN...
#
# Each build runs for DUR seconds; `perf sched record -a` records the middle REC seconds of it
# (system-wide: a wake-up is recorded in the context that issues it). The delay of a thread is
# what a request waits for once its thread is due to run: the pacing thread's is part of the
# pacer's lateness, the workers' part of the wait between release and write. Needs root (or
# perf_event_paranoid <= 0). On a machine shared with other work, run it in a session of its
# own whose autogroup gets a high weight, so the figures show the generator, not the neighbours:
#   setsid bash -c 'echo -19 > /proc/self/autogroup; exec scripts/bench-load-sched.sh BIN...'
set -euo pipefail

cd "$(dirname "$0")/.."
(( $# >= 1 )) || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-20000}
DUR=${DUR:-4}
REC=${REC:-1.5}
CONNS=${CONNS:-100}
PORT=${PORT:-19441}
OUT=${OUT:-$(mktemp -d /tmp/bench-load-sched.XXXXXX)}
TLS_DIR=$(cd crates/tailwater-test/tls && pwd)

# shellcheck source=lib/peers.sh
source scripts/lib/peers.sh
nginx_tls_origin "$OUT" "${NGINX_WORKERS:-2}" "$PORT" "$TLS_DIR"
nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" >"$OUT/nginx.log" 2>&1 &
NGINX=$!
trap 'kill -QUIT $NGINX 2>/dev/null || true; wait $NGINX 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sk -o /dev/null "https://127.0.0.1:$PORT/" 2>/dev/null && break
    sleep 0.1
done

echo "machine: $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); $(uname -sr); load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rate $RATE/s over TLS, $CONNS connections, ${DUR}s runs, perf sched over ${REC}s of each"
for r in $(seq "$ROUNDS"); do
    i=0
    for bin in "$@"; do
        i=$((i + 1))
        tag="r$r-b$i"
        "$bin" load "https://127.0.0.1:$PORT/" -k --rate "$RATE" --duration "${DUR}s" \
            --connections "$CONNS" --quiet --json "$OUT/$tag.json" >/dev/null 2>&1 &
        tw=$!
        sleep "$(python3 -c "print(max(0.5, ($DUR - $REC) / 2))")"
        perf sched record -a -o "$OUT/$tag.data" -- sleep "$REC" >/dev/null 2>&1 || true
        wait "$tw" || true
        perf sched timehist -i "$OUT/$tag.data" >"$OUT/$tag.txt" 2>/dev/null || true
        rm -f "$OUT/$tag.data"
        python3 - "$OUT/$tag.txt" "$OUT/$tag.json" "$tw" "$i:$(basename "$bin")" <<'PY'
import json, sys
path, js, pid, name = sys.argv[1:]
delays = {"pacer": [], "worker": []}
for line in open(path):
    # time cpu task [tid/pid] wait-time sched-delay run-time (ms)
    if f"/{pid}]" not in line:
        continue
    kind = "pacer" if "tailwater-load" in line else "worker" if "tokio-rt" in line else None
    try:
        delay_us = float(line.split()[-2]) * 1000
    except (ValueError, IndexError):
        continue
    if kind:
        delays[kind].append(delay_us)
d = json.load(open(js))
lag = d["send_lag_us"]
parts = []
for kind, v in delays.items():
    if not v:
        continue
    v.sort()
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
    parts.append(f"{kind} sched delay p50 {q(.5):.0f} p99 {q(.99):.0f} p99.9 {q(.999):.0f}us (n={len(v)})")
print(f"{name:>28}: send lag p50 {lag['p50']} p99 {lag['p99']}us (pacer p99 {d['pacer_lag_us']['p99']}, "
      f"wait p99 {d['conn_wait_us']['p99']}); " + "; ".join(parts))
PY
    done
done
echo "raw outputs: $OUT"
