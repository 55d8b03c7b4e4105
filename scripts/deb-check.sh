#!/usr/bin/env bash
# Builds the Debian package from the dev-profile binary (the one the test
# suite builds anyway), installs it with dpkg -i, checks the unit with
# systemd-analyze verify, runs the installed binary as the tether user on its
# installed config (check; start, a sipsak OPTIONS probe over loopback,
# SIGHUP, stop by PID), then purges it and checks the purge removed the user.
# Works with or without systemd as PID 1 (a container). Needs root (or sudo),
# dpkg-deb, systemd-analyze (package systemd) and sipsak; scripts/test.sh
# installs them. Usage: scripts/deb-check.sh [scripts/deb.sh options; default --debug]
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { echo "deb-check: $*"; }
fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }
# dpkg with its arguments; waits (up to 2 min) while another dpkg or apt
# holds the lock instead of failing on it.
dpkg_() {
  local out
  for _ in $(seq 60); do
    if out=$($SUDO dpkg "$@" 2>&1); then echo "$out"; return 0; fi
    grep -qi "lock" <<<"$out" || { echo "$out" >&2; fail "dpkg $*"; }
    sleep 2
  done
  fail "dpkg $*: the dpkg lock stayed held for 2 minutes"
}

[ $# -gt 0 ] || set -- --debug
deb=$(scripts/deb.sh "$@" | tail -1)
say "built $deb"
# Something on UDP 5060 before the install would make a systemd start fail
# for a reason that is not the package's.
port_busy=$(ss -Huln 'sport = :5060' 2>/dev/null | head -1 || true)
dpkg_ -i "$deb"

unit=/lib/systemd/system/tether.service
# verify exits 0 on unknown keys and bad values (it only warns): any output fails.
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify $unit: $verify"
say "systemd-analyze verify $unit: clean"

getent passwd tether >/dev/null || fail "postinst did not create the tether user"
[ "$(stat -c %U:%G:%a /etc/tether/tether.toml)" = root:tether:640 ] ||
  fail "/etc/tether/tether.toml is $(stat -c %U:%G:%a /etc/tether/tether.toml), want root:tether:640"
# setpriv (util-linux) execs in place: $! below is tether's own PID.
as_tether=(setpriv --reuid=tether --regid=tether --init-groups --)
[ -z "$SUDO" ] || as_tether=(sudo "${as_tether[@]}")
"${as_tether[@]}" /usr/bin/tether check /etc/tether/tether.toml || fail "tether check of the installed config"

if [ -d /run/systemd/system ]; then
  # systemd runs: the postinst started the service on the installed config.
  if $SUDO systemctl is-active --quiet tether; then
    $SUDO systemctl reload tether || fail "systemctl reload tether"
    say "service active and reloaded"
  elif [ -n "$port_busy" ]; then
    say "WARNING: the service did not start; UDP 5060 was taken before the install: $port_busy"
  else
    $SUDO journalctl -u tether -n 30 --no-pager || true
    fail "tether.service did not start"
  fi
else
  say "systemd is not PID 1: postinst started nothing (as it should)"
fi

# The installed binary on the installed config, as the service's user; only
# the listen addresses move to loopback ephemeral ports (5060/8080 may be
# taken, by the service itself when systemd runs).
dir=$(mktemp -d); chmod 755 "$dir"
pid=""
cleanup() { [ -z "$pid" ] || $SUDO kill -KILL "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"${as_tether[@]}" env -u RUST_LOG NO_COLOR=1 /usr/bin/tether run --config /etc/tether/tether.toml \
  --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --workers 1 >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening http ' "$dir/out" 2>/dev/null && break
  $SUDO kill -0 "$pid" 2>/dev/null || { cat "$dir/err" >&2; fail "tether exited at start"; }
  sleep 0.1
done
grep -q '^listening http ' "$dir/out" || { cat "$dir/err" >&2; fail "tether did not start within 10 s"; }
[ "$(stat -c %U "/proc/$pid")" = tether ] || fail "tether does not run as the tether user"
udp=$(sed -n 's/^listening udp //p' "$dir/out" | head -1)
probe=$(sipsak -vv -s "sip:ping@$udp" 2>&1) || { echo "$probe" >&2; fail "sipsak OPTIONS to $udp"; }
grep -q "200 OK" <<<"$probe" || { echo "$probe" >&2; fail "no 200 OK from $udp"; }
say "sipsak OPTIONS to the installed binary at $udp: 200 OK"
$SUDO kill -HUP "$pid"
for _ in $(seq 50); do grep -q "config reloaded" "$dir/err" && break; sleep 0.1; done
grep -q "config reloaded" "$dir/err" || { cat "$dir/err" >&2; fail "no reload on SIGHUP"; }
$SUDO kill -TERM "$pid"
status=0; wait "$pid" || status=$?
pid=""
[ "$status" -eq 0 ] || { cat "$dir/err" >&2; fail "tether exited $status on SIGTERM"; }
say "reloaded on SIGHUP, stopped on SIGTERM (exit 0)"

dpkg_ --purge tether
! getent passwd tether >/dev/null || fail "purge left the tether user"
for d in /etc/tether /var/lib/tether; do
  [ ! -e "$d" ] || fail "purge left $d"
done
say "purged: user, config and state gone"
