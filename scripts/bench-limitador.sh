#!/usr/bin/env bash
# One rate-limit decision in process, tailwater-rls against the `limitador` crate (its
# in-memory storage, the same limit, one run): benches/limitador-compare, a separate cargo
# project outside the workspace (limitador pulls ~122 crates that CI must not build).
#
#   scripts/bench-limitador.sh            # 7 alternating rounds of 300 000 decisions
#   ROUNDS=9 ITERS=500000 scripts/bench-limitador.sh
set -euo pipefail
cd "$(dirname "$0")/../benches/limitador-compare"
echo "cpu: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cpus; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run --release --quiet
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
