#!/usr/bin/env bash
# RTP relaying side by side, in one run, under the same load from
# `tether bench rtp`: rtpengine (Debian rtpengine-daemon, userspace only:
# table = -1, one thread), tether (`tether run`, one worker, its RTP relay
# driven over ng) and the C floor (benches/relay_floor.c: epoll,
# recvmmsg/sendmmsg, one port pair per stream, latching; no protocol work).
# Optional relay `tether_nowait` (RELAYS="rtpengine tether tether_nowait floor"):
# tether with `media.batch_wait_us = WAIT_US` (default 0, where `tether` runs
# on its default of 200 µs).
# Optional relay `uring` (RELAYS="floor uring"): the same floor over
# io_uring (examples/relay_floor_uring.rs: multishot recvmsg with a provided
# buffer ring, sends as SQEs across sockets, one io_uring_enter per round);
# URING_BIN=path skips its build, URING_MODE is passed on (defer|coop|plain).
# Each relay is pinned to CPU 0 and started anew for every run; the
# generator is pinned to CPU 1. A run: CALLS calls set up over ng (the
# floor: fixed ports instead), each an audio and a video stream, RTP both
# ways on every stream at RATE packets/s per stream direction for SECONDS
# s, paced, then the calls deleted. Per run and as medians over ROUNDS
# rounds (the relays' order rotating each round): packets/s offered and
# forwarded, loss, flows that got nothing, one-way latency p50/p99, the
# relay's CPU per forwarded packet over the send window (all its threads,
# /proc/PID/schedstat), and the ratios: tether ÷ rtpengine packets per
# CPU-second, and each relay's CPU per packet ÷ the floor's.
#   benches/compare-rtpengine.sh [ROUNDS] [RATES] [SECONDS] [CALLS]   (default: 3 "20 40 60" 10 1000)
#   RELAYS="rtpengine floor" OUT=benches/results/compare-rtpengine benches/compare-rtpengine.sh 1 20 5 100
# BIN=path/to/tether skips the release build. Results: OUT/runs/*.json (the
# generator's reports), OUT/summary.md (the table printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
read -r -a rates <<< "${2:-20 40 60}"
secs=${3:-10}
calls=${4:-1000}
read -r -a relays <<< "${RELAYS:-rtpengine tether floor}"
out=${OUT:-benches/results/compare-rtpengine}
command -v rtpengine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rtpengine-daemon; }
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
cc -O2 -o "$work/relay_floor" benches/relay_floor.c
uring_bin=${URING_BIN:-}
if [[ " ${relays[*]} " == *" uring "* && -z "$uring_bin" ]]; then
  cargo build --release -q --example relay_floor_uring
  uring_bin=${CARGO_TARGET_DIR:-target}/release/examples/relay_floor_uring
fi
mkdir -p "$out/runs"
rm -f "$out"/runs/*.json "$out"/runs/*.log

# Media ports: each relay gets the range 30000-49999 (one runs at a time).
# The generator's own sockets take ephemeral ports (32768-60999 by default),
# so a relay's bind can collide with one still held: each relay is started
# before the generator binds.
# Running, not a zombie: relays are started inside $(...), so this shell is
# not their parent and nobody may reap one that exited at once.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"; }
start_rtpengine() { # ng port -> pid
  printf '[rtpengine]\ntable = -1\ninterface = 127.0.0.1\nlisten-ng = 127.0.0.1:%s\nforeground = true\nport-min = 30000\nport-max = 49999\nlog-level = 4\nlog-stderr = true\n' \
    "$1" > "$work/rtpengine.conf"
  taskset -c 0 rtpengine --config-file="$work/rtpengine.conf" --num-threads=1 > "$work/rtpengine.log" 2>&1 &
  echo $!
}
start_tether() { # ng port -> pid
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[api]\nlisten = ""\n[media]\nng_listen = "127.0.0.1:%s"\nports = "30000-49999"\n' \
    "$(( $1 + 1 ))" "$1" > "$work/tether.toml"
  taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
  echo $!
}
start_tether_nowait() { # ng port -> pid; tether with media.batch_wait_us = WAIT_US (default 0: no gathering)
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[api]\nlisten = ""\n[media]\nng_listen = "127.0.0.1:%s"\nports = "30000-49999"\nbatch_wait_us = %s\n' \
    "$(( $1 + 1 ))" "$1" "${WAIT_US:-0}" > "$work/tether_nowait.toml"
  taskset -c 0 "$bin" run --config "$work/tether_nowait.toml" > /dev/null 2> "$work/tether_nowait.log" &
  echo $!
}
start_floor() { # base port -> pid; one pair per stream, bounded well past the run
  taskset -c 0 "$work/relay_floor" $(( calls * 2 )) "$1" $(( secs + 60 )) > "$work/floor.log" 2>&1 &
  echo $!
}

start_uring() { # base port -> pid; the same as the floor, over io_uring
  taskset -c 0 "$uring_bin" $(( calls * 2 )) "$1" $(( secs + 60 )) > "$work/uring.log" 2>&1 &
  echo $!
}

printf '%-9s %5s %5s %6s %9s %9s %9s %7s %9s %9s %12s %9s\n' \
  relay pps round calls offered forwarded loss silent p50_us p99_us cpu_us/pkt gen_cores
for round in $(seq "$rounds"); do
  # Rotate the order, so no relay always runs on a warmer machine.
  n=${#relays[@]}
  order=()
  for i in $(seq 0 $(( n - 1 ))); do order+=("${relays[$(( (i + round - 1) % n ))]}"); done
  for rate in "${rates[@]}"; do
    for relay in "${order[@]}"; do
      port=$(( 20000 + RANDOM % 9000 ))
      if [ "$relay" = floor ] || [ "$relay" = uring ]; then port=30000; fi
      pid=$("start_$relay" "$port")
      pids+=("$pid")
      sleep 1.5
      if ! alive "$pid"; then
        echo "$relay did not start: $(tail -3 "$work/$relay.log" | tr '\n' ' ')"
        continue
      fi
      target=(--ng "127.0.0.1:$port")
      [ "$relay" = floor ] || [ "$relay" = uring ] && target=(--fixed "127.0.0.1:$port" --pairs $(( calls * 2 )))
      json="$out/runs/$relay-$rate-$round.json"
      taskset -c 1 "$bin" bench rtp "${target[@]}" --calls "$calls" --pps "$rate" --seconds "$secs" \
        --server-pid "$pid" --json > "$json" 2> "$work/bench.log" || { echo "$relay: generator failed: $(tail -2 "$work/bench.log")"; rm -f "$json"; }
      # Gone before the next relay binds its ports (not a child of this
      # shell: started inside $(...), so no `wait`).
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      # The relay's own last words (the floors print their counters on exit).
      cp "$work/$relay.log" "$out/runs/$relay-$rate-$round.log" 2>/dev/null || true
      [ -s "$json" ] || continue
      python3 - "$json" "$relay" "$rate" "$round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["calls_set_up"] == 0:
    print(f"{sys.argv[2]:<9} {sys.argv[3]:>5} {sys.argv[4]:>5}: no call set up ({r.get('ng_first_error')})")
    sys.exit()
cpu = r.get("server_cpu_us_per_packet") or float("nan")
print(f"{sys.argv[2]:<9} {sys.argv[3]:>5} {sys.argv[4]:>5} {r['calls_set_up']:>6} {r['offered_pps']:>9.0f} {r['forwarded_pps']:>9.0f} "
      f"{1 - r['delivery']:>9.5f} {r['spread']['silent']:>7} {r['latency_ns']['p50']/1e3:>9.1f} "
      f"{r['latency_ns']['p99']/1e3:>9.1f} {cpu:>12.3f} {r.get('generator_busy') or float('nan'):>9.2f}")
PY
    done
  done
done

python3 - "$out" "$rounds" "$secs" "$calls" "${relays[*]}" "${rates[*]}" <<'PY' | tee "$out/summary.md"
import glob, json, math, os, statistics, sys
out, rounds, secs, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
relays, rates = sys.argv[5].split(), sys.argv[6].split()
def runs(relay, rate):
    # A run where no call was set up (the relay did not answer ng) says nothing.
    rs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/runs/{relay}-{rate}-*.json"))]
    return [r for r in rs if r["calls_set_up"] > 0]
def med(rs, f):
    v = [x for x in (f(r) for r in rs) if x is not None and not math.isnan(x)]
    return statistics.median(v) if v else float("nan")
cpu = lambda r: r.get("server_cpu_us_per_packet")
print(f"\n### RTP relaying: {calls} calls × 2 streams × 2 directions, {secs} s per run, medians of {rounds} rounds\n")
print("relay on one core (CPU 0), generator on CPU 1; CPU per forwarded packet from /proc/PID/schedstat over the send window.")
print("Latency is send stamp to the generator's read: with the generator near 1 core, it includes the generator's own backlog.\n")
print("| pps/stream dir | relay | calls set up | offered pps | forwarded pps | loss | silent flows | p50 µs | p99 µs | CPU µs/pkt | pkts per CPU-s | ÷ floor CPU/pkt | generator cores |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios = []
for rate in rates:
    per = {}
    for relay in relays:
        rs = runs(relay, rate)
        if rs:
            per[relay] = rs
    floor = med(per["floor"], cpu) if "floor" in per else float("nan")
    for relay, rs in per.items():
        c = med(rs, cpu)
        print(f"| {rate} | {relay} | {med(rs, lambda r: r['calls_set_up']):.0f} | {med(rs, lambda r: r['offered_pps']):,.0f} | {med(rs, lambda r: r['forwarded_pps']):,.0f} "
              f"| {med(rs, lambda r: 1 - r['delivery']):.5f} | {med(rs, lambda r: r['spread']['silent']):.0f} "
              f"| {med(rs, lambda r: r['latency_ns']['p50'] / 1e3):.1f} | {med(rs, lambda r: r['latency_ns']['p99'] / 1e3):.1f} "
              f"| {c:.3f} | {1e6 / c if c and c > 0 else float('nan'):,.0f} | {c / floor if floor > 0 else float('nan'):.2f} | {med(rs, lambda r: r.get('generator_busy')):.2f} |")
    missing = [r for r in relays if r not in per]
    if missing:
        print(f"| {rate} | {', '.join(missing)} | no run with calls set up | | | | | | | | | | |")
    for name in ("tether", "tether_nowait"):
        if name in per and "rtpengine" in per:
            t, e = med(per[name], cpu), med(per["rtpengine"], cpu)
            ratios.append(f"- {rate} pps/stream dir: {name} ÷ rtpengine packets per CPU-second = {e / t:.2f}; "
                          f"{name} CPU/pkt ÷ floor = {t / floor:.2f}")
if ratios:
    print("\n" + "\n".join(ratios))
corrupted = sum(json.load(open(f))["corrupted"] for f in glob.glob(f"{out}/runs/*.json"))
print(f"\ncorrupted payloads over all runs: {corrupted}")
PY
