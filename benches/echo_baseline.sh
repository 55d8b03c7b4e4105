#!/usr/bin/env bash
# The machine's UDP ceiling: C recvmmsg/sendmmsg echo over loopback, server
# pinned to CPU 0, client to CPU 1, 64-datagram batches, bounded to SECONDS.
# Prints request/response pairs per second and the server's CPU per pair.
#   benches/echo_baseline.sh [SECONDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-5}"
work=$(mktemp -d); trap 'kill "${spid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
gcc -O2 -o "$work/udp_echo" baseline/udp_echo.c
port=$((40000 + RANDOM % 20000))
taskset -c 0 "$work/udp_echo" server "$port" & spid=$!
sleep 0.2
before=$(awk '{print $1}' "/proc/$spid/schedstat")
out=$(taskset -c 1 "$work/udp_echo" client "$port" "$secs")
after=$(awk '{print $1}' "/proc/$spid/schedstat")
pps=$(echo "$out" | awk '{print $2}')
awk -v p="$pps" -v s="$secs" -v b="$before" -v a="$after" \
  'BEGIN { printf "pairs/s %.0f   server CPU per pair %.2f us\n", p, (a-b)/1000/(p*s) }'
