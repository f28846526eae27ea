# Sourced (not run) by the scripts that start processes beside a temporary directory: the
# directory and its removal on exit, written once.
#
#   scratch NAME
#       sets tmp (a new temporary directory, tailwater-NAME.XXXXXX) and pids (empty: the
#       caller appends the processes it starts) and, on exit, runs `before_cleanup` when the
#       caller defines it (to copy results out of tmp, say), kills every pid in pids, waits
#       for them and removes tmp.

scratch() { # name
    tmp=$(mktemp -d -t "tailwater-$1.XXXXXX")
    pids=()
    trap scratch_cleanup EXIT
}

scratch_cleanup() {
    if declare -F before_cleanup >/dev/null; then
        before_cleanup || true
    fi
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
