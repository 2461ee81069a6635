#!/usr/bin/env bash
# Runs every fuzz target (iscsi-target/fuzz, vtl/fuzz) for a bounded
# time, starting from its seed corpus, and fails on any crash, hang or leak.
# Usage: tests/scripts/fuzz-smoke.sh   (from anywhere)
#   FUZZ_SECONDS      time per target (default 20)
#   CARGO_TARGET_DIR  the fuzz builds go to "$CARGO_TARGET_DIR-fuzz"
#                     (default target-fuzz), away from the normal builds
set -euo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
fuzz_target_dir="${CARGO_TARGET_DIR:-target}-fuzz"
case "$fuzz_target_dir" in
  /*) ;;
  *) fuzz_target_dir="$PWD/$fuzz_target_dir" ;;
esac
export CARGO_TARGET_DIR="$fuzz_target_dir"
# cargo fuzz needs nightly-only flags (sanitizers); the stable toolchain
# accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# New inputs go to a scratch corpus; the committed seeds stay as they are.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$PWD"

for crate in iscsi-target vtl; do
  cd "$root/$crate/fuzz"
  cargo fuzz build
  for target in $(cargo fuzz list); do
    echo "fuzz-smoke: $crate/$target for ${FUZZ_SECONDS}s"
    mkdir -p "$work/$crate/$target"
    cargo fuzz run "$target" "$work/$crate/$target" "corpus/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
  done
done
echo "fuzz-smoke: no crashes"
