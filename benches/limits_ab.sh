#!/usr/bin/env bash
# What the limits cost a REGISTER: tether (one worker, CPU 0) registering N
# new AORs as fast as it answers (generator on CPU 1), with [limits] on for
# the generator's loopback sources (exempt = []) and off (loopback exempt,
# the default), alternating, ROUNDS times each. Prints REGISTER/s and
# server CPU per REGISTER per run.
# Usage: benches/limits_ab.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/tether}
N=${1:-300000}
ROUNDS=${2:-3}
PORT=${PORT:-5094}
dir=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
  for mode in on off; do
    exempt='[]'
    [ "$mode" = off ] && exempt='["127.0.0.0/8"]'
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\n[api]\nlisten = ""\n[limits]\nexempt = %s\n' \
      "$PORT" "$exempt" > "$dir/t.toml"
    taskset -c 0 "$BIN" run --config "$dir/t.toml" 2>/dev/null >/dev/null &
    pid=$!
    sleep 0.5
    taskset -c 1 "$BIN" bench register -t "127.0.0.1:$PORT" -n "$N" -r 0 --window 1000 \
      --server-pid "$pid" --json > "$dir/$mode-$r.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], 'REGISTER/s %.0f' % s['achieved_rate'], 'server us/REGISTER %.2f' % (s['server_cpu_us_per_register'] or 0), 'failed', s['failed'])" \
      "$dir/$mode-$r.json" "$mode" "$r"
  done
done
rm -rf "$dir"
