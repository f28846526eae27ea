# Sourced (not run) by scripts/check-dashboard.sh and scripts/check-dashboard-rls.sh: the
# set-up both share. Before sourcing, the caller sets NAME (its name, for messages and the
# temporary directory) and DEFAULT_BASE_PORT.
#
# Without `prometheus` it prints SKIPPED and exits 0 (the caller with it), unless
# TAILWATER_REQUIRE_PROMETHEUS=1. Then it sets BASE_PORT, LOAD_SECONDS, PROM_PORT
# (BASE_PORT + 3), root (the repository, made the working directory), TAILWATER (built
# when not given), tmp (a temporary directory) and pids (killed, with tmp removed, on
# exit), and defines:
#   prometheus_config RULE_FILE... -- JOB=TARGET...   writes $tmp/prometheus.yml (1 s
#                                                     scrapes and evaluations)
#   start_prometheus                                  Prometheus on loopback, $PROM_PORT
#   start_backend PORT WORKERS SERVICE_TIME LOG       a `tailwater backend`
#   start_load PATH RATE LOG                          `tailwater load` on the proxy's
#                                                     $PROXY_PORT for LOAD_SECONDS

if ! command -v prometheus >/dev/null; then
    if [ "${TAILWATER_REQUIRE_PROMETHEUS:-0}" = 1 ]; then
        echo "$NAME: prometheus not found and TAILWATER_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)" >&2
        exit 1
    fi
    echo "$NAME: SKIPPED: prometheus not found (apt-get install prometheus)" >&2
    exit 0
fi

BASE_PORT=${BASE_PORT:-$DEFAULT_BASE_PORT}
LOAD_SECONDS=${LOAD_SECONDS:-40}
PROM_PORT=$((BASE_PORT + 3))

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ -z "${TAILWATER:-}" ]; then
    cargo build -q -p tailwater
    TAILWATER="${CARGO_TARGET_DIR:-$root/target}/debug/tailwater"
fi
# shellcheck source=scripts/lib/scratch.sh
source "$root/scripts/lib/scratch.sh"
scratch "$NAME"

prometheus_config() {
    local rules=() jobs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do rules+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    jobs=("$@")
    {
        printf 'global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n'
        printf 'rule_files: [%s]\n' "$(IFS=,; echo "${rules[*]}" | sed 's/,/, /g')"
        printf 'scrape_configs:\n'
        for job in "${jobs[@]}"; do
            printf '  - job_name: %s\n    static_configs:\n      - targets: ["%s"]\n' \
                "${job%%=*}" "${job#*=}"
        done
    } >"$tmp/prometheus.yml"
}

start_prometheus() {
    prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
        --web.listen-address="127.0.0.1:$PROM_PORT" >"$tmp/prometheus.log" 2>&1 &
    pids+=($!)
}

start_backend() {
    "$TAILWATER" backend --listen "127.0.0.1:$1" --workers "$2" --service-time "$3" \
        >"$tmp/$4" 2>&1 &
    pids+=($!)
}

start_load() {
    "$TAILWATER" load "http://127.0.0.1:$PROXY_PORT$1" --rate "$2" --duration "${LOAD_SECONDS}s" \
        >"$tmp/$3" 2>&1 &
    pids+=($!)
}
