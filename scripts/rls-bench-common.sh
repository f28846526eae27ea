# Shared set-up of the `tailwater rls` bench scripts (bench-rls.sh, bench-rls-redis.sh,
# bench-rls-loadgen.sh): sourced, never run. The caller has `cd`'d to the repository root,
# set `set -euo pipefail` and chosen OUT (its output directory).
#
# Provides:
#   TW                  the tailwater binary (built in release first unless SKIP_BUILD=1;
#                       PROFILE=debug picks an already built dev binary)
#   TCK                 clock ticks per second, for /proc/PID/stat
#   RLS_PATH            the ShouldRateLimit gRPC path
#   rls_require TOOL... exits with a message when a tool is missing
#   rls_fixture         writes $OUT/config/bench.yaml (domain bench, user: 1e9 per second,
#                       never denies) and $OUT/request.bin (the gRPC-framed request)
#   rls_wait_port PORT  waits (at most 5 s) until 127.0.0.1:PORT accepts
#   rls_free_port       prints a free TCP port on 127.0.0.1
#   rls_h2 URL N [C M]  h2load, h2c, C connections x M streams (default 4 x 16), N calls of
#                       request.bin to URL
#   rls_ticks PID       utime + stime of PID, in clock ticks
#   rls_cpu_us T0 T1 N  CPU microseconds per call from two tick readings and N calls
#   rls_load1           the 1-minute load average
#   rls_cpu_name        the CPU model and core count
#   rls_capture_evalsha PORT URL   the EVALSHA one call sends (see below)
#   rls_ok FILE, rls_rate FILE     successful calls, calls/s from an h2load report

TARGET=${CARGO_TARGET_DIR:-target}
PROFILE=${PROFILE:-release}
[[ ${SKIP_BUILD:-0} == 1 ]] || cargo build --release -p tailwater >&2
TW="$TARGET/$PROFILE/tailwater"
TCK=$(getconf CLK_TCK)
RLS_PATH=/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit

rls_require() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "$tool missing (h2load: apt-get install -y nghttp2-client)" >&2
            exit 1
        }
    done
}

rls_fixture() {
    mkdir -p "$OUT/config"
    cat >"$OUT/config/bench.yaml" <<'YAML'
domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
YAML
    # RateLimitRequest{domain: "bench", descriptors: [{entries: [{key: "user", value:
    # "alice"}]}]} in protobuf, behind the 5-byte gRPC frame header (uncompressed,
    # big-endian length). `tailwater load --rls-*` builds the same message itself.
    python3 - "$OUT/request.bin" <<'PY'
import struct, sys
def field(num, payload):
    return bytes([num << 3 | 2, len(payload)]) + payload
entry = field(1, b"user") + field(2, b"alice")
msg = field(1, b"bench") + field(2, field(1, entry))
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY
}

rls_wait_port() {
    local _
    for _ in $(seq 50); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

rls_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rls_h2() {
    h2load -n "$2" -c "${3:-4}" -m "${4:-16}" -d "$OUT/request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$1"
}

rls_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

rls_cpu_us() {
    python3 -c "print(f'{($2 - $1) / $TCK / max($3, 1) * 1e6:.2f}')"
}

rls_load1() { cut -d' ' -f1 /proc/loadavg; }

rls_cpu_name() {
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
}

# rls_capture_evalsha REDIS_PORT URL: sends one call to URL while MONITOR watches Redis,
# and prints the words of the first EVALSHA the service sent (one per line), for
# redis-benchmark to replay as "one Redis round trip per request".
rls_capture_evalsha() {
    local mon
    redis-cli -p "$1" MONITOR >"$OUT/monitor.txt" 2>&1 &
    mon=$!
    sleep 0.3
    rls_h2 "$2" 1 1 1 >/dev/null
    sleep 0.3
    kill "$mon" 2>/dev/null || true
    wait "$mon" 2>/dev/null || true
    python3 - "$OUT/monitor.txt" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if '"EVALSHA"' in line:
        for a in re.findall(r'"((?:[^"\\]|\\.)*)"', line.split('] ', 1)[1]):
            print(a)
        break
PY
}

# rls_ok FILE / rls_rate FILE: calls that succeeded, and calls per second, from an h2load
# report.
rls_ok() { awk '/^requests:/ {print $8}' "$1"; }
rls_rate() { awk '/^finished in/ {print $4}' "$1"; }
