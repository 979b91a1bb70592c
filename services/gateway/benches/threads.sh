#!/usr/bin/env bash
# Each kind of thread's CPU time a call, for one path and one workload of the
# proxy benchmark: the benchmark's threads summed by name (the shared runtime
# `tokio-rt-worker`, the proxies' serving threads), PostgreSQL's processes and
# nginx's workers, read 10 s apart in the middle of a 24 s one-path run.
#
#   services/gateway/benches/threads.sh gateway VerifyIdpCertificate
#
# Builds the bench binary if need be; the nginx paths need Debian's nginx.
# Prints the run's line, then the ticks (1/100 s) of each kind in the 10 s
# and the µs a call of each kind.
set -euo pipefail
path=${1:?path: direct, gateway, bare or nginx}
workload=${2:?workload: VerifyIdpCertificate or GetPerson}
binary=$("$(dirname "$0")/proxy-binary.sh")
cd "$(dirname "$0")/.."
log=$(mktemp)
BENCH_PATHS=$path BENCH_WORKLOADS=$workload BENCH_SECONDS=24 BENCH_ROUNDS=1 "$binary" --bench >"$log" 2>&1 &
bench=$!
sleep 12
ticks() { # pid → user + system ticks
  local fields
  read -ra fields <<<"$(cut -d')' -f2 "$1/stat")"
  echo $((fields[11] + fields[12]))
}
snapshot() {
  for task in /proc/$bench/task/*; do echo "$(cat "$task/comm") $(ticks "$task")"; done
  for pid in $(pgrep postgres); do echo "postgresql $(ticks /proc/"$pid")"; done
  for pid in $(pgrep -f 'nginx: worker' || true); do echo "nginx-worker $(ticks /proc/"$pid")"; done
}
before=$(snapshot | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort)
sleep 10
after=$(snapshot | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort)
wait "$bench"
line=$(grep -E "^\| $workload" "$log" | head -1)
echo "$line"
rate=$(echo "$line" | awk -F'|' '{gsub(/ /, "", $4); print $4}')
join <(echo "$before") <(echo "$after") | awk -v rate="$rate" '
  { d = $3 - $2; if (d > 0) printf "%-20s %6d ticks  %8.1f µs/call\n", $1, d, d * 10000 / (rate * 10) }'
rm -f "$log"
