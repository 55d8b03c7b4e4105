#!/usr/bin/env bash
# Overload of tether's RTP relay: is it graceful? tether runs one worker
# pinned to CPU 0 and shares that core with a busy loop, so it gets about
# half a core; the generator (`tether bench rtp`, 1000 calls × 2 streams ×
# 2 directions) and a signalling load (`tether bench keepalive`: endpoints
# registering, then answering tether's keepalive prompts every few seconds)
# run on CPU 1. Two runs, one after the other:
#   1. RTP at LOW pps per stream direction (what half a core sustains);
#   2. RTP at HIGH (twice that): the relay is overloaded.
# Each run reports forwarded packets/s, loss, how evenly the loss spreads
# over the 4000 flows (delivery min / median / max per flow, flows that got
# nothing) and whether signalling kept working (registrations, prompts
# answered, against the same signalling load in run 1).
#   benches/rtp-overload.sh [LOW] [HIGH] [SECONDS]     (default 30 60 10)
# BIN=path/to/tether skips the release build. Results: OUT (default
# benches/results/rtp-overload): the generators' JSON and summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
low=${1:-30}
high=${2:-60}
secs=${3:-10}
calls=1000
out=${OUT:-benches/results/rtp-overload}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  bin=${CARGO_TARGET_DIR:-target}/release/tether
else
  bin=$BIN
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"

run() { # pps label
  local ng=$(( 20000 + RANDOM % 9000 )) sip
  sip=$(( ng + 1 ))
  local api=$(( ng + 2 ))
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[api]\nlisten = "127.0.0.1:%s"\n[keepalive]\ninterval_ms = 3000\njitter_ms = 500\ntimeout_ms = 2000\n[media]\nng_listen = "127.0.0.1:%s"\nports = "30000-49999"\n' \
    "$sip" "$api" "$ng" > "$work/tether.toml"
  taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
  local tpid=$!
  pids+=("$tpid")
  # Half a core: a busy loop shares CPU 0, bounded in time.
  taskset -c 0 timeout $(( secs + 40 )) sh -c 'while :; do :; done' &
  local hog=$!
  pids+=("$hog")
  sleep 1.5
  taskset -c 1 "$bin" bench keepalive -t "127.0.0.1:$sip" -n 2000 -r 1000 --hold $(( secs + 6 )) --answer 200 \
    --json > "$out/signalling-$2.json" 2> "$work/ka.log" &
  local ka=$!
  pids+=("$ka")
  sleep 3
  taskset -c 1 "$bin" bench rtp --ng "127.0.0.1:$ng" --calls "$calls" --pps "$1" --seconds "$secs" \
    --server-pid "$tpid" --json > "$out/rtp-$2.json" 2> "$work/rtp.log" || true
  wait "$ka" || true
  # tether's own view of the keepalives it sent during the run.
  curl -s "http://127.0.0.1:$api/metrics" > "$out/metrics-$2.txt" || true
  kill "$tpid" "$hog" 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
}

run "$low" sustainable
run "$high" overload

python3 - "$out" "$low" "$high" "$secs" <<'PY' | tee "$out/summary.md"
import json, sys
out, low, high, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
print(f"\n### RTP relay overload: 1000 calls × 2 streams × 2 directions, {secs} s, tether on half of CPU 0\n")
def metric(label, name):
    try:
        for line in open(f"{out}/metrics-{label}.txt"):
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
    except OSError:
        pass
    return None
print("| run | pps/stream dir | offered pps | forwarded pps | loss | per-flow delivery min / median / max | silent flows | relay cores | registered | prompts sent | answered | missed | paths declared dead |")
print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for label, pps in (("sustainable", low), ("overload", high)):
    try:
        r = json.load(open(f"{out}/rtp-{label}.json"))
        k = json.load(open(f"{out}/signalling-{label}.json"))
    except Exception as e:
        print(f"| {label} | {pps} | run failed: {e} |")
        continue
    s = r["spread"]
    cpu = r.get("server_cpu_us_per_packet") or float("nan")
    cores = cpu * r["forwarded_pps"] / 1e6
    print(f"| {label} | {pps} | {r['offered_pps']:,.0f} | {r['forwarded_pps']:,.0f} | {1 - r['delivery']:.4f} "
          f"| {s['min']:.3f} / {s['median']:.3f} / {s['max']:.3f} | {s['silent']} | {cores:.2f} "
          f"| {k['registered']} | {metric(label, 'tether_keepalive_prompts_total')} | {metric(label, 'tether_keepalive_answered_total')} "
          f"| {metric(label, 'tether_keepalive_missed_total')} | {metric(label, 'tether_keepalive_paths_declared_dead_total')} |")
PY
