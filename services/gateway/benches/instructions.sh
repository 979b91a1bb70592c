#!/usr/bin/env bash
# User-space instructions per VerifyIdpCertificate call, straight to the
# registry and through the gateway: the proxy benchmark under
# `valgrind --tool=callgrind`, instrumented for 15 s of its run, divided by the
# registry's calls in that time. Unlike requests per second, the count does not
# depend on what else the machine is doing. Under valgrind SHA-256 runs without
# the CPU's SHA instructions, so the message log's hashing counts for more here
# than it costs on the machine.
#
#   services/gateway/benches/instructions.sh            # direct and gateway
#   services/gateway/benches/instructions.sh gateway    # one path
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
binary=$(cargo bench -p esocial-gateway --bench proxy --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("target", {}).get("name") == "proxy" and message.get("executable"):
        print(message["executable"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(direct gateway)
for one in "${paths[@]}"; do
  BENCH_PATHS=$one BENCH_WORKLOADS=Verify BENCH_SECONDS=40 BENCH_ROUNDS=1 BENCH_PERSONS=200 \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$one.%p" "$binary" --bench \
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
  python3 - "$one" "$work"/"$one".*.1 <<'EOF'
import re, sys
path, dump = sys.argv[1], sys.argv[2]
text = open(dump).read()
total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
names, calls, callee = {}, 0, None
for line in text.split("\n"):
    named = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if named:
        number, name = named.groups()
        if name:
            names[number] = name
        callee = names.get(number) if line.startswith("cfn=") else None
        continue
    counted = re.match(r"calls=(\d+)", line)
    # Dropped once per call, whichever way it came.
    if counted and callee and callee.startswith(
        "core::ptr::drop_in_place<esocial_registry::idp::<impl esocial_registry::service::Registry>::verify_certificate"
    ):
        calls += int(counted.group(1))
print(f"{path}: {total:,} instructions for {calls:,} calls: {total // max(calls, 1):,} a call")
EOF
done
