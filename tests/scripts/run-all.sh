#!/usr/bin/env bash
# Runs every test of the project, installing what the tests need first.
# Usage: tests/scripts/run-all.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."

tests/scripts/install-deps.sh

# Reuse a build directory outside the clone when there is one, so CI and
# repeated runs do not rebuild the dependency tree.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
# Tests must find their peers: a missing tool is a failure, not a skip.
export SGW_REQUIRE_PEERS=1

# One profile for everything: the end-to-end tests run the release daemon.
cargo build --release --workspace --bins
export SGW_BIN="$CARGO_TARGET_DIR/release/sgw"
cargo test --release --workspace -- --test-threads=2
