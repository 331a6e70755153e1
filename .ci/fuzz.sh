#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS, default 15) from
# its committed seed corpus. libFuzzer through cargo-fuzz on the stable
# toolchain (RUSTC_BOOTSTRAP=1 for its -Z flags); no sanitizer: the code
# under test is safe Rust, with debug assertions and overflow checks on.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
secs="${FUZZ_SECONDS:-15}"
cargo fuzz build --sanitizer none
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in $(cargo fuzz list); do
  # New inputs go to a scratch copy, so the checkout stays as committed.
  mkdir -p "$work/$t"
  cp -r "corpus/$t/." "$work/$t/" 2>/dev/null || true
  echo "fuzzing $t for ${secs}s"
  status=0
  cargo fuzz run --sanitizer none "$t" "$work/$t" -- \
    -max_total_time="$secs" -seed=1 -rss_limit_mb=2048 -print_final_stats=1 \
    > "$work/$t.log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$work/$t.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$work/$t.log"
    echo "fuzz target $t failed (exit $status)"
    exit 1
  fi
done
