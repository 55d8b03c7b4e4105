#!/usr/bin/env bash
# Two tether builds side by side in one run (the machine is shared and noisy,
# so compare builds only within one run): alternately A, B, A, B, ... each
# starts fresh, N endpoints register (tether bench notify; each endpoint its
# own 127/8 address and port, answering 200), one contact-me job to all of
# them through the API; then the server's RSS. Prints one line per run.
#   benches/ab_fanout.sh A_BIN B_BIN [ENDPOINTS] [ROUNDS] [JOB_RATE] [KIND]
# (KIND: contact-me, the default, or wake-invite; JOB_RATE 0 = the node's rate)
# e.g. benches/ab_fanout.sh /tmp/old/tether target/release/tether 1000000 3 115000
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 n=${3:-1000000} rounds=${4:-3} rate=${5:-115000} kind=${6:-contact-me}
job_rate=(--job-rate "$rate"); [ "$rate" = 0 ] && job_rate=()
work=$(mktemp -d)
tpid=""
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf '%-6s %-5s %10s %10s %12s %14s %12s\n' build run endpoints seconds delivered cpu_us/device rss_MiB
for r in $(seq "$rounds"); do
  for which in A B; do
    bin=$a; [ "$which" = B ] && bin=$b
    port=$((20000 + RANDOM % 20000)); aport=$((port + 1))
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 2\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n[api]\nlisten = "127.0.0.1:%s"\nclients = [{ name = "bench", token = "bench-token-0123456789" }]\n[notify]\nrate = 200000\n' \
      "$port" "$n" "$aport" > "$work/tether.toml"
    "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
    tpid=$!; sleep 1
    "$bin" bench notify -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 --duration 300 \
      --source-base 127.42.0.1 --api "http://127.0.0.1:$aport" --token bench-token-0123456789 \
      --server-pid "$tpid" --probes 0 "${job_rate[@]}" --job-kind "$kind" --json > "$work/lg.json"
    rss=$(awk '/VmRSS/ {print int($2 / 1024)}' /proc/"$tpid"/status)
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    python3 - "$work/lg.json" "$which" "$r" "$n" "$rss" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["job"]
print("%-6s %-5s %10s %10.2f %12d %14.2f %12s" % (sys.argv[2], sys.argv[3], sys.argv[4], j["seconds"], j["delivered"], j["server_cpu_us_per_device"] or 0, sys.argv[5]))
PY
  done
done
