#!/usr/bin/env bash
# User-space instructions per call, straight to the registry, through the
# gateway and through the bare forwarder: the proxy benchmark under
# `valgrind --tool=callgrind --separate-threads=yes`, instrumented for 15 s of
# its run, divided by the registry's calls in that time. For each path it
# prints the benchmark process's instructions a call (client, registry and
# proxy) and, through a proxy, those of the proxy's own threads (the
# gateway's serving threads, found by the door's `pass`; the bare
# forwarder's, by `serve_bare`). Unlike requests per second, the counts do
# not depend on what else the machine is doing. Under valgrind SHA-256 runs
# without the CPU's SHA instructions, so the message log's hashing (and a
# larger body's, as GetPerson's) counts for more here than it costs on the
# machine.
#
#   services/gateway/benches/instructions.sh                  # direct and gateway
#   services/gateway/benches/instructions.sh gateway bare     # those paths
#   WORKLOAD=GetPerson services/gateway/benches/instructions.sh gateway
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
binary=$(services/gateway/benches/proxy-binary.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(direct gateway)
workload=${WORKLOAD:-Verify}
case $workload in
  Verify) handler="verify_idp_certificate" ;;
  GetPerson) handler="get_person" ;;
  *) echo "WORKLOAD is Verify or GetPerson, not $workload" >&2; exit 1 ;;
esac
for one in "${paths[@]}"; do
  BENCH_PATHS=$one BENCH_WORKLOADS=$workload BENCH_SECONDS=40 BENCH_ROUNDS=1 BENCH_PERSONS=200 \
    valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no --callgrind-out-file="$work/$one.%p" "$binary" --bench \
    >"$work/$one.log" 2>&1 &
  bench=$!
  for _ in $(seq 1 300); do
    grep -q "concurrent callers" "$work/$one.log" && break
    sleep 1
  done
  sleep 3
  callgrind_control -i on "$bench" >/dev/null 2>&1
  sleep 15
  callgrind_control -d "$bench" >/dev/null 2>&1
  callgrind_control -i off "$bench" >/dev/null 2>&1
  wait "$bench" || { cat "$work/$one.log" >&2; exit 1; }
  python3 - "$one" "$workload" "$handler" "$work"/"$one".*.1-* <<'EOF'
import re, sys
path, workload, handler, dumps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
# The registry's handler, whose future is dropped once per call, whichever
# way it came; and what marks a proxy's own threads.
dropped = re.compile(r"core::ptr::drop_in_place<esocial_registry::grpc::.*::" + handler + r"::\{\{closure\}\}>$")
marker = {"gateway": "esocial_gateway::proxy::pass::", "bare": "serve_bare"}.get(path)
total, own, calls = 0, 0, 0
for dump in dumps:
    text = open(dump).read()
    summary = re.search(r"^summary: (\d+)", text, re.M)
    instructions = int(summary.group(1)) if summary else 0
    total += instructions
    if marker and marker in text:
        own += instructions
    names, callee = {}, None
    for line in text.split("\n"):
        named = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
        if named:
            number, name = named.groups()
            if name:
                names[number] = name
            callee = names.get(number) if line.startswith("cfn=") else None
            continue
        counted = re.match(r"calls=(\d+)", line)
        if counted and callee and dropped.match(callee):
            calls += int(counted.group(1))
per_call = lambda count: count // max(calls, 1)
line = f"{workload}, {path}: {calls:,} calls; {per_call(total):,} instructions a call in the benchmark process"
if marker:
    line += f", {per_call(own):,} of them on the proxy's own threads"
print(line)
EOF
done
