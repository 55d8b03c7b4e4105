#!/usr/bin/env bash
# tether and Kamailio side by side, in one run, under the same SIPp REGISTER
# load (tests/sipp/register.xml, a new AOR per REGISTER). Each server is
# pinned to CPU 0 with 2 processes (Kamailio: 2 UDP children, tlsf memory
# manager, 8 MiB receive buffer, usrloc in memory; tether: 2 workers), SIPp
# to CPU 1. Prints, per server and rate: achieved REGISTER/s, failed calls,
# server CPU per REGISTER (summed /proc/*/schedstat of all its threads and
# processes), resident memory after the run, and the ratios.
#   benches/compare-kamailio.sh [CALLS] [RATE...]   (defaults: 40000; 10000 30000)
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-40000}"; shift || true
rates=("${@:-10000 30000}")
[ ${#rates[@]} -eq 1 ] && read -r -a rates <<< "${rates[0]}"
need=(); command -v sipp >/dev/null || need+=(sip-tester); command -v kamailio >/dev/null || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; fi
cargo build --release -q
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
modules=$(dirname "$(find /usr/lib -name registrar.so -path '*kamailio*' | head -1)")
kport=$((21000 + RANDOM % 10000)); tport=$((kport + 1))

cat > "$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
children=2
listen=udp:127.0.0.1:$kport
maxbuffer=8388608
mpath="$modules/"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "pv.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "hash_size", 16)
request_route {
    if (method == "REGISTER") { save("location"); exit; }
    if (method == "OPTIONS") { sl_send_reply("200", "OK"); exit; }
    sl_send_reply("405", "Method Not Allowed");
}
CFG
printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 2\n[registrar]\ncapacity = 1048576\n' "$tport" > "$work/tether.toml"

{ echo SEQUENTIAL; for i in $(seq -w 0 $((calls * ${#rates[@]}))); do echo "u$i;x"; done; } > "$work/users.csv"

taskset -c 0 kamailio -f "$work/kamailio.cfg" -DD -E -x tlsf -X tlsf -m 512 -M 32 -w "$work" > "$work/kamailio.log" 2>&1 &
pids+=($!); kpid=$!
taskset -c 0 target/release/tether run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" &
pids+=($!); tpid=$!
sleep 1.5
kill -0 "$kpid" || { echo "kamailio did not start:"; tail -20 "$work/kamailio.log"; exit 1; }

# CPU time (ns) of every thread of a process tree.
tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_ns() { for p in $(tree_pids "$1"); do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{s += $1} END {printf "%.0f", s}'; }
rss_kb() { for p in $(tree_pids "$1"); do awk '/^VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null; done | awk '{s += $1} END {print s}'; }

run() { # name pid port rate -> "achieved failed cpu_us"
  local before after start end ok failed
  before=$(cpu_ns "$2"); start=$(date +%s.%N)
  taskset -c 1 timeout 120 sipp -sf tests/sipp/register.xml -inf "$work/users.csv" -m "$calls" -r "$4" -rp 1000 \
    -l 20000 -buff_size 8388608 -timeout 100s -nostdin -i 127.0.0.1 -p $(( $3 + 100 )) -t u1 \
    -trace_stat -stf "$work/stat.csv" "127.0.0.1:$3" > /dev/null 2>&1 || true
  end=$(date +%s.%N); after=$(cpu_ns "$2")
  ok=$(tail -1 "$work/stat.csv" | awk -F';' '{print $16}'); failed=$(tail -1 "$work/stat.csv" | awk -F';' '{print $18}')
  rm -f "$work/stat.csv"
  awk -v ok="$ok" -v f="$failed" -v s="$start" -v e="$end" -v b="$before" -v a="$after" \
    'BEGIN { printf "%.0f %d %.2f\n", ok/(e-s), f, (a-b)/1000/(ok>0?ok:1) }'
}

printf '%-9s %8s %10s %8s %12s\n' server rate achieved failed cpu_us/REG
for rate in "${rates[@]}"; do
  read -r ka kf kc <<< "$(run kamailio "$kpid" "$kport" "$rate")"
  read -r ta tf tc <<< "$(run tether "$tpid" "$tport" "$rate")"
  printf '%-9s %8d %10d %8d %12.2f\n' kamailio "$rate" "$ka" "$kf" "$kc"
  printf '%-9s %8d %10d %8d %12.2f\n' tether "$rate" "$ta" "$tf" "$tc"
  awk -v k="$kc" -v t="$tc" 'BEGIN { printf "          CPU per REGISTER, kamailio / tether: %.2fx\n", k/t }'
done
kr=$(rss_kb "$kpid"); tr=$(rss_kb "$tpid")
n=$((calls * ${#rates[@]}))
echo "resident memory after $n AORs: kamailio $((kr / 1024)) MiB, tether $((tr / 1024)) MiB (includes tether's directory pre-sized for 1,048,576 AORs)"
