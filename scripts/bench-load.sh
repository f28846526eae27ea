#!/usr/bin/env bash
# Benchmark of `tailwater load` against oha and wrk, side by side in one run.
#
#   scripts/bench-load.sh            # full sweep (about 5 minutes after the release build)
#   DUR=3 RATES="20000 40000" scripts/bench-load.sh
#
# Target: `tailwater backend` with zero service time (inline 200 "ok"), on loopback.
# 1. Maximum sustained open-loop rate: each open-loop tool (tailwater, oha -q with
#    --latency-correction) is run at increasing target rates for DUR seconds; a rate is
#    sustained when the achieved rate is >= 97% of the target with no errors. wrk is closed
#    loop (no rate option; wrk2 is not packaged), so its figure is its saturation throughput
#    with the same number of connections: an upper bound for an open-loop rate.
# 2. tailwater's send-lag distribution (actual - intended send time) at 20 000 req/s.
# 3. CPU per request at fixed rates (CPU_RATES, default "5000 10000"), tailwater and oha side by
#    side, alternating, CPU_REPS rounds (default 3): user+system CPU-seconds per 1000 responses
#    and context switches per response, from each tool's own rusage (wait4), so the load of
#    other processes on the machine does not enter the figure. ONLY=cpu runs just this part.
# TLS=1 measures the same over HTTPS: the target is then nginx (NGINX_WORKERS workers,
# default 2: with one, a worker preempted by the load generator on a 2-core machine stalls
# every connection at once, and the run measures that stall, not the tool; `return 200`, the test certificate from crates/tailwater-test/tls, keep-alive),
# and every tool skips certificate verification (tailwater -k, oha --insecure) so they do the
# same work. Both tools hit the same target in the same run; wrk's closed-loop saturation
# shows what the target can give at all (when an open-loop rate is above it, that point
# measures the target, not the load generator).
# PACE_QUANTUM sets tailwater's --pace-quantum (default: tailwater's own, 250us).
# Everything shares the machine's cores with the target, as a user's run would.
set -euo pipefail

cd "$(dirname "$0")/.."
DUR=${DUR:-5}
CONNS=${CONNS:-100}
RATES=${RATES:-"20000 40000 60000 80000 100000 120000 150000"}
PORT=${PORT:-19321}
OHA=${OHA:-$(command -v oha || echo /root/.cache/oha/bin/oha)}
URL="http://127.0.0.1:${PORT}/"
TLS=${TLS:-0}
TW_ARGS=()
[[ -n ${PACE_QUANTUM:-} ]] && TW_ARGS+=(--pace-quantum "$PACE_QUANTUM")
OHA_TLS=()
if [[ $TLS == 1 ]]; then
    URL="https://127.0.0.1:${PORT}/"
    TW_ARGS+=(-k)
    OHA_TLS=(--insecure)
fi
OUT=${OUT:-$(mktemp -d /tmp/bench-load.XXXXXX)}

[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release -p tailwater >&2
TW=${CARGO_TARGET_DIR:-target}/release/tailwater

if [[ $TLS == 1 ]]; then
    # shellcheck source=lib/peers.sh
    source "$(dirname "$0")/lib/peers.sh"
    TLS_DIR=$(cd "$(dirname "$0")/../crates/tailwater-test/tls" && pwd)
    nginx_tls_origin "$OUT" "${NGINX_WORKERS:-2}" "$PORT" "$TLS_DIR"
    nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" >"$OUT/backend.log" 2>&1 &
else
    "$TW" backend --listen "127.0.0.1:${PORT}" --workers 100000 --service-time 0ms --queue 0 \
        >"$OUT/backend.log" 2>&1 &
fi
BACKEND=$!
trap 'kill -INT $BACKEND 2>/dev/null || true; wait $BACKEND 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    if curl -sk -o /dev/null "$URL" 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
    sleep 0.1
done

echo "machine: $(nproc) cores; $(uname -sr); load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $("$TW" --version), $("$OHA" --version 2>/dev/null | head -1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
if [[ $TLS == 1 ]]; then
    echo "target: nginx over TLS (${NGINX_WORKERS:-2} workers, return 200); $CONNS connections; ${DUR}s per point"
else
    echo "target: tailwater backend, 0 service time; $CONNS connections; ${DUR}s per point"
fi
echo

tw_point() { # rate -> "achieved errors"
    "$TW" load "$URL" "${TW_ARGS[@]}" --rate "$1" --duration "${DUR}s" --connections "$CONNS" --quiet \
        --json "$OUT/tw-$1.json" >/dev/null || true
    python3 - "$OUT/tw-$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
bad = sum(d["errors"].values()) + sum(v for k, v in d["status"].items() if k != "200")
print(f'{d["achieved_rate"]:.0f} {bad}')
PY
}

oha_point() {
    "$OHA" "${OHA_TLS[@]}" -z "${DUR}s" -q "$1" -c "$CONNS" --latency-correction --no-tui \
        --output-format json "$URL" >"$OUT/oha-$1.json" 2>/dev/null || true
    python3 - "$OUT/oha-$1.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    s = d["summary"]
    codes = d.get("statusCodeDistribution", {})
    # oha counts the requests still in flight at the -z deadline as "aborted due to
    # deadline"; those are not failures of the target.
    errs = {k: v for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k}
    bad = sum(errs.values()) + sum(v for k, v in codes.items() if k != "200")
    print(f'{s["requestsPerSec"]:.0f} {bad}')
except Exception:
    print("0 1")
PY
}

# CPU of one tool's run, from its rusage: prints "cpu_seconds voluntary_cs involuntary_cs".
rusage() {
    python3 -c '
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, _, ru = os.wait4(p.pid, 0)
print(f"{ru.ru_utime + ru.ru_stime:.4f} {ru.ru_nvcsw} {ru.ru_nivcsw}")
' "$@"
}

cpu_section() {
    local rates=${CPU_RATES:-"5000 10000"} reps=${CPU_REPS:-3}
    echo "CPU per request at fixed rates over ${DUR}s (${reps} alternating rounds; CPU-seconds per 1000 responses, context switches per response):"
    printf '%-10s %8s %6s %10s %12s %10s\n' tool rate round responses "cpu-s/1000" "cs/resp"
    for rate in $rates; do
        for round in $(seq "$reps"); do
            for tool in tailwater oha; do
                if [[ $tool == tailwater ]]; then
                    read -r cpu vcs ivcs < <(rusage "$TW" load "$URL" "${TW_ARGS[@]}" --rate "$rate" --duration "${DUR}s" \
                        --connections "$CONNS" --quiet --json "$OUT/cpu-tw-$rate-$round.json")
                    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["responses"])' "$OUT/cpu-tw-$rate-$round.json")
                else
                    read -r cpu vcs ivcs < <(rusage sh -c "exec \"\$@\" >'$OUT/cpu-oha-$rate-$round.json'" oha "$OHA" "${OHA_TLS[@]}" \
                        -z "${DUR}s" -q "$rate" -c "$CONNS" --latency-correction --no-tui --output-format json "$URL")
                    n=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1])).get("statusCodeDistribution", {}).values()))' "$OUT/cpu-oha-$rate-$round.json")
                fi
                python3 - "$tool" "$rate" "$round" "$n" "$cpu" "$vcs" "$ivcs" >>"$OUT/cpu.txt" <<'PY2'
import sys
tool, rate, rnd, n, cpu, vcs, ivcs = sys.argv[1:]
n = max(int(n), 1)
print(f"{tool} {rate} {rnd} {n} {float(cpu) * 1000 / n:.4f} {(int(vcs) + int(ivcs)) / n:.3f}")
PY2
                tail -1 "$OUT/cpu.txt" | awk '{printf "%-10s %8s %6s %10s %12s %10s\n", $1, $2, $3, $4, $5, $6}'
            done
        done
    done
    python3 - "$OUT/cpu.txt" <<'PY2'
import sys, collections
rows = [l.split() for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for tool, rate, rnd, n, cpu, cs in rows:
    by[(rate, rnd)].append((tool, float(cpu), float(cs)))
per_rate = collections.defaultdict(list)
for (rate, rnd), v in sorted(by.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
    d = {t: (c, s) for t, c, s in v}
    if "tailwater" in d and "oha" in d and d["oha"][0] > 0:
        per_rate[rate].append(d["tailwater"][0] / d["oha"][0])
for rate, r in sorted(per_rate.items(), key=lambda kv: int(kv[0])):
    r = sorted(r)
    print(f"  {rate}/s: tailwater / oha CPU per request = {r[len(r) // 2]:.2f}x median of rounds ({', '.join(f'{x:.2f}x' for x in r)})")
PY2
}

if [[ ${ONLY:-all} == cpu ]]; then
    cpu_section
    echo "raw outputs: $OUT"
    exit 0
fi

# The machine is shared: each point is measured REPS times, alternating tools, and the best
# attempt counts (contention only ever lowers a figure).
REPS=${REPS:-2}
declare -A BEST=([tailwater]=0 [oha]=0) SAT=([tailwater]=0 [oha]=0)
printf '%-10s %10s %10s %8s %10s\n' tool target achieved errors sustained
for rate in $RATES; do
    for tool in tailwater oha; do
        best_got=0; best_bad=1
        for _ in $(seq "$REPS"); do
            if [[ $tool == tailwater ]]; then read -r got bad < <(tw_point "$rate"); else read -r got bad < <(oha_point "$rate"); fi
            if (( bad == 0 && (best_bad != 0 || got > best_got) )) || (( best_bad != 0 && got > best_got )); then
                best_got=$got; best_bad=$bad
            fi
        done
        ok=no
        if [[ $best_bad -eq 0 ]] && python3 -c "import sys; sys.exit(0 if $best_got >= 0.97*$rate else 1)"; then
            ok=yes
            (( rate > BEST[$tool] )) && BEST[$tool]=$rate
        fi
        (( best_got > SAT[$tool] )) && SAT[$tool]=$best_got
        printf '%-10s %10d %10d %8d %10s\n' "$tool" "$rate" "$best_got" "$best_bad" "$ok"
    done
done

WRK=0
for _ in $(seq "$REPS"); do
    wrk -t2 -c"$CONNS" -d"${DUR}s" "$URL" >"$OUT/wrk.txt"
    w=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$OUT/wrk.txt")
    (( w > WRK )) && WRK=$w
done
printf '%-10s %10s %10d %8s %10s\n' wrk "closed" "$WRK" "-" "(saturation)"

echo
LAG_REPS=${LAG_REPS:-3}
echo "send lag of tailwater load at 20000 req/s (${LAG_REPS} runs of $((DUR * 2))s; load avg before each run):"
for k in $(seq "$LAG_REPS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$TW" load "$URL" "${TW_ARGS[@]}" --rate 20000 --duration "$((DUR * 2))s" --connections "$CONNS" --quiet \
        --json "$OUT/tw-lag-$k.json" >/dev/null || true
    python3 - "$OUT/tw-lag-$k.json" "$load" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["send_lag_us"]
# Per-second p99s separate the generator from the machine: on a shared box, seconds in which
# other processes take the CPUs show millisecond lags, quiet seconds show the pacing itself.
p99s = sorted(i["send_lag_us"]["p99"] for i in d["intervals"] if i["responses"] > 1000)
per = f'; per-second p99 best {p99s[0]}us, median {p99s[len(p99s) // 2]}us, worst {p99s[-1]}us' if p99s else ''
# The send lag splits into the pacer's lateness (the OS woke the pacing thread late) and the
# wait for a free connection (every connection busy: the target, or the machine, is behind).
split = f'; of which pacer p99 {d["pacer_lag_us"]["p99"]}us, connection wait p99 {d["conn_wait_us"]["p99"]}us'
print(f'  load {sys.argv[2]}: achieved {d["achieved_rate"]:.0f}/s; send lag p50 {l["p50"]}us p90 {l["p90"]}us '
      f'p99 {l["p99"]}us p99.9 {l["p99_9"]}us max {l["max"]}us{split}{per}')
PY
done
python3 - "$OUT" "$LAG_REPS" <<'PY'
import json, sys
runs = sorted(json.load(open(f"{sys.argv[1]}/tw-lag-{k}.json"))["send_lag_us"]["p99"] for k in range(1, int(sys.argv[2]) + 1))
med = runs[len(runs) // 2]
print(f'  median run p99 {med}us; goal p99 <= 1000us: {"met" if med <= 1000 else "MISSED"}')
PY

echo
cpu_section
echo "load avg after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "max sustained open-loop rate: tailwater ${BEST[tailwater]}/s, oha ${BEST[oha]}/s; wrk (closed loop) saturation ${WRK}/s"
echo "highest achieved rate at any target: tailwater ${SAT[tailwater]}/s, oha ${SAT[oha]}/s"
python3 - "${BEST[tailwater]}" "${BEST[oha]}" "$WRK" "${SAT[tailwater]}" "${SAT[oha]}" <<'PY'
import sys
tw, oha, wrk, stw, soha = map(float, sys.argv[1:])
r = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
print(f"  sustained:  tailwater / oha = {r(tw, oha)} (goal >= 1.0x: {'met' if oha and tw >= oha else 'MISSED'}); tailwater / wrk = {r(tw, wrk)}")
print(f"  saturation: tailwater / oha = {r(stw, soha)}; tailwater / wrk = {r(stw, wrk)}")
PY
echo "raw outputs: $OUT"
