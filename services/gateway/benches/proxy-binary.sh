#!/usr/bin/env bash
# Builds the proxy benchmark (release, as `cargo bench` does) if it is not
# built yet, and prints its executable's path. Used by instructions.sh and
# threads.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo bench -p esocial-gateway --bench proxy --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("target", {}).get("name") == "proxy" and message.get("executable"):
        print(message["executable"])'
