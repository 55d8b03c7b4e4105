#!/usr/bin/env bash
# Floods (issue 17): a flood from many sources while legitimate endpoints
# refresh. tether (one worker, CPU 0) with [limits] on loopback too; the
# generator on CPU 1 registers N endpoints (16 per address), then for HOLD s
# they refresh at 80% of EXPIRES while FLOOD requests/s (REGISTER, INVITE,
# OPTIONS in turn) come from SOURCES other addresses. Writes tether.toml,
# tether.log, bench.json (the generator's summary, its flood report inside)
# and metrics.txt (tether's limit counters after the run) to OUT.
# Usage: benches/floods.sh      (env: N FLOOD SOURCES KINDS HOLD EXPIRES BIN OUT NICE WORKERS PIN)
# NICE=-10 raises both processes' priority on a machine shared with other jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/tether}
N=${N:-100000}
FLOOD=${FLOOD:-200000}
SOURCES=${SOURCES:-1000}
HOLD=${HOLD:-60}
EXPIRES=${EXPIRES:-30}
PORT=${PORT:-5092}
API=${API:-18092}
NICE=${NICE:-0}
OUT=${OUT:-benches/results/floods/$(date -u +%Y%m%d-%H%M)}
mkdir -p "$OUT"
cat > "$OUT/tether.toml" <<TOML
[sip]
listen = ["127.0.0.1:$PORT"]
[runtime]
workers = ${WORKERS:-1}
stats_interval_s = 10
[registrar]
min_expires = 20
capacity = 262144
[api]
listen = "127.0.0.1:$API"
[limits]
# Loopback is exempt by default; the generator's sources are all on it.
exempt = []
TOML
# WORKERS=2 PIN=0: both unpinned, tether with a worker per CPU.
CPU0="taskset -c 0"; CPU1="taskset -c 1"
[ "${PIN:-1}" = 1 ] || { CPU0=""; CPU1=""; }
nice -n "$NICE" $CPU0 "$BIN" run --config "$OUT/tether.toml" 2> "$OUT/tether.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break
  sleep 0.1
done
# Datagrams the kernel dropped at a full socket buffer (tether's or the generator's).
rcvbuf_errors() { awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }
before=$(rcvbuf_errors)
nice -n "$NICE" $CPU1 "$BIN" bench keepalive -t "127.0.0.1:$PORT" -n "$N" -r 20000 \
  --expires "$EXPIRES" --refresh --hold "$HOLD" --duration $((HOLD + 120)) \
  --flood-rate "$FLOOD" --flood-sources "$SOURCES" --flood-seconds "$HOLD" \
  --flood-kinds "${KINDS:-register,invite,options}" \
  --server-pid "$PID" --json > "$OUT/bench.json"
echo "udp_rcvbuf_errors $(( $(rcvbuf_errors) - before ))" > "$OUT/kernel.txt"
sleep 2 # one more publication of the cores' counters
curl -s "http://127.0.0.1:$API/metrics" |
  grep -E '^tether_(limit|block|auth_failures|registrations_total|refreshes_total|datagrams_received)' \
    > "$OUT/metrics.txt"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
s = json.load(open(f"{out}/bench.json"))
f = s["flood"]
m = dict(l.split() for l in open(f"{out}/metrics.txt"))
print(f"legit: registered {s['registered']}, refreshed {s['refreshed']}, failed {s['failed']}, "
      f"timeouts {s['timeouts']}, codes {s['codes']}, retransmissions {s['retransmissions']}")
print(f"flood: sent {f['sent']} in {f['elapsed_s']:.1f} s = {f['achieved_rate']:.0f}/s "
      f"(asked {f['rate_asked']}), answers {f['answers']}, sources answered 503: "
      f"{f['sources_limited']} of {f['sources']}")
print(f"CPU during the flood: tether {f['server_cpu_cores']:.2f} cores, generator {f['generator_cpu_cores']:.2f} cores")
print("tether:", {k: v for k, v in m.items()})
print(open(f"{out}/kernel.txt").read().strip())
PY
