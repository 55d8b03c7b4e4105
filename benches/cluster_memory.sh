#!/usr/bin/env bash
# Redis memory per ownership record (BENCHMARKS.md "Cluster"): a 3-master
# Redis Cluster on loopback (ports BASE..BASE+2, bus ports +10000; no
# persistence, each master in its own temp dir, killed by PID at the end),
# then examples/cluster_memory.rs with N records (default 100000).
#   benches/cluster_memory.sh [N]      (BASE defaults to 7101)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000} base=${BASE:-7101}
cargo build -q --example cluster_memory
bin=${CARGO_TARGET_DIR:-target}/debug/examples/cluster_memory
. benches/lib.sh
seeds=() nodes=()
for i in 0 1 2; do
  port=$((base + i))
  mkdir -p "$work/$port"
  redis-server --port "$port" --cluster-port $((port + 10000)) --bind 127.0.0.1 \
    --cluster-enabled yes --cluster-config-file nodes.conf --save "" --appendonly no \
    --dir "$work/$port" --loglevel warning --logfile "$work/$port/redis.log" &
  pids+=($!)
  seeds+=("redis://127.0.0.1:$port") nodes+=("127.0.0.1:$port")
done
for i in 0 1 2; do
  until redis-cli -p $((base + i)) ping >/dev/null 2>&1; do sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "$base" cluster info | grep -q cluster_state:ok; do sleep 0.2; done
redis-server --version
"$bin" "$n" "${seeds[@]}"
