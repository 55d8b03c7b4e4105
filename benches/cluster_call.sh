#!/usr/bin/env bash
# Call setup across nodes against on one node (issue 18), side by side in
# one run. A 3-master Redis Cluster on loopback ports, three tether nodes
# (1 worker each, cluster on, media relay off), one SIPp callee registered
# at node B. Each round runs three SIPp callers at once, each at RATE
# calls/s: "same" calls the callee through B (its own node),
# "cross" through node A, which looks the owner up (cached per core for
# lookup_cache_ms, 2 s) and forwards the INVITE to B, "cold" through node
# C, which keeps no owner cache (every call waits for a Redis lookup).
# Setup latency: from the INVITE sent to its 200 received, from SIPp's
# message trace (each message stamped to the microsecond). Per round and
# as medians over rounds: calls, failed, calls whose INVITE SIPp sent
# again (a lost datagram, 500 ms more), p50, p90 and p99 (ms); and each
# path minus "same" of the same round, as the median over rounds.
#   benches/cluster_call.sh [ROUNDS] [RATE] [CALLS]   (default: 5 200 2000)
# Loopback only; every process is started here and killed by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
rate=${2:-200}
calls=${3:-2000}
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server redis-tools"; exit 1; }
# TETHER_BIN: a tether binary already built (else the release build).
bin=${TETHER_BIN:-}
if [ -z "$bin" ]; then cargo build --release -q; bin=${CARGO_TARGET_DIR:-target}/release/tether; fi
. benches/lib.sh
base=$((20000 + RANDOM % 10000))

# Redis Cluster: 3 masters on base..base+2 (bus ports +10000).
seeds=()
for i in 0 1 2; do
  p=$((base + i)); mkdir -p "$work/r$i"
  redis-server --port "$p" --cluster-port $((p + 10000)) --bind 127.0.0.1 --protected-mode no \
    --cluster-enabled yes --cluster-config-file nodes.conf --save "" --appendonly no \
    --daemonize no --loglevel warning --dir "$work/r$i" > "$work/r$i/log" 2>&1 &
  pids+=($!); seeds+=("\"redis://127.0.0.1:$p\"")
done
sleep 0.5
redis-cli --cluster create 127.0.0.1:$base 127.0.0.1:$((base + 1)) 127.0.0.1:$((base + 2)) \
  --cluster-replicas 0 --cluster-yes > "$work/create.log" 2>&1
for _ in $(seq 50); do
  redis-cli -p "$base" cluster info | grep -q cluster_state:ok && break; sleep 0.2
done

start_node() { # id port cpu [more cluster keys] -> pid
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[api]\nlisten = ""\n[registrar]\ndomains = ["tether.test"]\n[keepalive]\ninterval_ms = 0\n[media]\nmode = "never"\n[push]\nnode = %s\n[cluster]\nenabled = true\nnode = %s\nredis = [%s]\nadvertise = "127.0.0.1:%s"\n%s\n' \
    "$2" "$1" "$1" "$(IFS=,; echo "${seeds[*]}")" "$2" "${4:-}" > "$work/node$1.toml"
  taskset -c "$3" "$bin" run --config "$work/node$1.toml" > /dev/null 2> "$work/node$1.log" &
  echo $!
}
a_port=$((base + 100)); b_port=$((base + 101)); uas_port=$((base + 102)); c_port=$((base + 103))
pids+=("$(start_node 1 $a_port 0)")
pids+=("$(start_node 2 $b_port 1)")
# C: as A, but without the owner cache: every call waits for a Redis lookup.
pids+=("$(start_node 3 $c_port 0 'lookup_cache_ms = 0')")
sleep 1.5

# The callee: registers carol@tether.test at B from its port, then answers.
sed -e 's/\[callee\]/carol/g; s/\[domain\]/tether.test/g' -e "s/\[contact_port\]/$uas_port/g" \
  tests/sipp/proxy/register.xml > "$work/register.xml"
sipp -sf "$work/register.xml" -m 1 -i 127.0.0.1 -p "$uas_port" -timeout 10s -timeout_error -nostdin \
  "127.0.0.1:$b_port" > /dev/null 2>&1
# Answers at once (no <pause/>: even 0 ms waits for SIPp's next scheduler tick).
sed -e 's/\[callee\]/carol/g' -e '/<pause\/>/d' tests/sipp/proxy/uas_answer.xml > "$work/uas.xml"
sipp -sf "$work/uas.xml" -i 127.0.0.1 -p "$uas_port" -nostdin > /dev/null 2>&1 &
pids+=($!)
sleep 2 # the nodes read each other's heartbeat (every heartbeat_ms)

# The caller, timed from the INVITE to the 200.
sed -e 's/\[callee\]/carol/g; s/\[domain\]/tether.test/g' \
  tests/sipp/proxy/uac_call.xml > "$work/uac.xml"

call() { # name port round local-port: one caller, in the background
  local dir="$work/$1-$3"; mkdir -p "$dir"
  (cd "$dir" && exec sipp -sf "$work/uac.xml" -m "$calls" -r "$rate" -l 1000 -i 127.0.0.1 -p "$4" \
    -timeout 120s -nostdin -trace_msg -message_file "$dir/msg.log" "127.0.0.1:$2" > /dev/null 2>&1) &
  callers+=($!)
}

report() { # name round
  local dir="$work/$1-$2"
  # SIPp stamps each message it logs to the microsecond: per Call-ID, the
  # first INVITE sent to the first 200 (INVITE) received.
  python3 - "$dir/msg.log" "$1" "$2" "$calls" <<'PY'
import re, sys
from datetime import datetime
sent, ok, invites = {}, {}, {}
ts = None
block = []
def flush():
    if ts is None or len(block) < 3:
        return
    head = block[0]
    start = next((l for l in block[1:] if l.strip()), "")
    cid = next((l.split(":", 1)[1].strip() for l in block if l.lower().startswith("call-id:")), None)
    cseq = next((l for l in block if l.lower().startswith("cseq:")), "")
    if cid is None or "INVITE" not in cseq:
        return
    if head.startswith("UDP message sent") and start.startswith("INVITE "):
        sent.setdefault(cid, ts)
        invites[cid] = invites.get(cid, 0) + 1
    elif head.startswith("UDP message received") and start.startswith("SIP/2.0 200"):
        ok.setdefault(cid, ts)
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\r\n")
    m = re.match(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
    if m:
        flush()
        ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        block = []
        continue
    block.append(line.strip())
flush()
rows = sorted((ok[c] - sent[c]) * 1000 for c in ok if c in sent)
def q(x): return rows[min(len(rows) - 1, int(x * len(rows)))] if rows else float("nan")
# Calls whose INVITE SIPp had to send again (a datagram lost: 500 ms more).
resent = sum(1 for n in invites.values() if n > 1)
print(f"{sys.argv[2]} {sys.argv[3]} {len(rows)} {int(sys.argv[4]) - len(rows)} {resent} {q(0.5):.3f} {q(0.9):.3f} {q(0.99):.3f}")
PY
}

printf '%-6s %5s %6s %6s %6s %9s %9s %9s\n' path round calls failed resent p50_ms p90_ms p99_ms
: > "$work/all"
for round in $(seq "$rounds"); do
  # The three callers at once: each path sees the same load and the same
  # noise of a shared machine.
  callers=()
  call same "$b_port" "$round" $((base + 200))
  call cross "$a_port" "$round" $((base + 201))
  call cold "$c_port" "$round" $((base + 202))
  pids+=("${callers[@]}")
  for p in "${callers[@]}"; do wait "$p" || true; done
  for path in same cross cold; do
    report "$path" "$round" | tee -a "$work/all" | awk '{printf "%-6s %5s %6s %6s %6s %9s %9s %9s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
  done
done
python3 - "$work/all" <<'PY'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    path, _, n, _, _, p50, p90, p99 = line.split()
    r.setdefault(path, []).append((int(n), float(p50), float(p99), float(p90)))
med = {k: (statistics.median(x[1] for x in v), statistics.median(x[2] for x in v), statistics.median(x[3] for x in v)) for k, v in r.items()}
for k, (p50, p99, p90) in med.items():
    print(f"median {k:<6} p50 {p50:.3f} ms  p90 {p90:.3f} ms  p99 {p99:.3f} ms")
# Each round's difference to "same" in that round (the paths ran side by
# side, so a noisy round is noisy for all three), then the median.
for k in ("cross", "cold"):
    if "same" in r and k in r:
        d = [(x[1] - y[1], x[3] - y[3], x[2] - y[2]) for x, y in zip(r[k], r["same"])]
        p50, p90, p99 = (statistics.median(v[i] for v in d) for i in range(3))
        print(f"{k} - same, per round, median: p50 {p50:+.3f} ms  p90 {p90:+.3f} ms  p99 {p99:+.3f} ms")
PY
