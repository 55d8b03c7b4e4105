#!/usr/bin/env bash
# Calls through tether and through Kamailio side by side, in one run, under
# the same load from `tether bench call`: CALLEES callees and CALLERS callers
# (every endpoint on its own 127.0.0.0/8 address and port) register, then
# the callers place RATE calls/s for SECONDS s to the callees' AORs in turn
# (INVITE with SDP, 180, 200 with the Record-Route copied, ACK, a hold of
# HOLD_MS, BYE along the route set, 200). Each server is pinned to CPU 0
# with 2 processes (Kamailio 5.6: benches/kamailio-calls.cfg, registrar +
# usrloc in memory + tm stateful proxy with record_route(), 2 UDP children,
# tlsf allocator, 2 GiB of shared memory: tm keeps finished transactions a
# few seconds, and 512 MiB ran out at 4,000 calls/s; tether: 1 worker (a thread per core), the
# domain served, keepalive prompts off as Kamailio sends none), the
# generator to CPU 1. ROUNDS rounds, the
# order of the two servers alternating; each round starts each server anew.
# Per run and as medians per server: calls answered and failed, calls/s,
# setup latency (INVITE to 200) p50/p99, BYE round trip p50, server CPU per
# call over the call phase (all its processes and threads).
#   benches/compare-kamailio-calls.sh [ROUNDS] [RATE] [SECONDS]   (default: 3 2000 10)
#   SERVERS=kamailio CALLEES=1000 CALLERS=200 HOLD_MS=1000 PLOT_DIR=benches/results benches/compare-kamailio-calls.sh
# CANCEL_SHARE and BUSY_SHARE (percent) mix in cancelled and refused calls.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rate=${2:-2000}
secs=${3:-10}
callees=${CALLEES:-1000}
callers=${CALLERS:-200}
hold=${HOLD_MS:-1000}
read -r -a servers <<< "${SERVERS:-kamailio tether}"
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/tether
. benches/lib.sh
need_kamailio
modules=$kamailio_modules

start_kamailio() { # port -> pid
  taskset -c 0 kamailio -f benches/kamailio-calls.cfg -L "$modules" -l "udp:127.0.0.1:$1" \
    -DD -E -x tlsf -X tlsf -m 2048 -M 64 -w "$work" > "$work/kamailio.log" 2>&1 &
  echo $!
}
start_tether() { # port -> pid
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ndomains = ["127.0.0.1"]\n[keepalive]\ninterval_ms = 0\n[api]\nlisten = ""\n' \
    "$1" > "$work/tether.toml"
  taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
  echo $!
}

printf '%-9s %5s %7s %8s %9s %5s %7s %8s %9s %9s %9s %12s\n' \
  server round placed answered cancelled busy failed calls/s setup_p50 setup_p99 bye_p50 cpu_us/call
net=60
for round in $(seq "$rounds"); do
  order=("${servers[@]}")
  # Alternate which server goes first, so neither always runs on a warmer machine.
  if [ $((round % 2)) -eq 0 ] && [ ${#servers[@]} -eq 2 ]; then order=("${servers[1]}" "${servers[0]}"); fi
  for server in "${order[@]}"; do
    port=$((20000 + RANDOM % 20000)); net=$((net + 1))
    pid=$("start_$server" "$port")
    pids+=("$pid")
    sleep 1.5
    kill -0 "$pid" 2>/dev/null || { echo "$server did not start"; tail -5 "$work/$server.log"; exit 1; }
    plot=()
    [ -n "${PLOT_DIR:-}" ] && mkdir -p "$PLOT_DIR" && plot=(--plot "$PLOT_DIR/calls-$server-$round.svg")
    taskset -c 1 "$bin" bench call -t "127.0.0.1:$port" -n "$callees" --callers "$callers" -r "$rate" \
      --duration "$secs" --hold "$hold" --cancel-share "${CANCEL_SHARE:-0}" --busy-share "${BUSY_SHARE:-0}" \
      --source-base "127.$net.0.1" --server-pid "$pid" --json "${plot[@]}" > "$work/$server-$round.json" || true
    python3 - "$work/$server-$round.json" "$server" "$round" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["calls"]
cpu = c.get("server_cpu_us_per_call") or float("nan")
print(f"{sys.argv[2]:<9} {sys.argv[3]:>5} {c['attempted']:>7} {c['answered']:>8} {c['cancelled']:>9} {c['busy']:>5} {c['failed']:>7} {c['calls_per_s']:>8.0f} "
      f"{c['setup_latency_us']['p50']/1000:>7.2f}ms {c['setup_latency_us']['p99']/1000:>7.2f}ms "
      f"{c['bye_rtt_us']['p50']/1000:>7.2f}ms {cpu:>12.1f}")
PY
    kill "$pid" 2>/dev/null || true; sleep 1
  done
done

echo "medians over $rounds rounds ($rate calls/s asked for ${secs} s, hold ${hold} ms, $callers callers, $callees callees):"
python3 - "$work" "${servers[@]}" <<'PY'
import glob, json, statistics, sys
work, servers = sys.argv[1], sys.argv[2:]
print(f"{'server':<9} {'answered':>9} {'failed':>7} {'calls/s':>8} {'setup_p50':>10} {'setup_p99':>10} {'cpu_us/call':>12}")
for s in servers:
    runs = [json.load(open(f))["calls"] for f in sorted(glob.glob(f"{work}/{s}-*.json"))]
    if not runs:
        continue
    med = lambda f: statistics.median(f(r) for r in runs)
    cpu = med(lambda r: r.get("server_cpu_us_per_call") or float("nan"))
    print(f"{s:<9} {med(lambda r: r['answered']):>9.0f} {med(lambda r: r['failed']):>7.0f} {med(lambda r: r['calls_per_s']):>8.0f} "
          f"{med(lambda r: r['setup_latency_us']['p50'])/1000:>8.2f}ms {med(lambda r: r['setup_latency_us']['p99'])/1000:>8.2f}ms {cpu:>12.1f}")
PY
