#!/usr/bin/env bash
# Keepalives side by side (issue 15): tether's tracked OPTIONS round trips
# against Kamailio's nathelper pinging the same contacts, in one run, under
# the same generator.
#
# Per server and round: `tether bench keepalive` registers N endpoints (each
# on its own 127/8 source and port, no NAT: the Contact is the source), then
# holds HOLD seconds answering every OPTIONS with 200. Both servers ping every
# contact every 20 s:
#   tether:   [keepalive] interval_ms = 20000, one worker. Each prompt is a
#             tracked transaction: its answer is matched, the path's liveness
#             updated, a silent path declared dead.
#   Kamailio: nathelper natping_interval = 20, SIP pings (sipping_bflag set at
#             REGISTER), 2 UDP children + 1 natping process, usrloc in memory.
#             Its pings are untracked: no keepalive_timeout, the 200s are
#             consumed by nathelper's reply hook and nothing else happens.
# The server is pinned to CPU 0, the generator to CPU 1. Reported: prompts the
# generator answered in the hold, server CPU per prompt (all processes and
# threads, from /proc), and the server's memory (PSS) with N endpoints.
# The issue's target: tether's CPU per tracked round trip <= Kamailio's per
# untracked ping.
#   benches/compare-keepalive-kamailio.sh [ENDPOINTS] [ROUNDS] [HOLD_S]
#   (default 1000000 2 45)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
rounds=${2:-2}
hold=${3:-45}
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/tether
. benches/lib.sh
need_kamailio
modules=$kamailio_modules
shm=$(( (n / 1000000 + 1) * 1500 ))


start_kamailio() { # port -> pid
  cat > "$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
children=2
listen=udp:127.0.0.1:$1
maxbuffer=8388608
mpath="$modules/"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "pv.so"
loadmodule "kex.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "nathelper.so"
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "hash_size", 20)
modparam("usrloc", "nat_bflag", 6)
modparam("registrar", "max_contacts", 10)
modparam("nathelper", "natping_interval", 20)
modparam("nathelper", "ping_nated_only", 1)
modparam("nathelper", "natping_processes", 1)
modparam("nathelper", "sipping_bflag", 7)
modparam("nathelper", "sipping_from", "sip:pinger@127.0.0.1")
request_route {
    if (method == "REGISTER") { setbflag(6); setbflag(7); save("location"); exit; }
    if (method == "OPTIONS") { sl_send_reply("200", "OK"); exit; }
    sl_send_reply("405", "Method Not Allowed");
}
CFG
  taskset -c 0 kamailio -f "$work/kamailio.cfg" -DD -E -x tlsf -X tlsf -m "$shm" -M 64 -w "$work" > "$work/kamailio.log" 2>&1 &
  echo $!
}
start_tether() { # port -> pid
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[api]\nlisten = ""\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n[keepalive]\ninterval_ms = 20000\n' "$1" "$n" > "$work/tether.toml"
  taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
  echo $!
}

printf '%-6s %-9s %10s %12s %12s %14s %12s\n' round server endpoints answered prompted cpu_us/prompt server_MiB
net=40
for r in $(seq 1 "$rounds"); do
  order=(kamailio tether); [ $((r % 2)) -eq 0 ] && order=(tether kamailio)
  for server in "${order[@]}"; do
    port=$((20000 + RANDOM % 20000)); net=$((net + 1))
    if [ "$server" = kamailio ]; then pid=$(start_kamailio "$port"); else pid=$(start_tether "$port"); fi
    pids+=("$pid")
    sleep 1.5
    kill -0 "$pid" 2>/dev/null || { echo "$server did not start"; tail -5 "$work/$server.log"; exit 1; }
    taskset -c 1 "$bin" bench keepalive -t "127.0.0.1:$port" -n "$n" -r 0 --window 2000 --hold "$hold" \
      --duration $((hold + 300)) --source-base "127.$net.0.1" --server-pid "$pid" --json > "$work/out.json" || true
    srv_kb=$(pss_tree_kb "$pid")
    python3 - "$work/out.json" "$r" "$server" "$n" "$srv_kb" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
r, server, n, srv = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
cpu = s.get("server_cpu_us_per_request") or float("nan")
print(f"{r:<6} {server:<9} {n:>10} {s['requests_answered']:>12} {s['endpoints_prompted']:>12} {cpu:>14.2f} {srv/1024:>12.0f}")
if s["registered"] < n:
    print(f"       ({server}: only {s['registered']} of {n} registered)")
PY
    kill "$pid" 2>/dev/null || true; sleep 1
  done
done
