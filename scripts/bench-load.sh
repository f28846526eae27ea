#!/usr/bin/env bash
# Benchmark of `tailwater load` against oha and wrk, side by side in one run.
#
#   scripts/bench-load.sh            # full sweep (about 3 minutes after the release build)
#   DUR=3 RATES="20000 40000" scripts/bench-load.sh
#
# Target: `tailwater backend` with zero service time (inline 200 "ok"), on loopback.
# 1. Maximum sustained open-loop rate: each open-loop tool (tailwater, oha -q with
#    --latency-correction) is run at increasing target rates for DUR seconds; a rate is
#    sustained when the achieved rate is >= 97% of the target with no errors. wrk is closed
#    loop (no rate option; wrk2 is not packaged), so its figure is its saturation throughput
#    with the same number of connections: an upper bound for an open-loop rate.
# 2. tailwater's send-lag distribution (actual - intended send time) at 20 000 req/s.
# Everything shares the machine's cores with the target, as a user's run would.
set -euo pipefail

cd "$(dirname "$0")/.."
DUR=${DUR:-5}
CONNS=${CONNS:-100}
RATES=${RATES:-"10000 20000 30000 40000 50000 60000 70000 80000 100000"}
PORT=${PORT:-19321}
OHA=${OHA:-$(command -v oha || echo /root/.cache/oha/bin/oha)}
URL="http://127.0.0.1:${PORT}/"
OUT=${OUT:-$(mktemp -d /tmp/bench-load.XXXXXX)}

cargo build --release -p tailwater >&2
TW=target/release/tailwater

"$TW" backend --listen "127.0.0.1:${PORT}" --workers 100000 --service-time 0ms --queue 0 \
    >"$OUT/backend.log" 2>&1 &
BACKEND=$!
trap 'kill -INT $BACKEND 2>/dev/null || true; wait $BACKEND 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    if curl -s -o /dev/null "$URL" 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
    sleep 0.1
done

echo "machine: $(nproc) cores; $(uname -sr); load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $("$TW" --version), $("$OHA" --version 2>/dev/null | head -1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "target: tailwater backend, 0 service time; $CONNS connections; ${DUR}s per point"
echo

tw_point() { # rate -> "achieved errors"
    "$TW" load "$URL" --rate "$1" --duration "${DUR}s" --connections "$CONNS" --quiet \
        --json "$OUT/tw-$1.json" >/dev/null
    python3 - "$OUT/tw-$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
bad = sum(d["errors"].values()) + sum(v for k, v in d["status"].items() if k != "200")
print(f'{d["achieved_rate"]:.0f} {bad}')
PY
}

oha_point() {
    "$OHA" -z "${DUR}s" -q "$1" -c "$CONNS" --latency-correction --no-tui \
        --output-format json "$URL" >"$OUT/oha-$1.json" 2>/dev/null || true
    python3 - "$OUT/oha-$1.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    s = d["summary"]
    codes = d.get("statusCodeDistribution", {})
    bad = sum(d.get("errorDistribution", {}).values()) + sum(v for k, v in codes.items() if k != "200")
    print(f'{s["requestsPerSec"]:.0f} {bad}')
except Exception:
    print("0 1")
PY
}

declare -A BEST=([tailwater]=0 [oha]=0)
printf '%-10s %10s %10s %8s %10s\n' tool target achieved errors sustained
for rate in $RATES; do
    for tool in tailwater oha; do
        if [[ $tool == tailwater ]]; then read -r got bad < <(tw_point "$rate"); else read -r got bad < <(oha_point "$rate"); fi
        ok=no
        if [[ $bad -eq 0 ]] && python3 -c "import sys; sys.exit(0 if $got >= 0.97*$rate else 1)"; then
            ok=yes
            (( rate > BEST[$tool] )) && BEST[$tool]=$rate
        fi
        printf '%-10s %10d %10d %8d %10s\n' "$tool" "$rate" "$got" "$bad" "$ok"
    done
done

wrk -t2 -c"$CONNS" -d"${DUR}s" "$URL" >"$OUT/wrk.txt"
WRK=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$OUT/wrk.txt")
printf '%-10s %10s %10d %8s %10s\n' wrk "closed" "$WRK" "-" "(saturation)"

echo
echo "send lag of tailwater load at 20000 req/s (${DUR}s x 2):"
"$TW" load "$URL" --rate 20000 --duration "$((DUR * 2))s" --connections "$CONNS" --quiet \
    --json "$OUT/tw-lag.json" >/dev/null
python3 - "$OUT/tw-lag.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["send_lag_us"]
print(f'  achieved {d["achieved_rate"]:.0f}/s; send lag p50 {l["p50"]}us p90 {l["p90"]}us p99 {l["p99"]}us p99.9 {l["p99_9"]}us max {l["max"]}us')
print(f'  goal p99 <= 1000us: {"met" if l["p99"] <= 1000 else "MISSED"}')
PY

echo
echo "max sustained open-loop rate: tailwater ${BEST[tailwater]}/s, oha ${BEST[oha]}/s, wrk saturation ${WRK}/s"
python3 - "${BEST[tailwater]}" "${BEST[oha]}" "$WRK" <<'PY'
import sys
tw, oha, wrk = map(float, sys.argv[1:])
r = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
print(f"  tailwater / oha = {r(tw, oha)} (goal >= 1.0x: {'met' if oha and tw >= oha else 'MISSED'})")
print(f"  tailwater / wrk = {r(tw, wrk)}")
PY
echo "raw outputs: $OUT"
