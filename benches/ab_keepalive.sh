#!/usr/bin/env bash
# CPU per keepalive round trip of several tether builds side by side in one
# run (the machine is shared and noisy, so compare builds only within one
# run): in turn, round after round, each build starts fresh with one worker
# pinned to CPU 0 and a 20 s keepalive interval; the load generator (the
# first build's, pinned to CPU 1) registers N endpoints, each on its own NAT
# path, then holds HOLD seconds answering every OPTIONS prompt with 200. The
# figure is the server's CPU time in the hold per request it sent
# (`server_cpu_us_per_request`: the prompt, its answer, the timers), and the
# growth of its RSS from start to the end of the hold per endpoint (the
# whole node holding N registrations, each with its NAT path kept alive).
# With ECHO=1, each round also runs the floor the issue divides by: the C
# echo (benches/baseline/udp_echo.c, `sip` mode) under the generator's
# REGISTER load of N new AORs, its CPU per request/answer pair.
# A BIN may carry `[keepalive]` settings after `@`, comma-separated, to
# compare settings of one build: target/release/tether@batch_ms=20.
#   benches/ab_keepalive.sh ENDPOINTS ROUNDS HOLD BIN[@KEY=VALUE,...]...
# e.g. benches/ab_keepalive.sh 1000000 3 45 /tmp/old/tether target/release/tether
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1 rounds=$2 hold=$3; shift 3
bins=("$@")
gen=${bins[0]%%@*}
work=$(mktemp -d)
tpid=""
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
printf '%-40s %-5s %10s %10s %10s %8s %14s %10s %8s\n' build round endpoints prompted answered dead cpu_us/prompt rss_MiB B/endpt
[ "${ECHO:-0}" = 1 ] && gcc -O2 -o "$work/udp_echo" benches/baseline/udp_echo.c
for r in $(seq "$rounds"); do
  if [ "${ECHO:-0}" = 1 ]; then
    port=$((20000 + RANDOM % 20000))
    taskset -c 0 "$work/udp_echo" sip "$port" & tpid=$!; sleep 1
    taskset -c 1 "$gen" bench register -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 \
      --duration 300 --server-pid "$tpid" --json > "$work/echo.json"
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%-40s %-5s %10s %10s %10s %8s %14.2f" % ("c_sip echo (cpu_us per pair)", sys.argv[2], sys.argv[3], "-", "-", "-", j["server_cpu_us_per_register"] or 0))' "$work/echo.json" "$r" "$n"
  fi
  for arg in "${bins[@]}"; do
    bin=${arg%%@*} extra=""
    [ "$bin" != "$arg" ] && extra=${arg#*@}
    port=$((20000 + RANDOM % 20000))
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[api]\nlisten = ""\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n[keepalive]\ninterval_ms = 20000\n%s\n' \
      "$port" "$n" "${extra//,/$'\n'}" > "$work/tether.toml"
    taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
    tpid=$!; sleep 1
    rss0=$(rss_kib "$tpid")
    taskset -c 1 "$gen" bench keepalive -t "127.0.0.1:$port" -n "$n" -r 0 --window 2000 \
      --hold "$hold" --duration $((hold + 120)) --server-pid "$tpid" --json > "$work/lg.json"
    rss1=$(rss_kib "$tpid")
    kill "$tpid"; wait "$tpid" 2>/dev/null || true; tpid=""
    python3 - "$work/lg.json" "$arg" "$r" "$n" "$rss0" "$rss1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
rss0, rss1, n = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[4])
print("%-40s %-5s %10s %10d %10d %8s %14.2f %10.1f %8.1f" % (sys.argv[2][-40:], sys.argv[3], n,
      j.get("endpoints_prompted", 0), j.get("requests_answered", 0), j.get("paths_dead", "-"),
      j.get("server_cpu_us_per_request") or 0, rss1 / 1024, (rss1 - rss0) * 1024 / n))
PY
  done
done
