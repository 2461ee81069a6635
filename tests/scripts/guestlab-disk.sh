#!/usr/bin/env bash
# Runs the guest lab's disk-openiscsi scenario (a Linux guest's kernel
# initiator: open-iscsi login, mkfs.ext4, copy, e2fsck, fio verify) against
# a volume of a scratch sgw. Needs ../shared/guestlab (or GUESTLAB=DIR) and
# about 10 minutes the first time (it builds the guest image).
# Usage: tests/scripts/guestlab-disk.sh [VOLUME_SIZE [KIND [CACHE_SIZE]]]
#   KIND: cached (default; the primary copy in the embedded store) or local.
#   CACHE_SIZE: the gateway's cache (default 128MiB: smaller than what the
#   scenario writes, so it runs over uploads, evictions and cloud reads).
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${GUESTLAB:-../shared/guestlab}
[ -x "$LAB/run.sh" ] || { echo "guestlab not found at $LAB (set GUESTLAB)" >&2; exit 1; }
SIZE=${1:-2GiB}
KIND=${2:-cached}
CACHE=${3:-128MiB}

# The guest runs under qemu-system-x86_64 of the same Debian release as the
# qemu-utils the tests install.
if ! command -v qemu-system-x86_64 >/dev/null; then
  qver=$(apt-cache show qemu-block-extra | awk '/^Version:/ {print $2; exit}')
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "qemu-system-x86=$qver" >/dev/null
fi
"$LAB/build.sh"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p gateway --bin sgw
SGW="$CARGO_TARGET_DIR/release/sgw"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ISCSI=$(port); API=$(port)
DATA=$(mktemp -d)
"$SGW" serve --data-dir "$DATA" --iscsi-listen "127.0.0.1:$ISCSI" --api-listen "127.0.0.1:$API" \
  --cache-size "$CACHE" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 100); do
  "$SGW" --api "http://127.0.0.1:$API" volume list >/dev/null 2>&1 && break
  sleep 0.1
done
"$SGW" --api "http://127.0.0.1:$API" volume create lab --size "$SIZE" --kind "$KIND"
"$LAB/run.sh" "127.0.0.1:$ISCSI" iqn.2026-11.org.sgw:volume:lab disk-openiscsi | tee "$DATA.run"
curl -s "http://127.0.0.1:$API/metrics" | grep -E '^sgw_volume_(write|read)_bytes_total|^sgw_volume_cloud_chunk_reads_total|^cache_evictions_total' || true
tail -1 "$DATA.run" | grep -q '^PASS'
