#!/usr/bin/env bash
# The floor under REGISTER load, measured like the load (issue 15): in turn,
# round after round, three servers each take the same `tether bench
# register` load (N new AORs from many 127/8 sources and ports, a window of
# 1,000, the generator pinned to CPU 1):
#   c_sip  - benches/baseline/udp_echo.c in `sip` mode: recvmmsg, the
#            request's own headers under "SIP/2.0 200 OK", sendmmsg (the
#            machine's floor for this traffic: no event loop, no protocol)
#   floor  - tether's runtime around an endpoint that does the same
#            (benches/runtime_floor.rs): the runtime's own cost
#   tether - the real thing
# each pinned to CPU 0 with one worker; server CPU per REGISTER is read
# from /proc (all threads, user + system) by the generator. Prints every run
# and, per server, the median and its ratio to c_sip's median.
#   benches/floor_register.sh ENDPOINTS ROUNDS TETHER FLOOR
# e.g. cargo build --release && cargo bench --bench runtime_floor --no-run
#      benches/floor_register.sh 1000000 3 target/release/tether target/release/deps/runtime_floor-HASH
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1 rounds=$2 tether=$3 floor=$4
# The generator: tether unless GEN names another build (A/B of two floors:
# GEN=target/release/tether benches/floor_register.sh N R FLOOR_B FLOOR_A).
gen=${GEN:-$tether}
work=$(mktemp -d)
spid=""
cleanup() { [ -n "$spid" ] && kill "$spid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
gcc -O2 -o "$work/udp_echo" benches/baseline/udp_echo.c
: > "$work/runs.tsv"
printf '%-7s %-5s %12s %8s %16s\n' server round REGISTER/s failed cpu_us/REGISTER
for r in $(seq "$rounds"); do
  for server in c_sip floor tether; do
    # A port free now (a taken one would leave the generator talking to nobody).
    port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[api]\nlisten = ""\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n' \
      "$port" "$n" > "$work/tether.toml"
    case $server in
      c_sip) taskset -c 0 "$work/udp_echo" sip "$port" & ;;
      floor) taskset -c 0 "$floor" run --config "$work/tether.toml" > /dev/null 2> "$work/floor.log" & ;;
      tether) taskset -c 0 "$tether" run --config "$work/tether.toml" > /dev/null 2> "$work/tether.log" & ;;
    esac
    spid=$!; sleep 1
    if ! kill -0 "$spid" 2>/dev/null; then
      echo "$server did not start:" >&2; cat "$work"/*.log >&2 2>/dev/null || true; exit 1
    fi
    taskset -c 1 "$gen" bench register -t "127.0.0.1:$port" -n "$n" -r 0 --window 1000 \
      --duration 300 --server-pid "$spid" --json > "$work/lg.json"
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""
    python3 - "$work/lg.json" "$server" "$r" >> "$work/runs.tsv" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print("%s\t%s\t%.0f\t%d\t%.3f" % (sys.argv[2], sys.argv[3], j["achieved_rate"], j["failed"], j["server_cpu_us_per_register"] or 0))
PY
    tail -1 "$work/runs.tsv" | awk -F'\t' '{printf "%-7s %-5s %12s %8s %16s\n", $1, $2, $3, $4, $5}'
  done
done
python3 - "$work/runs.tsv" <<'PY'
import statistics, sys
runs = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
med = {}
for s in ("c_sip", "floor", "tether"):
    med[s] = statistics.median(float(r[4]) for r in runs if r[0] == s)
    rate = statistics.median(float(r[2]) for r in runs if r[0] == s)
    print(f"median {s:<7} {rate:>10.0f}/s  {med[s]:.2f} us/REGISTER  {med[s] / med['c_sip']:.2f}x c_sip")
PY
