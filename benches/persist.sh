#!/usr/bin/env bash
# REGISTER throughput with [persist] off and on, side by side in one run
# (the machine is shared and noisy: compare only within a run), and the
# restart time of the registrations a run leaves.
#
# Per round and load, each mode in turn (order alternating between rounds):
# a fresh tether (1 worker; the whole process, persist writer thread
# included, pinned to CPU 0 with `taskset`, so the journal's CPU comes out
# of the SIP path's budget) and `tether bench register` of N new AORs on
# CPU 1 (every REGISTER is one directory change, so one journal record).
#   load "max": -r 0 --window 1000 (as fast as the server answers);
#   load RATE:  -r RATE (default 50,000/s).
# After each "on" run at "max": SIGKILL, restart on the same directory
# (recovery from the journals, no final snapshot) and time until it
# listens; then SIGTERM (which writes a full snapshot), restart again and
# time that (recovery from the snapshot). Each restart reads the log line
# "registrations restored" (its ms) and checks the count.
#   benches/persist.sh [ENDPOINTS] [RATE] [ROUNDS]     (default 1000000 50000 3)
# Results: benches/results/persist/runs.tsv and restarts.tsv, summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000} rate=${2:-50000} rounds=${3:-3}
out=benches/results/persist/${NAME:-default}
mkdir -p "$out"
[ "${SUMMARY_ONLY:-0}" = 1 ] || cargo build --release -q --bin tether
bin=${CARGO_TARGET_DIR:-target}/release/tether
work=$(mktemp -d)
tpid=
cleanup() { [ -n "$tpid" ] && kill -9 "$tpid" 2>/dev/null; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT

thread_ns() {
  local sum=0 t
  for t in /proc/"$1"/task/*; do
    grep -qE "$2" "$t/comm" 2>/dev/null || continue
    sum=$((sum + $(cut -d' ' -f1 "$t/schedstat")))
  done
  echo "$sum"
}
metric() { curl -s "http://$api/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# start_tether MODE PORT [KEEPALIVE_MS]: starts it on CPU 0; sets tpid and
# api. The load runs have no keepalive (the generator does not answer
# prompts); the restarts have the default 25 s, so that restoring arms every
# path's first prompt as in production.
start_tether() {
  local persist=""
  [ "$1" = on ] && persist=$(printf '[persist]\nenabled = true\ndir = "%s/state"\n' "$work")
  printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n[keepalive]\ninterval_ms = %s\n[api]\nlisten = "127.0.0.1:0"\n%s\n' \
    "$2" "$n" "${3:-0}" "$persist" > "$work/tether.toml"
  : > "$work/tether.out"
  t0=$(date +%s%N)
  taskset -c 0 "$bin" run --config "$work/tether.toml" > "$work/tether.out" 2> "$work/tether.log" &
  tpid=$!
  for _ in $(seq 3000); do grep -q 'listening http' "$work/tether.out" 2>/dev/null && break; sleep 0.01; done
  listen_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  api=$(awk '/listening http/ {print $3}' "$work/tether.out")
}

# "RESTORE_MS CPU_MS BINDINGS CORES_MS" from the log of the restart: the
# directory's rebuild (wall, CPU) and the slowest core's taking back its
# bindings (which ends before it serves anything).
restored_fields() {
  for _ in $(seq 3000); do grep -q 'core took back' "$work/tether.log" && break; sleep 0.01; done
  local l c
  l=$(grep 'registrations restored' "$work/tether.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
  c=$(grep 'core took back' "$work/tether.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -oE ' ms=[0-9]+' | cut -d= -f2 | sort -n | tail -1)
  echo "$(echo "$l" | grep -oE ' ms=[0-9]+' | cut -d= -f2) $(echo "$l" | grep -oE 'cpu_ms=[0-9]+' | cut -d= -f2) $(echo "$l" | grep -oE 'bindings=[0-9]+' | cut -d= -f2) ${c:-0}"
}

rows="$out/runs.tsv"; restarts="$out/restarts.tsv"
if [ "${SUMMARY_ONLY:-0}" != 1 ]; then
printf 'load\tmode\tround\tregister_per_s\tfailed\tp50_us\tp99_us\tserver_us_per_reg\tworker_us_per_reg\tpersist_us_per_reg\trecords\tdropped\tstart_ms\n' > "$rows"
printf 'round\tfrom\tbindings_restored\trestore_ms\trestore_cpu_ms\tcores_ms\tstart_to_listening_ms\tstate_mb\n' > "$restarts"
net=40
for r in $(seq "$rounds"); do
  modes=(off on); [ $((r % 2)) -eq 0 ] && modes=(on off)
  for load in max "$rate"; do
    for mode in "${modes[@]}"; do
      net=$((net + 1))
      rm -rf "$work/state"
      port=$((20000 + RANDOM % 20000))
      start_tether "$mode" "$port"
      start_ms=$listen_ms
      if [ "$load" = max ]; then lg=(-r 0 --window 1000); else lg=(-r "$load"); fi
      taskset -c 1 "$bin" bench register -t "127.0.0.1:$port" -n "$n" "${lg[@]}" --duration 120 \
        --source-base "127.$net.0.1" --server-pid "$tpid" --json > "$work/lg.json"
      sleep 0.3
      all_ns=$(thread_ns "$tpid" .); worker_ns=$(thread_ns "$tpid" '^tether-w')
      persist_ns=$(thread_ns "$tpid" '^tether-(persist|snapsh)')
      records=0; dropped=0
      if [ "$mode" = on ]; then
        records=$(metric tether_persist_records_total); dropped=$(metric tether_persist_dropped_total)
      fi
      python3 - "$work/lg.json" "$load" "$mode" "$r" "$all_ns" "$worker_ns" "$persist_ns" "$records" "$dropped" "$start_ms" >> "$rows" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
load, mode, r = sys.argv[2:5]
all_ns, worker_ns, persist_ns, records, dropped, start_ms = (int(x or 0) for x in sys.argv[5:11])
reg = max(j["registered"], 1)
print("\t".join(str(x) for x in [
    load, mode, r, round(j["achieved_rate"]), j["failed"], j["latency_us"]["p50"], j["latency_us"]["p99"],
    round(all_ns / 1000 / reg, 2), round(worker_ns / 1000 / reg, 2),
    round(persist_ns / 1000 / reg, 2) if mode == "on" else "-", records, dropped, start_ms]))
PY
      tail -1 "$rows"
      if [ "$mode" = on ] && [ "$load" = max ]; then
        kill -9 "$tpid"; wait "$tpid" 2>/dev/null || true
        mb=$(du -sm "$work/state" | cut -f1)
        start_tether on "$port" 25000
        read -r rms rcpu rb cms <<< "$(restored_fields)"
        printf '%s\tjournals (after SIGKILL)\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$rb" "$rms" "$rcpu" "$cms" "$listen_ms" "$mb" >> "$restarts"
        tail -1 "$restarts"
        kill -TERM "$tpid"; wait "$tpid" 2>/dev/null || true
        mb=$(du -sm "$work/state" | cut -f1)
        start_tether on "$port" 25000
        read -r rms rcpu rb cms <<< "$(restored_fields)"
        printf '%s\tsnapshot (after SIGTERM)\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$rb" "$rms" "$rcpu" "$cms" "$listen_ms" "$mb" >> "$restarts"
        tail -1 "$restarts"
      fi
      kill -9 "$tpid"; wait "$tpid" 2>/dev/null || true
      tpid=
    done
  done
done

fi

python3 - "$rows" "$restarts" "$n" "$rate" "$rounds" > "$out/summary.md" <<'PY'
import csv, statistics, sys, subprocess
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rs_ = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
n, rate, rounds = sys.argv[3:6]
def med(rs, k):
    v = [float(r[k]) for r in rs if r[k] not in ("-", "")]
    return statistics.median(v) if v else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
print(f"# Persistence: REGISTER load with [persist] off and on\n")
print(f"`benches/persist.sh {n} {rate} {rounds}`; medians of {rounds} rounds, the modes side by side in each round. "
      "tether: 1 worker, whole process on CPU 0; generator on CPU 1. Every REGISTER is a new AOR (one journal record).\n")
print("| load | persist | REGISTER/s | failed | p50 / p99 latency (µs) | server CPU/REGISTER (µs) | worker CPU/REGISTER (µs) | persist threads CPU/REGISTER (µs) | records | dropped |")
print("|---|---|---|---|---|---|---|---|---|---|")
for load in dict.fromkeys(r["load"] for r in rows):
    for mode in ("off", "on"):
        rs = [r for r in rows if r["load"] == load and r["mode"] == mode]
        if not rs:
            continue
        print(f"| {load} | {mode} | {fmt(med(rs,'register_per_s'))} | {fmt(med(rs,'failed'))} | {fmt(med(rs,'p50_us'))} / {fmt(med(rs,'p99_us'))} | "
              f"{fmt(med(rs,'server_us_per_reg'),2)} | {fmt(med(rs,'worker_us_per_reg'),2)} | {fmt(med(rs,'persist_us_per_reg'),2)} | "
              f"{fmt(med(rs,'records'))} | {fmt(med(rs,'dropped'))} |")
print("\n| restart from | bindings restored | directory rebuilt, ms (wall / CPU) | slowest core took back its bindings, ms | start to listening, ms | state on disk, MB |")
print("|---|---|---|---|---|---|")
for frm in dict.fromkeys(r["from"] for r in rs_):
    rs = [r for r in rs_ if r["from"] == frm]
    print(f"| {frm} | {fmt(med(rs,'bindings_restored'))} | {fmt(med(rs,'restore_ms'))} / {fmt(med(rs,'restore_cpu_ms'))} | {fmt(med(rs,'cores_ms'))} | {fmt(med(rs,'start_to_listening_ms'))} | {fmt(med(rs,'state_mb'))} |")
print("\nEvery run: `runs.tsv`, `restarts.tsv`. Machine: " + subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
      + f", {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs.")
PY
cat "$out/summary.md"
