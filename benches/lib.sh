# Shared by the bench scripts, sourced after they cd to the repository root.
# A work directory and the PIDs of the processes a script starts, both
# cleaned up at exit (only those PIDs are ever killed).
work=$(mktemp -d)
pids=()
bench_cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$work"; }
trap bench_cleanup EXIT

# Kamailio from Debian's packages, and the directory of its modules.
need_kamailio() {
  command -v kamailio >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio; }
  kamailio_modules=$(dirname "$(find /usr/lib -name registrar.so -path '*kamailio*' | head -1)")
}

# Proportional set size of a process and its children: shared memory (Kamailio's
# shm) is counted once across the processes, not once per child as RSS would.
pss_tree_kb() { for p in "$1" $(pgrep -P "$1" || true); do awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null; done | awk '{s += $1} END {print s+0}'; }
