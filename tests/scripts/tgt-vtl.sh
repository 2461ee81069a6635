#!/usr/bin/env bash
# Debian tgt's virtual tape library on loopback, laid out like sgw's: the
# changer and each drive are separate targets (tgt keeps LUN 0 for its
# controller, so the devices are at LUN 1).
#
#   tests/scripts/tgt-vtl.sh up DIR      start tgtd, write DIR/vtl.env, print it
#   tests/scripts/tgt-vtl.sh down DIR    delete the targets, stop tgtd (by PID)
#
# Env for `up`: NDRIVES (4), TAPE_SIZE in MB (4096, thin), EXTRA_TAPES (a
# list of "BARCODE:SIZE_MB:TYPE", TYPE data|worm, put in slots after the
# TAPEnnL5 ones), CN and PORT (free ones picked when unset).
# DIR/vtl.env: TGT_PID TGT_CN PORTAL CHANGER_IQN DRIVE_IQNS (space-separated)
# LUN=1, SLOTS, BARCODES.  Storage slots 1000.., drives 500.., mail slots
# 700..703, picker 100.
set -euo pipefail
op=${1:?up|down}
DIR=${2:?state dir}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_down() { # pid: bounded wait for exit
    local pid=$1 i
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    return 1
}

if [ "$op" = down ]; then
    [ -f "$DIR/vtl.env" ] || exit 0
    # shellcheck disable=SC1091
    . "$DIR/vtl.env"
    T="tgtadm -C $TGT_CN --lld iscsi"
    if kill -0 "$TGT_PID" 2>/dev/null; then
        for tid in $TIDS; do $T --op delete --mode target --tid "$tid" --force >/dev/null 2>&1 || true; done
        tgtadm -C "$TGT_CN" --op delete --mode system >/dev/null 2>&1 || true
        wait_down "$TGT_PID" || { kill "$TGT_PID" 2>/dev/null || true; wait_down "$TGT_PID" || kill -9 "$TGT_PID" 2>/dev/null || true; }
    fi
    rm -f "$DIR/vtl.env"
    exit 0
fi

[ "$op" = up ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
NDRIVES=${NDRIVES:-4}
NTAPES=${NTAPES:-$NDRIVES}
TAPE_SIZE=${TAPE_SIZE:-4096}
EXTRA_TAPES=${EXTRA_TAPES:-}
if [ -z "${CN:-}" ]; then
    for CN in $(seq 40 99); do [ -e /var/run/tgtd/socket.$CN ] || break; done
fi
PORT=${PORT:-$(free_port)}
IQN=iqn.2026-01.test.sgw-tgt-vtl.p$PORT
MEDIA=$DIR/media
rm -rf "$MEDIA"; mkdir -p "$MEDIA"

tgtd -f -C "$CN" --iscsi portal=127.0.0.1:$PORT >"$DIR/tgtd.log" 2>&1 &
TGT_PID=$!
ok=
for _ in $(seq 100); do
    if tgtadm -C "$CN" --op show --mode system >/dev/null 2>&1; then ok=1; break; fi
    kill -0 $TGT_PID 2>/dev/null || break
    sleep 0.05
done
[ -n "$ok" ] || { echo "tgt-vtl: tgtd did not come up (see $DIR/tgtd.log)" >&2; kill $TGT_PID 2>/dev/null || true; exit 1; }

T="tgtadm -C $CN --lld iscsi"
BARCODES=()
SIZES=()
TYPES=()
for i in $(seq 1 "$NTAPES"); do BARCODES+=("$(printf 'TGT%03dL5' "$i")"); SIZES+=("$TAPE_SIZE"); TYPES+=(data); done
for x in $EXTRA_TAPES; do
    IFS=: read -r b s t <<<"$x"; BARCODES+=("$b"); SIZES+=("$s"); TYPES+=("${t:-data}")
done
for i in "${!BARCODES[@]}"; do
    tgtimg --op new --device-type tape --barcode "${BARCODES[$i]}" --size "${SIZES[$i]}" \
        --type "${TYPES[$i]}" --file "$MEDIA/${BARCODES[$i]}" --thin-provisioning >/dev/null
done
dd if=/dev/zero of="$MEDIA/smc" bs=1k count=1 2>/dev/null

TIDS=1
$T --op new --mode target --tid 1 -T "$IQN:changer"
DRIVE_IQNS=
for i in $(seq 1 "$NDRIVES"); do
    tid=$((i + 1)); TIDS="$TIDS $tid"
    $T --op new --mode target --tid $tid -T "$IQN:drive$((i - 1))"
    DRIVE_IQNS="$DRIVE_IQNS $IQN:drive$((i - 1))"
    tgtimg --op new --device-type tape --barcode "NOTAPE$i" --size 1 --type clean --file "$MEDIA/notape$i" >/dev/null
    $T --mode logicalunit --op new --tid $tid --lun 1 -b "$MEDIA/notape$i" --device-type tape --bstype ssc
    $T --mode logicalunit --op update --tid $tid --lun 1 --params vendor_id=HP,product_id="Ultrium 5-SCSI",product_rev=0001,scsi_sn=TGTDRV$i,removable=1
    $T --mode logicalunit --op update --tid $tid --lun 1 --params online=0
done
C="$T --mode logicalunit --op update --tid 1 --lun 1 --params"
$T --mode logicalunit --op new --tid 1 --lun 1 -b "$MEDIA/smc" --device-type changer
$C vendor_id=STK,product_id=L700,product_rev=0001,scsi_sn=TGTCHG1,removable=1
$C media_home="$MEDIA"
$C element_type=1,start_address=100,quantity=1
$C element_type=4,start_address=500,quantity="$NDRIVES"
for i in $(seq 1 "$NDRIVES"); do $C element_type=4,address=$((499 + i)),tid=$((i + 1)),lun=1; done
$C element_type=3,start_address=700,quantity=4
NSLOTS=$((${#BARCODES[@]} + 4))
$C element_type=2,start_address=1000,quantity=$NSLOTS
for i in "${!BARCODES[@]}"; do $C element_type=2,address=$((1000 + i)),barcode="${BARCODES[$i]}",sides=1; done
for tid in $TIDS; do $T --op bind --mode target --tid $tid -I ALL; done

cat >"$DIR/vtl.env" <<EOF
TGT_PID=$TGT_PID
TGT_CN=$CN
TIDS="$TIDS"
PORTAL=127.0.0.1:$PORT
CHANGER_IQN=$IQN:changer
DRIVE_IQNS="${DRIVE_IQNS# }"
LUN=1
BARCODES="${BARCODES[*]}"
MEDIA=$MEDIA
EOF
cat "$DIR/vtl.env"
