#!/usr/bin/env bash
# Builds the Debian package of tether with dpkg-deb alone (no cargo-deb, no
# debhelper: nothing to install on a fresh Debian machine).
# Usage: scripts/deb.sh [--debug] [--no-build] [--out DIR]
#   default     cargo build --release, the package to ship (target/release/tether)
#   --debug     the dev-profile binary (target/debug/tether, which the test
#               suite builds anyway): what CI installs to check the package,
#               no release build. Same files; a slower binary.
#   --no-build  package the binary as it is (scripts/test.sh: `cargo nextest
#               run --no-run` has just built target/debug/tether; a `cargo
#               build` would compile the crate again under another hash).
# Prints the path of the .deb (default DIR: $CARGO_TARGET_DIR/deb or target/deb). Packaging files: packaging/debian/; the unit is
# tuning/systemd/tether.service with /usr/bin paths, the config
# `tether config --commented`, the sysctl drop-in tuning/sysctl.d/90-tether.conf.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
target_dir=${CARGO_TARGET_DIR:-target}
out=$target_dir/deb
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --no-build) build=0 ;;
    --out) out="$2"; shift ;;
    *) echo "usage: scripts/deb.sh [--debug] [--no-build] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

if [ "$build" = 1 ]; then
  if [ "$profile" = release ]; then
    cargo build --release --locked --bin tether
  else
    cargo build --locked --bin tether
  fi
fi
bin="$target_dir/$profile/tether"
[ -x "$bin" ] || { echo "scripts/deb.sh: no $bin; build it or drop --no-build" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
# The newest glibc symbol version the binary uses is the libc6 it needs.
glibc=$(readelf -W --version-info "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' |
  sort -uV | tail -1)
depends="libc6 (>= ${glibc:-2.36}), libgcc-s1"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/etc/tether" "$root/lib/systemd/system" \
  "$root/usr/lib/sysctl.d" "$root/usr/share/doc/tether/tuning" "$root/usr/share/man/man1"
# Debug info out (the release profile keeps line tables for profiling; the
# dev binary is ~100 MB with it), as Debian ships binaries.
objcopy --strip-debug --strip-unneeded --remove-section=.comment "$bin" "$root/usr/bin/tether"
chmod 0755 "$root/usr/bin/tether"
"$root/usr/bin/tether" config --commented >"$root/etc/tether/tether.toml"
chmod 0644 "$root/etc/tether/tether.toml"
sed 's#/usr/local/bin/tether#/usr/bin/tether#g; s#/usr/local/sbin/irq-affinity.sh#/bin/bash /usr/share/doc/tether/tuning/irq-affinity.sh#' \
  tuning/systemd/tether.service >"$root/lib/systemd/system/tether.service"
if grep -q /usr/local "$root/lib/systemd/system/tether.service"; then
  echo "scripts/deb.sh: a /usr/local path is left in the unit" >&2
  exit 1
fi
install -m 0644 tuning/sysctl.d/90-tether.conf "$root/usr/lib/sysctl.d/"
# The rest of tuning/ as documentation (not installed as active config).
install -m 0644 tuning/README.md tuning/irq-affinity.sh tuning/nftables/tether-notrack.nft \
  tuning/iptables/tether-notrack.sh "$root/usr/share/doc/tether/tuning/"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/tether/"
gzip -9n <packaging/debian/tether.1 >"$root/usr/share/man/man1/tether.1.gz"
# A native package's changelog; dated by the commit so a rebuild is identical.
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'tether (%s) unstable; urgency=medium\n\n  * Built from git commit %s.\n\n -- %s  %s\n' \
  "$version" "$commit" "$(sed -n 's/^Maintainer: //p' packaging/debian/control)" "$date" |
  gzip -9n >"$root/usr/share/doc/tether/changelog.gz"

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
echo /etc/tether/tether.toml >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed "s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@SIZE@/$size/; s/@DEPENDS@/$depends/" \
  packaging/debian/control >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/tether_${version}_${arch}.deb"
# gzip -6: a few seconds; xz would take a minute for a few MB less.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
