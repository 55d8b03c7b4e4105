#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the real SIP peers the
# tests talk to (SIPp, sipsak, baresip, Kamailio, rtpengine, python3) and the NAT test bed
# (iproute2, iptables, conntrack) and Redis for the cluster tests, then format, lint, the
# Debian package check and tests.
# Usage: scripts/test.sh      (as root, or with sudo available for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v sipp >/dev/null || need_pkgs+=(sip-tester)
command -v sipsak >/dev/null || need_pkgs+=(sipsak)
command -v baresip >/dev/null || need_pkgs+=(baresip-core)
command -v kamailio >/dev/null || need_pkgs+=(kamailio)
command -v python3 >/dev/null || need_pkgs+=(python3)
# tests/ng_rtpengine.rs checks the ng client against the real rtpengine
# (run in the foreground by the test; the package's service is not used).
command -v rtpengine >/dev/null || need_pkgs+=(rtpengine-daemon)
# The NAT test builds network namespaces with a MASQUERADE box (needs root).
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v conntrack >/dev/null || need_pkgs+=(conntrack)
# tests/cluster.rs starts its own 3-master Redis Cluster on loopback (the
# package's service is not used); redis-cli creates the cluster.
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
# The package check (scripts/deb-check.sh) verifies the unit with systemd-analyze.
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

# A fresh machine builds everything once: incremental state would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
# Printed so that a build that runs out of disk says so at a glance.
df -h . | tail -1 | awk '{print "disk: " $4 " free of " $2}'

cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings
# nextest does not run doctests; run them first so nextest's summary closes the log.
cargo test --doc --locked
# Build the tests (and target/debug/tether) once; the Debian package is made
# from that binary (no release build, nothing compiled twice), installed, its
# unit verified, run on its config and purged, before the tests run.
cargo nextest run --locked --no-run
bash scripts/deb-check.sh --debug --no-build
cargo nextest run --locked --no-fail-fast
