#!/usr/bin/env bash
# What `auth.mode = "http"` adds to a new registration's latency, beside
# the callback's own time. In turn, round after round: tether with one
# worker (pinned to CPU 0) in mode "none", then in mode "http" asking
# `examples/auth_responder` (a tiny_http service answering 200 at once and
# timing its own handling, pinned to CPU 1); each time the load generator
# (pinned to CPU 1) registers ENDPOINTS new AORs at RATE/s, below
# saturation so that the latency is the path's, not a queue's. Every run is
# bounded (--duration, the responder's --seconds).
#   [TETHER_CPUS=0] benches/regauth_latency.sh TETHER RESPONDER [ENDPOINTS] [RATE] [ROUNDS] [OUT]
# e.g. benches/regauth_latency.sh target/release/tether \
#        target/release/examples/auth_responder 5000 500 3 benches/results/regauth
# Needs the HTTP side threads (branch hooks): without them every callout
# times out and mode "http" answers 503.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 resp=$2 n=${3:-5000} rate=${4:-500} rounds=${5:-3} out=${6:-benches/results/regauth}
mkdir -p "$out"
work=$(mktemp -d)
tpid="" rpid=""
cleanup() {
  [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true
  [ -n "$rpid" ] && kill "$rpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The address after PREFIX in the first line of FILE that has it (waits up to 10 s).
wait_line() {
  for _ in $(seq 100); do
    a=$(sed -n "s/^$2//p" "$1" | head -1)
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.1
  done
  echo "no '$2' line in $1" >&2; exit 1
}
for r in $(seq "$rounds"); do
  for mode in none http; do
    auth='[auth]\nmode = "none"\n'
    if [ "$mode" = http ]; then
      taskset -c 1 "$resp" --requests "$n" --seconds 120 > "$work/resp.out" &
      rpid=$!
      raddr=$(wait_line "$work/resp.out" 'listening http ')
      auth="[auth]\nmode = \"http\"\n[auth.http]\nurl = \"http://$raddr/authorize\"\n"
    fi
    # Port 0 and the address tether prints: no collision with anything else here.
    printf '[sip]\nlisten = ["127.0.0.1:0"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[api]\nlisten = ""\n%b' \
      "$auth" > "$work/tether.toml"
    taskset -c "${TETHER_CPUS:-0}" "$bin" run --config "$work/tether.toml" > "$work/tether.out" 2> "$work/tether.log" &
    tpid=$!
    taddr=$(wait_line "$work/tether.out" 'listening udp ')
    sleep 0.5
    taskset -c 1 "$bin" bench register -t "$taddr" -n "$n" -r "$rate" --window 1000 \
      --duration 120 --server-pid "$tpid" --json > "$out/$mode-$r.json"
    # Keep tether's log of a round that failed anything, for a look.
    grep -q '"failed": *0[,}]' "$out/$mode-$r.json" || cp "$work/tether.log" "$out/$mode-$r.tether.log"
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    if [ "$mode" = http ]; then
      # It ends by itself after ENDPOINTS requests (or its --seconds).
      wait "$rpid" || true; rpid=""
      grep '^{' "$work/resp.out" > "$out/responder-$r.json"
    fi
  done
done
python3 - "$out" "$rounds" <<'PY' | tee "$out/summary.txt"
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
med = statistics.median
def load(name):
    return [json.load(open(f"{out}/{name}-{r}.json")) for r in range(1, rounds + 1)]
none, http, resp = load("none"), load("http"), load("responder")
print("%-26s %8s %8s %8s %8s %8s" % ("", "p50", "p90", "p99", "p99.9", "failed"))
for name, runs in (("mode none (us)", none), ("mode http (us)", http)):
    for i, j in enumerate(runs, 1):
        l = j["latency_us"]
        print("%-26s %8d %8d %8d %8d %8d" % (f"{name} round {i}", l["p50"], l["p90"], l["p99"], l["p999"], j["failed"]))
for i, j in enumerate(resp, 1):
    h = j["handling_us"]
    print("%-26s %8.1f %8.1f %8.1f %8.1f %8d" % (f"responder handling round {i}", h["p50"], h["p90"], h["p99"], h["p999"], j["requests"]))
q = lambda runs, k: med(j["latency_us"][k] for j in runs)
rq = lambda k: med(j["handling_us"][k] for j in resp)
print()
# Rounds run side by side, so the noise of a shared machine is compared
# within a round: the added latency is the median of the rounds' http - none.
for k in ("p50", "p90", "p99"):
    added = med(h["latency_us"][k] - n["latency_us"][k] for n, h in zip(none, http))
    print(f"{k}: median none {q(none, k)} us, http {q(http, k)} us; added (median of the "
          f"rounds' differences) {added} us, the responder's own handling {rq(k):.1f} us")
PY
