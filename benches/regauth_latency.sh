#!/usr/bin/env bash
# What `auth.mode = "http"` adds to a new registration's latency, beside
# the callback's own time. In turn, round after round: tether with one
# worker (pinned to CPU 0) in mode "none", then in mode "http" asking
# `examples/auth_responder` (a tiny_http service answering 200 at once and
# timing its own handling, pinned to CPU 1); each time the load generator
# (pinned to CPU 1) registers ENDPOINTS new AORs at RATE/s, below
# saturation so that the latency is the path's, not a queue's. Every run is
# bounded (--duration, the responder's --seconds).
#   benches/regauth_latency.sh TETHER RESPONDER [ENDPOINTS] [RATE] [ROUNDS] [OUT]
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
for r in $(seq "$rounds"); do
  for mode in none http; do
    port=$((20000 + RANDOM % 20000))
    auth='[auth]\nmode = "none"\n'
    if [ "$mode" = http ]; then
      taskset -c 1 "$resp" --requests "$n" --seconds 120 > "$work/resp.out" &
      rpid=$!
      for _ in $(seq 50); do grep -q '^listening' "$work/resp.out" && break; sleep 0.1; done
      raddr=$(sed -n 's/^listening http //p' "$work/resp.out")
      auth="[auth]\nmode = \"http\"\n[auth.http]\nurl = \"http://$raddr/authorize\"\n"
    fi
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[api]\nlisten = ""\n%b' \
      "$port" "$auth" > "$work/tether.toml"
    taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
    tpid=$!; sleep 1
    taskset -c 1 "$bin" bench register -t "127.0.0.1:$port" -n "$n" -r "$rate" --window 1000 \
      --duration 120 --server-pid "$tpid" --json > "$out/$mode-$r.json"
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    if [ "$mode" = http ]; then
      # It ends by itself after ENDPOINTS requests (or its --seconds).
      wait "$rpid" || true; rpid=""
      grep '^{' "$work/resp.out" > "$out/responder-$r.json"
    fi
  done
done
python3 - "$out" "$rounds" <<'PY'
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
for k in ("p50", "p90", "p99"):
    added = q(http, k) - q(none, k)
    print(f"median {k}: none {q(none, k)} us, http {q(http, k)} us, added {added} us, "
          f"of which the responder's own handling {rq(k):.1f} us -> tether's part {added - rq(k):.0f} us")
PY
