#!/usr/bin/env bash
# The kernel side of a proxied request: per proxy (tailwater, nginx, HAProxy, each with W
# workers in front of tailwater-bench-backend), TCP segments sent, delayed and pure ACKs
# (`nstat`), voluntary / involuntary context switches and user / kernel CPU time
# (`/proc/PID/task/*`), all per request, for N requests from
# `h2load --h1 -c C -t T` (keep-alive). Proxies run one after another.
#
# Why: ~80 % of a proxy's CPU here is kernel time, which callgrind does not count
# (scripts/callgrind-proxy.sh). Segment and switch counts show whether a proxy makes the
# kernel do more per request (extra ACKs, more sleeps) independently of the machine's load.
# The counters are per network namespace, so the script must run in a private one, where
# other jobs' loopback traffic is not counted:
#
# Usage: unshare -n scripts/netns-proxy.sh TAILWATER BACKEND
#        (env: N=200000 C=64 T=2 W=2 PROXIES="tailwater nginx haproxy"; needs root for
#        unshare, plus nginx, haproxy, h2load, curl and nstat)
set -euo pipefail
TW=$1; BE=$2; N=${N:-200000}; C=${C:-64}; T=${T:-2}; W=${W:-2}
PROXIES=${PROXIES:-tailwater nginx haproxy}
ip link set lo up
tmp=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null; rm -rf $tmp' EXIT
"$BE" 127.0.0.1:19380 2>/dev/null & pids+=($!)
# shellcheck source=scripts/lib/peers.sh
source "$(dirname "$0")/lib/peers.sh"
peer_configs "$tmp" 19380 19381 "$W"
wait_http http://127.0.0.1:19380/ 100
stat_of() { # pid -> "utime stime vol nonvol" summed over threads
  local u=0 s=0 v=0 n=0
  for t in /proc/$1/task/*; do
    read -r -a f < $t/stat; u=$((u+f[13])); s=$((s+f[14]))
    v=$((v+$(awk '/^voluntary/{print $2}' $t/status))); n=$((n+$(awk '/^nonvoluntary/{print $2}' $t/status)))
  done; echo "$u $s $v $n"; }
for name in $PROXIES; do
  case $name in
    tailwater) RUST_LOG=warn "$TW" proxy --upstream http://127.0.0.1:19380 --listen 127.0.0.1:19381 --no-admin --workers $W >/dev/null 2>&1 & ;;
    nginx) nginx -p $tmp/nginx -c $tmp/nginx/nginx.conf 2>/dev/null & ;;
    haproxy) haproxy -db -f $tmp/haproxy/haproxy.cfg >/dev/null 2>&1 & ;;
  esac
  p=$!; pids+=($p)
  wait_http http://127.0.0.1:19381/ 100
  h2load --h1 -n 20000 -c $C -t $T http://127.0.0.1:19381/ >/dev/null 2>&1
  procs="$p $(pgrep -P $p | tr "\n" " " || true)"
  declare -a before=(0 0 0 0)
  for q in $procs; do read -r a b c d <<<"$(stat_of $q)"; before=($((before[0]+a)) $((before[1]+b)) $((before[2]+c)) $((before[3]+d))); done
  nstat -n >/dev/null
  out=$(h2load --h1 -n $N -c $C -t $T http://127.0.0.1:19381/ 2>&1)
  ns=$(nstat -z TcpOutSegs TcpExtDelayedACKs TcpExtTCPPureAcks TcpExtTCPHPAcks TcpExtTCPAutoCorking 2>/dev/null | awk 'NR>1{printf "%s=%.3f ", $1, $2/'$N'}')
  declare -a after=(0 0 0 0)
  for q in $procs; do read -r a b c d <<<"$(stat_of $q)"; after=($((after[0]+a)) $((after[1]+b)) $((after[2]+c)) $((after[3]+d))); done
  rps=$(echo "$out" | awk '/^finished in/{print $4}')
  ok=$(echo "$out" | awk '/^requests:/{print $8}')
  awk -v n=$N -v name=$name -v rps="$rps" -v ok="$ok" -v u=$((after[0]-before[0])) -v s=$((after[1]-before[1])) -v v=$((after[2]-before[2])) -v nv=$((after[3]-before[3])) -v ns="$ns" 'BEGIN{printf "%-9s %s req/s succeeded=%s user=%.2fus sys=%.2fus vcsw=%.3f ivcsw=%.3f %s\n", name, rps, ok, u*10000/n, s*10000/n, v/n, nv/n, ns}'
  kill $p; wait $p 2>/dev/null || true
done
