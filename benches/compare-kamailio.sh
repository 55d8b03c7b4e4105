#!/usr/bin/env bash
# tether and Kamailio side by side, in one run, under the same load from
# `tether bench` (every endpoint on its own source address and port in
# 127.0.0.0/8, a new AOR per REGISTER, closed loop with a window of 1000 in
# flight, so each server runs as fast as it can). Each server is pinned to
# CPU 0 with 2 processes (Kamailio: 2 UDP children, tlsf allocator, 8 MiB
# receive buffer, usrloc in memory; tether: 2 workers); the generator to CPU 1.
# Per server and size: time to register all, REGISTER/s, failures, server CPU
# per REGISTER (all its processes and threads), memory of the server (PSS, so
# shared memory counts once) and of the generator (peak RSS) after the run. Then the machine's UDP ceiling.
#   benches/compare-kamailio.sh [ENDPOINTS...]    (default: 1000000)
#   PLOT_DIR=benches/results benches/compare-kamailio.sh 1000000 5000000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-1000000}")
[ ${#sizes[@]} -eq 1 ] && read -r -a sizes <<< "${sizes[0]}"
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/tether
. benches/lib.sh
need_kamailio
modules=$kamailio_modules
max=$(printf '%s\n' "${sizes[@]}" | sort -n | tail -1)
shm=$(( (max / 1000000 + 1) * 1500 ))   # MiB of Kamailio shared memory: ~1 KB per contact and headroom


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
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "hash_size", 20)
modparam("registrar", "max_contacts", 10)
request_route {
    if (method == "REGISTER") { save("location"); exit; }
    if (method == "OPTIONS") { sl_send_reply("200", "OK"); exit; }
    sl_send_reply("405", "Method Not Allowed");
}
CFG
  taskset -c 0 kamailio -f "$work/kamailio.cfg" -DD -E -x tlsf -X tlsf -m "$shm" -M 64 -w "$work" > "$work/kamailio.log" 2>&1 &
  echo $!
}
start_tether() { # port size -> pid
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[api]\nlisten = ""\n[runtime]\nworkers = 2\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n' "$1" "$2" > "$work/tether.toml"
  taskset -c 0 "$bin" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
  echo $!
}

printf '%-9s %10s %10s %10s %8s %12s %12s %14s\n' server endpoints seconds REG/s failed cpu_us/REG server_MiB generator_MiB
net=20
for n in "${sizes[@]}"; do
  for server in kamailio tether; do
    port=$((20000 + RANDOM % 20000)); net=$((net + 1))
    if [ "$server" = kamailio ]; then pid=$(start_kamailio "$port"); else pid=$(start_tether "$port" "$n"); fi
    pids+=("$pid")
    sleep 1.5
    kill -0 "$pid" 2>/dev/null || { echo "$server did not start"; tail -5 "$work/$server.log"; exit 1; }
    plot=()
    [ -n "${PLOT_DIR:-}" ] && mkdir -p "$PLOT_DIR" && plot=(--plot "$PLOT_DIR/register-$server-$n.svg")
    taskset -c 1 "$bin" bench register -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 --duration 600 \
      --source-base "127.$net.0.1" --server-pid "$pid" --json "${plot[@]}" > "$work/out.json" &
    gpid=$!
    gen_kb=0
    while kill -0 "$gpid" 2>/dev/null; do g=$(awk '/^VmRSS/ {print $2}' /proc/"$gpid"/status 2>/dev/null || echo 0); [ "${g:-0}" -gt "$gen_kb" ] && gen_kb=$g; sleep 1; done
    wait "$gpid" || true
    srv_kb=$(pss_tree_kb "$pid")
    python3 - "$work/out.json" "$server" "$n" "$srv_kb" "$gen_kb" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
server, n, srv, gen = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
secs = s["registered"] / s["achieved_rate"] if s["achieved_rate"] else float("nan")
cpu = s.get("server_cpu_us_per_register") or float("nan")
print(f"{server:<9} {n:>10} {secs:>10.1f} {s['achieved_rate']:>10.0f} {s['failed']:>8} {cpu:>12.2f} {srv/1024:>12.0f} {gen/1024:>14.0f}")
PY
    kill "$pid" 2>/dev/null || true; sleep 1
  done
done
echo "UDP ceiling (C recvmmsg/sendmmsg echo, one core each side):"
benches/echo_baseline.sh 5
