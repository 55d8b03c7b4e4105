#!/usr/bin/env bash
# Cluster benchmarks of issue 18 (BENCHMARKS.md "Cluster (issue 18)"): a
# 3-master Redis Cluster and 3 tether nodes (release build, 1 worker each)
# on loopback, loaded by `tether bench` with every node as a --target.
#
#   benches/cluster_fanout.sh register N   REGISTER/s: each node alone
#       (N/3 endpoints, the other nodes stopped), then the 3 nodes at once
#       with [cluster] off, then with [cluster] on (N endpoints spread).
#   benches/cluster_fanout.sh broadcast N  N endpoints spread over the 3
#       nodes, then one contact-me job {"all": true} posted to node 1,
#       timed from the POST until the merged job reads finished; the
#       generator counts duplicate prompts (a device prompted by 2 nodes).
#
# RUNS (default 3) repeats each measurement; BASE (default 7201) is the
# first Redis port (bus ports +10000), SIP ports BASE+100.., API BASE+200...
# NODE_RATE (default 30000) is each node's notify.rate: three nodes and the
# generator share this machine's two cores; 90,000/s in all went out without
# a retransmission, 105,000/s already needed 4-11% more (BENCHMARKS.md).
# KEEPALIVE_MS (default 300000) is keepalive.interval_ms: at the default
# 25 s, three nodes' prompts to a million paths (40,000 OPTIONS/s) share the
# same two cores as everything measured here; on a real cluster each node
# has its own machine. Set KEEPALIVE_MS=25000 to measure with them.
# Every process is started here and killed by PID at the end. Traffic stays
# on 127.0.0.0/8. The full targets: `register 300000`, `broadcast 1000000`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-broadcast} n=${2:-30000} runs=${RUNS:-3} base=${BASE:-7201} node_rate=${NODE_RATE:-30000} keepalive_ms=${KEEPALIVE_MS:-300000}
# cluster.buckets as the config advises: about 16 records per bucket.
buckets=16
while [ $((buckets * 16)) -lt "$n" ]; do buckets=$((buckets * 2)); done
# BIN: another tether binary to measure (an A/B), else this tree's release build.
if [ -z "${BIN:-}" ]; then cargo build -q --release --bin tether; fi
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/tether}
work=$(mktemp -d)
redis_pids=() node_pids=()
cleanup() {
  for p in "${node_pids[@]}" "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true
token=bench-token-0123456789 peer=peer-token-0123456789abcdef

start_redis() {
  local seeds=() addrs=()
  for i in 0 1 2; do
    local port=$((base + i))
    rm -rf "${work:?}/r$port" && mkdir -p "$work/r$port"
    redis-server --port "$port" --cluster-port $((port + 10000)) --bind 127.0.0.1 \
      --cluster-enabled yes --cluster-config-file nodes.conf --save "" --appendonly no \
      --dir "$work/r$port" --loglevel warning --logfile "$work/r$port/redis.log" &
    redis_pids+=($!)
    addrs+=("127.0.0.1:$port")
  done
  for i in 0 1 2; do
    until redis-cli -p $((base + i)) ping >/dev/null 2>&1; do sleep 0.1; done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  until redis-cli -p "$base" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
}

stop_redis() {
  for p in "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${redis_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  redis_pids=()
}

# start_node K CLUSTER(on|off): node K (1..3) on SIP port BASE+100+K.
start_node() {
  local k=$1 on=$2 sip=127.0.0.1:$((base + 100 + $1)) api=127.0.0.1:$((base + 200 + $1))
  local cluster="enabled = false"
  if [ "$on" = on ]; then
    cluster="enabled = true
node = $k
redis = [\"redis://127.0.0.1:$base\", \"redis://127.0.0.1:$((base + 1))\", \"redis://127.0.0.1:$((base + 2))\"]
advertise = \"$sip\"
api_client = \"cluster\"
buckets = $buckets"
  fi
  cat >"$work/node$k.toml" <<EOF
[sip]
listen = ["$sip"]
[runtime]
workers = 1
[api]
listen = "$api"
max_job_devices = 20000000
clients = [{ name = "bench", token = "$token" }, { name = "cluster", token = "$peer", allow = ["127.0.0.0/8"] }]
[notify]
rate = $node_rate
[keepalive]
interval_ms = $keepalive_ms
[push]
node = $k
[cluster]
$cluster
EOF
  "$bin" run --config "$work/node$k.toml" >"$work/node$k.out" 2>"$work/node$k.err" &
  node_pids+=($!)
  until grep -q "listening http" "$work/node$k.out" 2>/dev/null; do sleep 0.1; done
}

stop_nodes() {
  for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  node_pids=()
}

targets() { for k in "$@"; do printf -- "--target 127.0.0.1:%d " $((base + 100 + k)); done; }

# CPU time (ns) of the given processes, all threads (/proc schedstat).
cpu_ns() {
  local t=0 p
  for p in "$@"; do
    t=$((t + $(cat /proc/"$p"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}')))
  done
  echo "$t"
}

# rate ENDPOINTS NODES...: REGISTER/s achieved over the given nodes; also
# appends the nodes' and Redis's CPU µs per REGISTER to $work/cpu.
rate() {
  local eps=$1 out n0 r0 n1 r1
  shift
  n0=$(cpu_ns "${node_pids[@]}") r0=$(cpu_ns "${redis_pids[@]}")
  # shellcheck disable=SC2046
  out=$("$bin" bench register -n "$eps" -r 0 --window 20000 --duration 300 --json \
    --source-base 127.40.0.1 --domain example.com $(targets "$@"))
  n1=$(cpu_ns "${node_pids[@]}") r1=$(cpu_ns "${redis_pids[@]}")
  local ok
  ok=$(jq -r .registered <<<"$out")
  echo "$mode_tag $(echo "($n1 - $n0) / 1000 / $ok" | bc -l) $(echo "($r1 - $r0) / 1000 / $ok" | bc -l)" >>"$work/cpu"
  jq -r .achieved_rate <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

case $mode in
register)
  per=$((n / 3))
  for r in $(seq "$runs"); do
    sum=0
    for k in 1 2 3; do
      start_node "$k" off
      mode_tag=alone x=$(rate "$per" "$k")
      stop_nodes
      sum=$(echo "$sum + $x" | bc -l)
    done
    echo "$sum" >>"$work/alone"
    for k in 1 2 3; do start_node "$k" off; done
    mode_tag=off rate "$n" 1 2 3 >>"$work/off"
    stop_nodes
    start_redis
    for k in 1 2 3; do start_node "$k" on; done
    mode_tag=on rate "$n" 1 2 3 >>"$work/on"
    stop_nodes
    stop_redis
    echo "run $r: alone-sum $(tail -1 "$work/alone")  3-off $(tail -1 "$work/off")  3-cluster $(tail -1 "$work/on")"
  done
  echo "median REGISTER/s: sum of nodes alone $(median <"$work/alone"), 3 nodes cluster off $(median <"$work/off"), 3 nodes cluster on $(median <"$work/on")"
  for t in alone off on; do
    echo "median CPU per REGISTER ($t): tether $(awk -v t=$t '$1 == t {print $2}' "$work/cpu" | median) us, redis $(awk -v t=$t '$1 == t {print $3}' "$work/cpu" | median) us"
  done
  ;;
broadcast)
  for r in $(seq "$runs"); do
    start_redis
    for k in 1 2 3; do start_node "$k" on; done
    # shellcheck disable=SC2046
    "$bin" bench notify -n "$n" -r 0 --window 20000 --duration 600 --json \
      --source-base 127.40.0.1 --domain example.com $(targets 1 2 3) \
      --api "http://127.0.0.1:$((base + 201))" --token "$token" --probes 0 >"$work/run$r.json"
    jq -c '{devices: .job.devices, delivered: .job.delivered, seconds: .job.seconds,
      duplicate_prompts, registered, reg_rate: .achieved_rate, error: .job.error,
      nodes: [.nodes[] | {endpoints, prompts, duplicate_prompts}]}' "$work/run$r.json"
    jq -r .job.seconds "$work/run$r.json" >>"$work/secs"
    stop_nodes
    stop_redis
  done
  echo "median broadcast seconds for $n devices over 3 nodes: $(median <"$work/secs")"
  ;;
*)
  echo "usage: $0 register|broadcast N" >&2
  exit 2
  ;;
esac
