#!/usr/bin/env bash
# REGISTER throughput with registration webhooks off, on (one event per
# POST) and batched (webhooks.batch = BATCH, default 100), side by side in
# one run (the machine is shared and noisy: compare only within a run).
#
# Per round, for each load and each mode (the order alternating between
# rounds): a fresh tether (1 worker; the whole process, HTTP side threads
# included, pinned to CPU 0 with `taskset`, so the webhooks' CPU comes out
# of the same budget as the SIP path), `examples/hook_sink.rs` (tiny_http,
# answers 204) and `tether bench register` (N new AORs, so every REGISTER
# makes one `registration.added` event) both pinned to CPU 1.
#   load "max": -r 0 --window 1000 (as fast as the server answers);
#   load RATE:  -r RATE (the asked rate, default 50,000/s).
# Modes "on" and "batch" set webhooks.url to the sink with every event,
# webhooks.queue = QUEUE (default 65536) and webhooks.threads = THREADS
# (default 4); "batch" also webhooks.batch = BATCH. After the
# generator ends, the script waits (at most 60 s) for the webhook queue to
# drain, then reads /metrics (delivered, dropped, failed) and each tether
# thread's CPU (/proc/PID/task/*/schedstat: exact ns, user + kernel).
# With SPLIT=1 the HTTP side threads are moved to CPU 1 once tether runs
# (`taskset -p` per thread): the SIP worker keeps CPU 0 to itself, as in a
# deployment that leaves a core beside the workers for HTTP.
#   benches/webhooks.sh [ENDPOINTS] [RATE] [ROUNDS]      (default 300000 50000 3)
# Results: benches/results/webhooks/NAME/ (NAME defaults to cpu0): runs.tsv
# (every run) and summary.md (medians per load and mode).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300000} rate=${2:-50000} rounds=${3:-3}
queue=${QUEUE:-65536} threads=${THREADS:-4} batch=${BATCH:-100}
out=benches/results/webhooks/${NAME:-cpu0}
mkdir -p "$out"
cargo build --release -q --bin tether --example hook_sink
bin=${CARGO_TARGET_DIR:-target}/release/tether
sink_bin=${CARGO_TARGET_DIR:-target}/release/examples/hook_sink
. benches/lib.sh

# Sum of schedstat run time (ns) of the threads of $1 whose name matches $2.
thread_ns() {
  local sum=0 t
  for t in /proc/"$1"/task/*; do
    grep -qE "$2" "$t/comm" 2>/dev/null || continue
    sum=$((sum + $(cut -d' ' -f1 "$t/schedstat")))
  done
  echo "$sum"
}
metric() { curl -s "http://$api/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

rows="$out/runs.tsv"
printf 'load\tmode\tround\tregister_per_s\tfailed\tp50_us\tp99_us\tserver_us_per_reg\tworker_us_per_reg\thttp_us_per_event\tdelivered\tdropped\thook_failed\tsink_requests\tsink_us_per_event\n' > "$rows"
net=30
for r in $(seq "$rounds"); do
  modes=(off on batch); [ $((r % 2)) -eq 0 ] && modes=(batch on off)
  for load in max "$rate"; do
    for mode in "${modes[@]}"; do
      net=$((net + 1))
      taskset -c 1 "$sink_bin" --threads 2 > "$work/sink.out" &
      spid=$!; pids+=("$spid")
      for _ in $(seq 50); do [ -s "$work/sink.out" ] && break; sleep 0.1; done
      sport=$(head -1 "$work/sink.out")
      port=$((20000 + RANDOM % 20000))
      hooks=""
      [ "$mode" != off ] && hooks=$(printf '[webhooks]\nurl = "http://127.0.0.1:%s/events"\nqueue = %s\nthreads = %s\n' "$sport" "$queue" "$threads")
      [ "$mode" = batch ] && hooks=$(printf '%s\nbatch = %s\n' "$hooks" "$batch")
      printf '[sip]\nlisten = ["127.0.0.1:%s"]\n[runtime]\nworkers = 1\nstats_interval_s = 0\n[registrar]\ncapacity = %s\n[keepalive]\ninterval_ms = 0\n[api]\nlisten = "127.0.0.1:0"\n%s\n' \
        "$port" "$n" "$hooks" > "$work/tether.toml"
      taskset -c 0 "$bin" run --config "$work/tether.toml" > "$work/tether.out" 2> "$work/tether.log" &
      tpid=$!; pids+=("$tpid")
      for _ in $(seq 50); do grep -q 'listening http' "$work/tether.out" 2>/dev/null && break; sleep 0.1; done
      api=$(awk '/listening http/ {print $3}' "$work/tether.out")
      if [ "${SPLIT:-0}" = 1 ]; then
        for t in /proc/"$tpid"/task/*; do
          grep -q '^tether-http' "$t/comm" && taskset -p -c 1 "$(basename "$t")" > /dev/null
        done
      fi
      if [ "$load" = max ]; then lg=(-r 0 --window 1000); else lg=(-r "$load"); fi
      taskset -c 1 "$bin" bench register -t "127.0.0.1:$port" -n "$n" "${lg[@]}" --duration 120 \
        --source-base "127.$net.0.1" --server-pid "$tpid" --json > "$work/lg.json"
      for _ in $(seq 600); do
        [ "$mode" = off ] && break
        [ "$(metric tether_hooks_queue_depth)" = 0 ] && [ "$(metric tether_webhooks_retry_waiting)" = 0 ] && break
        sleep 0.1
      done
      delivered=$(metric tether_webhooks_delivered_total); dropped=$(metric tether_webhooks_dropped_total)
      hfailed=$(metric tether_webhooks_failed_total)
      all_ns=$(thread_ns "$tpid" .); worker_ns=$(thread_ns "$tpid" '^tether-w'); http_ns=$(thread_ns "$tpid" '^tether-http')
      sink_ns=$(thread_ns "$spid" .)
      kill "$tpid"; wait "$tpid" 2>/dev/null || true
      kill "$spid"; wait "$spid" 2>/dev/null || true
      pids=()
      sink_req=$(awk '/^requests/ {print $2}' "$work/sink.out")
      python3 - "$work/lg.json" "$load" "$mode" "$r" "$all_ns" "$worker_ns" "$http_ns" "$delivered" "$dropped" "$hfailed" "${sink_req:-0}" "$sink_ns" >> "$rows" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
load, mode, r = sys.argv[2:5]
all_ns, worker_ns, http_ns, delivered, dropped, hfailed, sink_req, sink_ns = (int(x or 0) for x in sys.argv[5:13])
reg = max(j["registered"], 1)
events = max(delivered + hfailed, 1)
print("\t".join(str(x) for x in [
    load, mode, r, round(j["achieved_rate"]), j["failed"], j["latency_us"]["p50"], j["latency_us"]["p99"],
    round(all_ns / 1000 / reg, 2), round(worker_ns / 1000 / reg, 2),
    round(http_ns / 1000 / events, 2) if mode != "off" else "-",
    delivered, dropped, hfailed, sink_req,
    round(sink_ns / 1000 / events, 2) if mode != "off" else "-"]))
PY
      tail -1 "$rows"
    done
  done
done

python3 - "$rows" "$n" "$rate" "$rounds" "$queue" "$threads" "$batch" > "$out/summary.md" <<'PY'
import csv, os, statistics, sys, subprocess
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
n, rate, rounds, queue, threads, batch = sys.argv[2:8]
def med(rs, k):
    v = [float(r[k]) for r in rs if r[k] not in ("-", "")]
    return statistics.median(v) if v else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
print(f"# Webhooks: REGISTER load with registration events off, on and batched\n")
split = os.environ.get("SPLIT", "0") == "1"
print(f"`{'SPLIT=1 ' if split else ''}benches/webhooks.sh {n} {rate} {rounds}` (QUEUE={queue}, THREADS={threads}, BATCH={batch}); medians of {rounds} rounds, "
      "the modes side by side in each round. tether: 1 worker, " + ("on CPU 0, its HTTP threads on CPU 1" if split else "whole process on CPU 0") + "; generator and "
      "hook_sink on CPU 1. One `registration.added` event per REGISTER (new AORs). "
      "`sink_requests` in runs.tsv counts POSTs (a batch is one).\n")
print("| load | webhooks | REGISTER/s | failed | p50 / p99 latency (µs) | server CPU/REGISTER (µs) | worker CPU/REGISTER (µs) | HTTP threads CPU/event (µs) | delivered | dropped | failed | sink CPU/event (µs) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for load in dict.fromkeys(r["load"] for r in rows):
    for mode in ("off", "on", "batch"):
        rs = [r for r in rows if r["load"] == load and r["mode"] == mode]
        if not rs:
            continue
        rps = med(rs, "register_per_s")
        print(f"| {load} | {mode} | {fmt(rps)} | {fmt(med(rs,'failed'))} | {fmt(med(rs,'p50_us'))} / {fmt(med(rs,'p99_us'))} | "
              f"{fmt(med(rs,'server_us_per_reg'),2)} | {fmt(med(rs,'worker_us_per_reg'),2)} | {fmt(med(rs,'http_us_per_event'),2)} | "
              f"{fmt(med(rs,'delivered'))} | {fmt(med(rs,'dropped'))} | {fmt(med(rs,'hook_failed'))} | {fmt(med(rs,'sink_us_per_event'),2)} |")
print("\nEvery run: `runs.tsv`. Machine: " + subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
      + f", {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs.")
PY
cat "$out/summary.md"
