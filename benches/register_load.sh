#!/usr/bin/env bash
# CPU time per REGISTER and REGISTER/s with tether pinned to one core and
# SIPp (the load) pinned to the other, on loopback, bounded in count and time.
#
#   benches/register_load.sh [CALLS] [RATE...]      (defaults: 60000 calls; 10000 20000 40000 /s)
#
# Per rate it prints: the rate asked, the rate SIPp achieved, failed calls,
# and tether's CPU microseconds per REGISTER (from /proc/PID/schedstat, which
# counts on-CPU time exactly, unlike /proc/stat on these VMs). Every REGISTER
# creates a new binding (distinct users).
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-60000}"; shift || true
rates=("${@:-10000 20000 40000}")
[ ${#rates[@]} -eq 1 ] && read -r -a rates <<< "${rates[0]}"
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 1; }
cargo build --release -q
work=$(mktemp -d); trap 'kill "${tpid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[api]\nlisten = ""\n[runtime]\nworkers = 1\n' "$port" > "$work/tether.toml"
{ echo SEQUENTIAL; for i in $(seq -w 0 $((calls * ${#rates[@]}))); do echo "u$i;x"; done; } > "$work/users.csv"
taskset -c 0 target/release/tether run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
tpid=$!
sleep 0.5
# Sum over all threads: the workers are threads of the tether process.
cpu_ns() { cat /proc/"$tpid"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
rcvbuf_errors() { nstat -az UdpRcvbufErrors 2>/dev/null | awk '/UdpRcvbufErrors/ {print $2}'; }
printf '%8s %10s %8s %14s %14s\n' "rate" "achieved" "failed" "cpu_us/REG" "rcvbuf_drops"
for rate in "${rates[@]}"; do
  before=$(cpu_ns); drops_before=$(rcvbuf_errors)
  start=$(date +%s.%N)
  taskset -c 1 timeout 120 sipp -sf tests/sipp/register.xml -inf "$work/users.csv" -m "$calls" -r "$rate" -rp 1000 \
    -l 20000 -buff_size 8388608 -timeout 100s -nostdin -i 127.0.0.1 -p $((port + 1)) -t u1 \
    -trace_stat -stf "$work/stat.csv" 127.0.0.1:"$port" > /dev/null 2>&1 || true
  end=$(date +%s.%N)
  after=$(cpu_ns); drops=$(( $(rcvbuf_errors) - drops_before ))
  # Last line of SIPp's stat file: cumulative successful and failed calls.
  ok=$(tail -1 "$work/stat.csv" | awk -F';' '{print $16}')
  failed=$(tail -1 "$work/stat.csv" | awk -F';' '{print $18}')
  awk -v r="$rate" -v ok="$ok" -v f="$failed" -v s="$start" -v e="$end" -v b="$before" -v a="$after" -v d="$drops" \
    'BEGIN { printf "%8d %10.0f %8d %14.2f %14d\n", r, ok/(e-s), f, (a-b)/1000/ok, d }'
  rm -f "$work/stat.csv"
done
