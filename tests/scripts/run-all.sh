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
export SGW_REQUIRE_S3_PEERS=1

# Every parser under cargo fuzz, briefly (FUZZ_SECONDS per target).
tests/scripts/fuzz-smoke.sh

# One build for everything: `cargo test` also builds the sgw binary (the
# gateway package has integration tests), and the end-to-end tests in
# tests/ run that release binary.
export SGW_BIN="$CARGO_TARGET_DIR/release/sgw"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace --no-fail-fast -- --test-threads=2 2>&1 | tee "$log" || status=$?

# The appliance image: built (skipped when its inputs are those of the
# cached build in ~/.cache/sgw-appliance/out), booted under qemu (TCG) and
# taken through activation, iSCSI I/O, a reboot and a signed update. CI
# boots the qcow2; `tests/scripts/appliance-boot.sh all` boots every format.
if timeout 1800 tests/scripts/appliance-boot.sh qcow2 >"$log.appliance" 2>&1; then
  appliance_line="appliance boot: qcow2 PASS"
else
  appliance_line="appliance boot: qcow2 FAIL"
  status=1
  echo "=== the appliance boot test failed; its last lines:"
  tail -n 60 "$log.appliance"
fi
sed -n '/^== timings/,$p' "$log.appliance"
rm -f "$log.appliance"

# A real Linux kernel initiator: the guest lab's disk-openiscsi and
# tape-openiscsi scenarios (open-iscsi, ext4 and fio; st, ch, mtx, mt, tar
# and Bacula's btape), strict, against a scratch sgw each. The lab lives
# beside the repository (../shared/guestlab) or where GUESTLAB says; its
# guest image is built once (Debian packages, about 3 minutes) and kept in
# ~/.cache/guestlab between runs on the same machine.
lab_dir=${GUESTLAB:-../shared/guestlab}
if [ -x "$lab_dir/run.sh" ]; then
  lab_line="guest lab:"
  for scenario in disk tape; do
    lab_log="$log.guestlab-$scenario"
    if LAB_QUIET=1 timeout 1800 "tests/scripts/guestlab-$scenario.sh" >"$lab_log" 2>&1; then
      lab_line="$lab_line $scenario-openiscsi PASS"
    else
      lab_line="$lab_line $scenario-openiscsi FAIL"
      status=1
      echo "=== guest lab $scenario-openiscsi failed; its last lines:"
      tail -n 80 "$lab_log"
    fi
    grep -E '^(PASS|FAIL) ' "$lab_log" | tail -n 1 || true
    rm -f "$lab_log"
  done
else
  lab_line="guest lab: SKIPPED (none at $lab_dir; set GUESTLAB to run the kernel-initiator scenarios)"
fi

# One closing line over every test binary (cargo prints one per binary,
# and the last ones are crates without tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
echo "$appliance_line"
echo "$lab_line"
exit "$status"
