#!/usr/bin/env bash
# Runs every fuzz target from its committed seed corpus, FUZZ_JOBS at a
# time (default 2: one per core), each for FUZZ_SECONDS (default 20) or,
# when FUZZ_RUNS is set, for that many executions. libFuzzer through
# cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP=1 for its -Z flags);
# no sanitizer: the code under test is safe Rust, with debug assertions and
# overflow checks on. Prints one line per target: executions, seconds, peak
# RSS; a failing target prints its log and the input that failed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none
bin="$PWD/target/$(rustc -vV | sed -n 's/^host: //p')/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export bin work
if [ -n "${FUZZ_RUNS:-}" ]; then
  export limit="-runs=$FUZZ_RUNS"
else
  export limit="-max_total_time=${FUZZ_SECONDS:-20}"
fi

one() {
  t="$1"
  # New inputs go to a scratch directory (listed first, so libFuzzer writes
  # there); the committed corpus is only read.
  mkdir -p "$work/$t"
  start=$(date +%s)
  status=0
  "$bin/$t" "$limit" -seed=1 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$t-" "$work/$t" "corpus/$t" > "$work/$t.log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$work/$t.log")
  printf '%-18s %12s execs %6ss %6s MB\n' "$t" "${execs:-?}" "$secs" "${rss:-?}"
  if [ "$status" -ne 0 ]; then
    tail -40 "$work/$t.log"
    for a in "$work/$t"-*; do
      [ -e "$a" ] && { echo "failing input ($a):"; od -An -tx1 "$a" | head -64; }
    done
    echo "fuzz target $t failed (exit $status)"
    return 1
  fi
}
export -f one

cargo fuzz list | xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'one {}'
