#!/usr/bin/env bash
# Bounded fuzzing of the SIP parser. Usage: fuzz/run.sh [SECONDS]  (default 300)
# Seeds the corpus with the RFC 4475 messages and the kept regressions. Any crash libFuzzer finds is
# copied to fuzz/regressions/, where `cargo test --test fuzz_regressions`
# replays it forever after.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain use them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/parse fuzz/regressions
cp -n tests/fixtures/rfc4475/*.sip fuzz/corpus/parse/ 2>/dev/null || true
cp -n fuzz/regressions/*.sip fuzz/corpus/parse/ 2>/dev/null || true
status=0
RUSTC_BOOTSTRAP=1 cargo fuzz run parse fuzz/corpus/parse -- \
  -max_total_time="$secs" -max_len=8192 -timeout=5 || status=$?
for f in fuzz/artifacts/parse/crash-* fuzz/artifacts/parse/timeout-* fuzz/artifacts/parse/oom-*; do
  [ -e "$f" ] && cp "$f" fuzz/regressions/ && echo "kept $f as a regression"
done
exit "$status"
