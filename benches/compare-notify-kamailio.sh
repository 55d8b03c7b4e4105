#!/usr/bin/env bash
# Contact-me fan-out, tether beside Kamailio in one run (issue: fan-out).
# The same N simulated endpoints (`tether bench`, every endpoint on its own
# 127.0.0.0/8 address and port, answering 200) register with each server;
# then the application server asks for one NOTIFY per endpoint:
#   tether:   one POST /v1/notify {"targets": {"all": true}} (tether bench notify)
#   Kamailio: per device one ul.lookup and one tm.t_uac_start JSON-RPC call
#             over 4 keep-alive HTTP connections (benches/kamailio_fanout.py),
#             what a Kamailio user would script.
# Each server is pinned to CPU 0 (tether: 2 workers; Kamailio: 2 UDP and
# 2 TCP children, tlsf allocator), generator and API client to CPU 1.
# Reported per server: seconds from the request to the last 2xx, NOTIFYs
# delivered, server CPU per device (all its threads or processes).
#   benches/compare-notify-kamailio.sh [ENDPOINTS]     (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/tether
. benches/lib.sh
need_kamailio
modules=$kamailio_modules
hz=$(getconf CLK_TCK)
# CPU seconds of a process and its children (Kamailio forks its workers).
cpu_s() { for p in "$1" $(pgrep -P "$1" || true); do awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null; done | awk -v hz="$hz" '{s += $1} END {printf "%.2f", s / hz}'; }
rpc() { # port method [params-json] -> result json
  python3 -c 'import http.client,json,sys; c=http.client.HTTPConnection("127.0.0.1",int(sys.argv[1]),timeout=60); c.request("POST","/RPC",json.dumps({"jsonrpc":"2.0","method":sys.argv[2],"params":json.loads(sys.argv[3]),"id":1})); print(json.dumps(json.loads(c.getresponse().read()).get("result")))' "$1" "$2" "${3:-[]}"
}
stat_of() { rpc "$1" stats.get_statistics "[\"$2\"]" | tr -d '[]"' | awk -F' = ' '{print $2+0}'; }

printf '%-9s %10s %10s %10s %12s %14s\n' server endpoints seconds delivered devices/s cpu_us/device

# --- Kamailio ---
port=$((20000 + RANDOM % 20000)); rport=$((port + 1))
cat > "$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
children=2
tcp_children=2
listen=udp:127.0.0.1:$port
listen=tcp:127.0.0.1:$rport
tcp_accept_no_cl=yes
maxbuffer=8388608
mpath="$modules/"
loadmodule "kex.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "pv.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "hash_size", 20)
modparam("jsonrpcs", "transport", 1)
request_route {
    if (method == "REGISTER") { save("location"); exit; }
    if (method == "OPTIONS") { sl_send_reply("200", "OK"); exit; }
    sl_send_reply("405", "Method Not Allowed");
}
event_route[xhttp:request] { jsonrpc_dispatch(); }
CFG
taskset -c 0 kamailio -f "$work/kamailio.cfg" -DD -E -x tlsf -X tlsf -m $(( (n / 1000000 + 1) * 2000 )) -M 256 -w "$work" > "$work/kamailio.log" 2>&1 &
kpid=$!; pids+=("$kpid"); sleep 2
taskset -c 1 "$bin" bench keepalive -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 --hold 600 --duration 900 \
  --source-base 127.41.0.1 --json > "$work/lg-k.json" 2>/dev/null &
kg=$!; pids+=("$kg")
for _ in $(seq 600); do [ "$(stat_of "$rport" registered_users)" -ge "$n" ] && break; sleep 1; done
ok0=$(stat_of "$rport" rcv_replies_2xx)
c0=$(cpu_s "$kpid"); t0=$(date +%s.%N)
taskset -c 1 python3 benches/kamailio_fanout.py 127.0.0.1 "$rport" 4 "$n" > "$work/fanout.json"
for _ in $(seq 600); do
  ok=$(( $(stat_of "$rport" rcv_replies_2xx) - ok0 ))
  [ "$ok" -ge "$n" ] && break; sleep 0.2
done
t1=$(date +%s.%N); c1=$(cpu_s "$kpid")
awk -v n="$n" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v ok="$ok" \
  'BEGIN {s = t1 - t0; printf "%-9s %10d %10.2f %10d %12.0f %14.2f\n", "kamailio", n, s, ok, ok / s, (c1 - c0) * 1e6 / n}'
echo "          (API client: $(cat "$work/fanout.json"))"
kill "$kpid" "$kg"; sleep 1

# --- tether ---
port=$((20000 + RANDOM % 20000)); aport=$((port + 1))
printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 2\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n[api]\nlisten = "127.0.0.1:%s"\nclients = [{ name = "bench", token = "bench-token-0123456789" }]\n[notify]\nrate = 200000\n' \
  "$port" "$n" "$aport" > "$work/tether.toml"
taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
tpid=$!; pids+=("$tpid"); sleep 1
taskset -c 1 "$bin" bench notify -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 --duration 900 \
  --source-base 127.42.0.1 --api "http://127.0.0.1:$aport" --token bench-token-0123456789 \
  --server-pid "$tpid" --probes 0 --json > "$work/lg-t.json"
python3 - "$work/lg-t.json" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["job"]
n = int(sys.argv[2])
print("%-9s %10d %10.2f %10d %12.0f %14.2f" % ("tether", n, j["seconds"], j["delivered"], j["delivered"] / j["seconds"], (j["server_cpu_us_per_device"] or 0)))
PY
