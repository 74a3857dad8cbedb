#!/usr/bin/env bash
# Load test: N simulated agents (one `agent simulate` process) against one
# standalone client manager on loopback. Prints the client manager's RSS per
# connected agent and the connect rate. Usage:
#   scripts/load-agents.sh [COUNT] [CONNECT_RATE]
# COUNT defaults to 10000 (keep one process under ~19,000 sockets);
# CONNECT_RATE is the server's CLIENT_MANAGER_CONNECT_RATE (default 500/s).
# With STORM=1 it then kills the client manager with SIGKILL, starts it
# again and reports how long until every agent is back and the peak
# connect rate the server accepted (a reconnect storm).
set -euo pipefail
count=${1:-10000}
rate=${2:-500}
port=${LOAD_PORT:-18300}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $cm_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

make -C "$root" -s build
CLIENT_MANAGER_HOST=127.0.0.1 CLIENT_MANAGER_PORT=$port CLIENT_MANAGER_DATA_DIR="$work/data" \
CLIENT_MANAGER_ENROLL_RATE=1000000 CLIENT_MANAGER_CONNECT_RATE=$rate CLIENT_MANAGER_LOG_LEVEL=warn \
  "$root/bin/client-manager" 2>"$work/cm.log" &
cm_pid=$!
for _ in $(seq 50); do curl -sf "localhost:$port/health/ready" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$cm_pid/status"; }

curl -sf -XPOST "localhost:$port/api/enrollment-tokens" -d "{\"name\":\"load\",\"uses\":$count,\"ttl\":\"2h\"}" |
  sed -E 's/.*"token":"([^"]+)".*/\1/' >"$work/token"
# Enroll once (credentials are stored), then restart the server so the
# measurement starts from a fresh process.
"$root/bin/agent" simulate --server "http://127.0.0.1:$port" --enroll-token "@$work/token" --count "$count" \
  --credentials-file "$work/creds.jsonl" --connect-rate 0 --duration 1s >/dev/null 2>&1
kill "$cm_pid"; wait "$cm_pid" || true
start_cm() {
  CLIENT_MANAGER_HOST=127.0.0.1 CLIENT_MANAGER_PORT=$port CLIENT_MANAGER_DATA_DIR="$work/data" \
  CLIENT_MANAGER_CONNECT_RATE=$rate CLIENT_MANAGER_LOG_LEVEL=warn \
    "$root/bin/client-manager" 2>>"$work/cm.log" &
  cm_pid=$!
  for _ in $(seq 100); do curl -sf "localhost:$port/health/ready" >/dev/null && break; sleep 0.05; done
}
connected() { curl -s "localhost:$port/metrics" | awk '/^cm_agents_connected/ {print $2}'; }
start_cm
sleep 1
base_rss=$(rss)

"$root/bin/agent" simulate --server "http://127.0.0.1:$port" --count "$count" --credentials-file "$work/creds.jsonl" \
  --connect-rate 0 --duration "${LOAD_DURATION:-60s}" --stats-interval 10s >"$work/sim.json" 2>"$work/sim.err" &
sim_pid=$!
peak=0
for _ in $(seq 120); do
  sleep 0.5
  n=$(connected)
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
  [ "${n:-0}" -ge "$count" ] && break
done
sleep 10   # settle: every agent has heartbeated at least once
steady_rss=$(rss)
connected=$(connected)
if [ "${STORM:-0}" = 1 ]; then
  kill -9 "$cm_pid"; wait "$cm_pid" 2>/dev/null || true
  t0=$(date +%s.%N)
  start_cm
  prev=0; prev_t=$(date +%s.%N); peak_rate=0; back_s=
  while :; do
    sleep 0.25
    now=$(date +%s.%N); n=$(connected); n=${n:-0}
    r=$(awk -v a="$n" -v b="$prev" -v t1="$now" -v t0="$prev_t" 'BEGIN {printf "%.0f", (a-b)/(t1-t0)}')
    [ "$r" -gt "$peak_rate" ] && peak_rate=$r
    prev=$n; prev_t=$now
    if [ "$n" -ge "$count" ]; then back_s=$(awk -v a="$now" -v b="$t0" 'BEGIN {printf "%.2f", a-b}'); break; fi
    awk -v a="$now" -v b="$t0" 'BEGIN {exit !(a-b > 120)}' && { back_s="not within 120s (at $n)"; break; }
  done
  echo "storm: all_back_s=$back_s peak_connect_rate_per_s=$peak_rate (server cap $rate/s)"
fi
wait "$sim_pid" || true
all_s=$(sed -nE 's/.*"all_connected_s": ([0-9.]+).*/\1/p' "$work/sim.json")
awk -v c="$connected" -v b="$base_rss" -v s="$steady_rss" -v p="$peak" -v t="$all_s" -v n="$count" 'BEGIN {
  printf "agents=%d connected=%d\n", n, c
  printf "rss_base_kib=%d rss_steady_kib=%d rss_peak_kib=%d\n", b, s, p
  printf "kib_per_agent=%.1f (steady - base) / connected; total rss / connected = %.1f\n", (s-b)/c, s/c
  printf "all_connected_s=%.2f connect_rate_per_s=%.0f\n", t, n/t
}'
