#!/usr/bin/env bash
# CPU per REGISTER of several tether builds side by side in one run (the
# machine is shared and noisy, so compare builds only within one run): in
# turn, round after round, each build starts fresh with one worker pinned to
# CPU 0 and sized for N, the load generator (the first build's, pinned to
# CPU 1) registers N new AORs as fast as a window of 1,000 allows, and the
# server's CPU time is read from /proc (all its threads, user + system).
#   benches/ab_register.sh ENDPOINTS ROUNDS BIN...
# e.g. benches/ab_register.sh 1000000 3 /tmp/old/tether target/release/tether
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1 rounds=$2; shift 2
bins=("$@")
gen=${bins[0]}
work=$(mktemp -d)
tpid=""
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf '%-40s %-5s %10s %12s %8s %16s\n' build round endpoints REGISTER/s failed cpu_us/REGISTER
for r in $(seq "$rounds"); do
  for bin in "${bins[@]}"; do
    port=$((20000 + RANDOM % 20000))
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[api]\nlisten = ""\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n' \
      "$port" "$n" > "$work/tether.toml"
    taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
    tpid=$!; sleep 1
    taskset -c 1 "$gen" bench register -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 \
      --duration 300 --server-pid "$tpid" --json > "$work/lg.json"
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    python3 - "$work/lg.json" "$bin" "$r" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print("%-40s %-5s %10s %12.0f %8d %16.2f" % (sys.argv[2][-40:], sys.argv[3], sys.argv[4], j["achieved_rate"], j["failed"], j["server_cpu_us_per_register"] or 0))
PY
  done
done
