#!/usr/bin/env bash
# How long iSCSI initiators are cut off while an update package replaces
# the gateway: `sgw update apply` (signature, manifest, the binary put in
# place), then the restart systemd does (SIGTERM, which commits final
# recovery points of changed volumes, then a start on the same ports).
# Measured from SIGTERM to the first 4 KiB read that qemu-io completes
# against the restarted portal, polling every 0.1 s, for
#   idle:  a cached volume with nothing left to upload;
#   dirty: the same just after DIRTY_MIB MiB of writes (the stop waits for
#          their upload, up to shutdown_timeout_secs).
# Prints each round and the medians, next to open-iscsi's default
# node.session.timeo.replacement_timeout (120 s): the I/O initiators queue
# meanwhile is retried, not failed, when the outage is shorter.
#
# Usage: benches/scripts/update-downtime.sh   (ROUNDS=3 DIRTY_MIB=256)
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=update-downtime
die() { echo "$NAME: $*" >&2; exit 1; }
log() { echo "$NAME: $*" >&2; }
# shellcheck source=benches/scripts/bench-lib.sh
source benches/scripts/bench-lib.sh
ROUNDS=${ROUNDS:-3}
DIRTY_MIB=${DIRTY_MIB:-256}
need_qemu_iscsi
need qemu-io "apt-get install -y qemu-utils"
resolve_sgw_bin
WORK=$(mktemp -d /tmp/sgw-update-downtime.XXXXXX)
trap 'stop_sgw; rm -rf "$WORK"' EXIT
prepare_sgw

"$SGW" update keygen --out "$WORK/release.key" > "$WORK/release.pub"
strip --strip-debug -o "$WORK/sgw-release" "$SGW" 2>/dev/null || cp "$SGW" "$WORK/sgw-release"
"$SGW" update pack --key "$WORK/release.key" --binary "$WORK/sgw-release" --out "$WORK/update.tar" > /dev/null

start_sgw
iqn=$("$SGW" --api "$SGW_API" volume create upd --size 1GiB --kind cached | sed -n 's/.*, target \([^ ]*\) LUN.*/\1/p')
[ -n "$iqn" ] || die "cannot create the volume (see $WORK/sgw.log)"
url="iscsi://127.0.0.1:$SGW_ISCSI_PORT/$iqn/0"
ports=("$SGW_ISCSI_PORT" "$SGW_API_PORT" "$SGW_HTTPS_PORT")

restart_same_ports() {
    stop_sgw
    "$SGW" serve --iscsi-access open --data-dir "$WORK/sgw-data" \
        --iscsi-listen "127.0.0.1:${ports[0]}" --api-listen "127.0.0.1:${ports[1]}" \
        --https-listen "127.0.0.1:${ports[2]}" >>"$WORK/sgw.log" 2>&1 &
    SGW_PID=$!
}

# one_round KIND: sets OUTAGE to the outage in seconds (not in $(...):
# SGW_PID must stick).
one_round() {
    local kind=$1 t0 t1
    if [ "$kind" = dirty ]; then
        timeout 300 qemu-io -f raw -c "write -P 0x$(printf %02x $((RANDOM % 200 + 16))) 0 ${DIRTY_MIB}m" "$url" > /dev/null \
            || die "the dirty writes failed"
    fi
    # (Idle needs no wait: each restart's stop uploaded everything first.)
    cp "$SGW" "$WORK/target-sgw"
    "$SGW" update apply "$WORK/update.tar.keep" --public-key "$WORK/release.pub" --target "$WORK/target-sgw" > /dev/null
    t0=$(date +%s.%N)
    restart_same_ports
    for _ in $(seq 3000); do
        if timeout 10 qemu-io -f raw -c 'read 0 4k' "$url" > /dev/null 2>&1; then
            t1=$(date +%s.%N)
            OUTAGE=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
            return 0
        fi
        sleep 0.1
    done
    die "the portal did not come back within 300 s"
}

declare -A results=([idle]="" [dirty]="")
for r in $(seq "$ROUNDS"); do
    for kind in idle dirty; do
        cp "$WORK/update.tar" "$WORK/update.tar.keep"
        one_round "$kind"
        results[$kind]+="$OUTAGE "
        echo "round $r $kind: iSCSI down ${OUTAGE} s"
    done
done
for kind in idle dirty; do
    echo "median $kind: $(median <<<"${results[$kind]}" | awk '{printf "%.2f", $1}') s (open-iscsi replacement_timeout: 120 s)"
done
