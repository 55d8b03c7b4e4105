#!/usr/bin/env bash
# CPU per REGISTER of two tether builds side by side in one run (the machine
# is shared and noisy, so compare builds only within one run): alternately
# A, B, A, B, ... each starts fresh with one worker pinned to CPU 0 and sized
# for N, the load generator (pinned to CPU 1) registers N new AORs as fast as
# a window of 1,000 allows, and reads the server's CPU time from /proc.
#   benches/ab_register.sh A_BIN B_BIN [ENDPOINTS] [ROUNDS]
# e.g. benches/ab_register.sh /tmp/old/tether target/release/tether 1000000 3
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 n=${3:-1000000} rounds=${4:-3}
work=$(mktemp -d)
tpid=""
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf '%-6s %-5s %10s %12s %8s %14s\n' build run endpoints REGISTER/s failed cpu_us/REGISTER
for r in $(seq "$rounds"); do
  for which in A B; do
    bin=$a; [ "$which" = B ] && bin=$b
    port=$((20000 + RANDOM % 20000))
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n' \
      "$port" "$n" > "$work/tether.toml"
    taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
    tpid=$!; sleep 1
    taskset -c 1 "$bin" bench register -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 \
      --duration 300 --server-pid "$tpid" --json > "$work/lg.json"
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    python3 - "$work/lg.json" "$which" "$r" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print("%-6s %-5s %10s %12.0f %8d %14.2f" % (sys.argv[2], sys.argv[3], sys.argv[4], j["achieved_rate"], j["failed"], j["server_cpu_us_per_register"] or 0))
PY
  done
done
