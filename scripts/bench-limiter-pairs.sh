#!/usr/bin/env bash
# The limiter against tokio's semaphore as paired ratios: RUNS short runs of the `limiter`
# bench binary, each timing `tailwater_default` and `tokio_semaphore` (1 and 2 threads) in
# one process, so both see the same machine state. One median is not enough on a shared
# machine: the state changes from second to second, and a single run can land in a slow
# phase for one benchmark and not the other. Prints one line per run and a summary.
#
#   RUNS=40 scripts/bench-limiter-pairs.sh   # SKIP_BUILD=1: the last build; BIN=path: that binary
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-40}
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo bench -p tailwater-core --bench limiter --no-run 2>/dev/null
fi
target=${CARGO_TARGET_DIR:-target}
bin=${BIN:-$(ls -t "$target"/release/deps/limiter-* | grep -v '\.d$' | head -1)}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus; bench: $bin"
echo "run load1 tw_t1 tokio_t1 ratio_t1 tw_t2 tokio_t2 ratio_t2 (medians, ns)"
runs=$(for i in $(seq 1 "$RUNS"); do
    "$bin" --bench --exact limiter::tailwater_default limiter::tokio_semaphore \
        --sample-size 6400 2>&1 |
        awk -F'│' -v run="$i" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
            function ns(field,  v) { split(field, v, " "); return v[2] == "µs" ? v[1] * 1000 : v[1] }
            /tailwater_default/ { who = "tw" } /tokio_semaphore/ { who = "tokio" }
            /t=1|t=2/ { t = ($0 ~ /t=1/) ? 1 : 2; m[who, t] = ns($(NF - 3)) }
            END {
                printf "%d %s %.2f %.2f %.2f %.2f %.2f %.2f\n", run, load,
                    m["tw", 1], m["tokio", 1], m["tw", 1] / m["tokio", 1],
                    m["tw", 2], m["tokio", 2], m["tw", 2] / m["tokio", 2]
            }'
done)
echo "$runs"
echo "$runs" | awk '
    function summary(name, a, n,  i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        over = 0; for (i = 1; i <= n; i++) if (a[i] > 1) over++
        printf "%s: ratio min %.2f median %.2f max %.2f; above 1.0 in %d of %d runs\n",
            name, a[1], a[int((n + 1) / 2)], a[n], over, n
    }
    { n++; r1[n] = $5; r2[n] = $8 }
    END { summary("1 thread", r1, n); summary("2 threads", r2, n) }'
