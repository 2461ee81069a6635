#!/usr/bin/env bash
# Runs the guest lab's disk-openiscsi scenario (a Linux guest's kernel
# initiator: open-iscsi login, mkfs.ext4, copy, e2fsck, fio verify) against
# a volume of a scratch sgw, with LAB_STRICT=1. Needs ../shared/guestlab
# (or GUESTLAB=DIR) and about 10 minutes the first time (it builds the
# guest image).
# Usage: tests/scripts/guestlab-disk.sh [VOLUME_SIZE [KIND [CACHE_SIZE]]]
#   KIND: cached (default; the primary copy in the embedded store) or local.
#   CACHE_SIZE: the gateway's cache (default 128MiB: smaller than what the
#   scenario writes, so it runs over uploads, evictions and cloud reads).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-2GiB}
KIND=${2:-cached}
CACHE=${3:-128MiB}
SERVE_ARGS=(--cache-size "$CACHE")
. tests/scripts/guestlab-common.sh
api volume create lab --size "$SIZE" --kind "$KIND"
LAB_STRICT=1 "$LAB/run.sh" "127.0.0.1:$ISCSI" iqn.2026-11.org.sgw:volume:lab disk-openiscsi | tee "$DATA.run"
curl -s "http://127.0.0.1:$API/metrics" | grep -E '^sgw_volume_(write|read)_bytes_total|^sgw_volume_cloud_chunk_reads_total|^cache_evictions_total' || true
tail -1 "$DATA.run" | grep -q '^PASS'
