#!/usr/bin/env bash
# Tape throughput, sgw's tape library side by side with Debian tgt's VTL, on
# loopback.  For 256 KiB and 1 MiB variable records: write then read, on one
# drive and on four drives in parallel (one command outstanding per drive),
# alternating the targets A B A B for ROUNDS rounds; prints medians, sgw/tgt
# ratios per case and sgw's 4-drive/1-drive scaling.
#
#   SGW_BIN=target/release/sgw benches/scripts/tape-vs-tgt.sh
#   benches/scripts/tape-vs-tgt.sh              # SGW_BIN unset: tgt only
#
# Env: BENCH_BYTES (bytes per run, split over the drives; 2 GiB), ROUNDS (3),
# TAPE_MB (tape size, 8192), WORK (scratch dir).  Needs tgt, libiscsi7,
# python3.  The client (tape_bench.py, ctypes over libiscsi) uses ~20% of a
# core at 600 MB/s: it is not the bottleneck (it prints its CPU use).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH_BYTES=${BENCH_BYTES:-$((2 << 30))}
ROUNDS=${ROUNDS:-3}
TAPE_MB=${TAPE_MB:-8192}
WORK=${WORK:-$(mktemp -d /tmp/tape-vs-tgt.XXXXXX)}
mkdir -p "$WORK"
RES=$WORK/results.jsonl
: >"$RES"
PY=${PYTHON:-python3}
B="$PY $HERE/tape_bench.py"
SGW_PID=

cleanup() {
    set +e
    if [ -n "$SGW_PID" ] && kill -0 "$SGW_PID" 2>/dev/null; then
        kill "$SGW_PID"
        for _ in $(seq 100); do kill -0 "$SGW_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SGW_PID" 2>/dev/null
    fi
    "$ROOT/tests/scripts/tgt-vtl.sh" down "$WORK/tgt"
    rm -f "$WORK/sgw-activate.json"
}
trap cleanup EXIT

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- tgt
NDRIVES=4 NTAPES=4 TAPE_SIZE=$TAPE_MB "$ROOT/tests/scripts/tgt-vtl.sh" up "$WORK/tgt" >/dev/null
# shellcheck disable=SC1091
. "$WORK/tgt/vtl.env"
TGT_PORTAL=$PORTAL TGT_CHANGER=$CHANGER_IQN TGT_LUN=1
TGT_DRIVES=$(echo "$DRIVE_IQNS" | tr ' ' ,)
$B load --portal "$TGT_PORTAL" --changer "$TGT_CHANGER" --drives "$TGT_DRIVES" --lun $TGT_LUN --lenient
echo "tgt: tgtd pid $TGT_PID on $TGT_PORTAL"

# ---------------------------------------------------------------- sgw
# Four tapes (thin, so the AWS minimum of 100 GiB costs nothing; they land
# in import/export slots), and the changer and drive IQNs from
# `sgw tape library --json` (every device at LUN 0). Sets SGW_CHANGER and
# SGW_DRIVES (comma list).
sgw_setup_tapes() {
    local i
    for i in 1 2 3 4; do
        "$SGW_BIN" --api "unix:$SGW_DATA/sgw.sock" tape create --barcode "$(printf 'SGW%03dL5' "$i")" --size 200GiB >/dev/null
    done
    "$SGW_BIN" --api "unix:$SGW_DATA/sgw.sock" tape library --json >"$WORK/sgw-library.json"
    SGW_CHANGER=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["changer"]["iqn"])' "$WORK/sgw-library.json")
    SGW_DRIVES=$($PY -c 'import json,sys; print(",".join(d["iqn"] for d in json.load(open(sys.argv[1]))["drives"][:4]))' "$WORK/sgw-library.json")
}

TARGETS="tgt"
if [ -n "${SGW_BIN:-}" ]; then
    SGW_DATA=$WORK/sgw-data; mkdir -p "$SGW_DATA"
    SGW_PORT=$(free_port); SGW_API=127.0.0.1:$(free_port); SGW_HTTPS=127.0.0.1:$(free_port)
    # A fresh data directory is unactivated: claim it at start with a random
    # admin password (unused: the CLI goes through the owner-only socket).
    (umask 077; printf '{"gateway_name":"bench","admin_user":"admin","admin_password":"%s"}\n' \
        "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >"$WORK/sgw-activate.json")
    # --iscsi-access open: the benchmark's initiators use their own names.
    "$SGW_BIN" serve --iscsi-access open --data-dir "$SGW_DATA" --iscsi-listen "127.0.0.1:$SGW_PORT" --api-listen "$SGW_API" \
        --https-listen "$SGW_HTTPS" --activate-from "$WORK/sgw-activate.json" >"$WORK/sgw.log" 2>&1 &
    SGW_PID=$!
    up=
    for _ in $(seq 300); do
        # Health answers as soon as sgw listens; the library is up at "ready": true.
        if $PY -c 'import json,sys,urllib.request as u; sys.exit(not json.load(u.urlopen("http://%s/api/v1/health" % sys.argv[1], timeout=2))["ready"])' "$SGW_API" 2>/dev/null; then up=1; break; fi
        kill -0 "$SGW_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$up" ] || { echo "sgw did not start (see $WORK/sgw.log)" >&2; exit 1; }
    sgw_setup_tapes
    SGW_PORTAL=127.0.0.1:$SGW_PORT SGW_LUN=0
    $B load --portal "$SGW_PORTAL" --changer "$SGW_CHANGER" --drives "$SGW_DRIVES" --lun $SGW_LUN
    TARGETS="sgw tgt"
    echo "sgw: pid $SGW_PID on $SGW_PORTAL"
fi

run_case() { # target bs ndrives op
    local t=$1 bs=$2 n=$3 op=$4 portal drives lun
    if [ "$t" = tgt ]; then portal=$TGT_PORTAL drives=$TGT_DRIVES lun=$TGT_LUN
    else portal=$SGW_PORTAL drives=$SGW_DRIVES lun=$SGW_LUN; fi
    drives=$(echo "$drives" | cut -d, -f1-"$n")
    local line
    line=$(timeout 900 $B run --portal "$portal" --drives "$drives" --lun "$lun" --bs "$bs" --bytes "$BENCH_BYTES" --op "$op")
    echo "$line" | $PY -c 'import json,sys; d=json.loads(sys.stdin.read()); d["target"]=sys.argv[1]; print(json.dumps(d))' "$t" >>"$RES"
    printf '  %-3s %-5s bs=%-7s drives=%d  %8.1f MB/s  (client cpu %s%%)\n' "$t" "$op" "$bs" "$n" \
        "$(echo "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["MBps"])')" \
        "$(echo "$line" | $PY -c 'import json,sys; print(json.load(sys.stdin)["client_cpu_pct"])')"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round"
    for bs in 262144 1048576; do
        for n in 1 4; do
            for t in $TARGETS; do   # A B A B: write then read on each target in turn
                run_case "$t" $bs $n write
                run_case "$t" $bs $n read
            done
        done
    done
done

$PY - "$RES" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for r in rows:
    med.setdefault((r["target"], r["op"], r["bs"], r["drives"]), []).append(r["MBps"])
med = {k: statistics.median(v) for k, v in med.items()}
print("\nmedians (MB/s):")
print("%-6s %-8s %-7s %9s %9s %8s" % ("op", "bs", "drives", "sgw", "tgt", "sgw/tgt"))
for op in ("write", "read"):
    for bs in (262144, 1048576):
        for n in (1, 4):
            s, t = med.get(("sgw", op, bs, n)), med.get(("tgt", op, bs, n))
            print("%-6s %-8s %-7d %9s %9s %8s" % (op, "%dK" % (bs // 1024), n, "%.1f" % s if s else "-",
                  "%.1f" % t if t else "-", "%.2f" % (s / t) if s and t else "-"))
for tg in ("sgw", "tgt"):
    for op in ("write", "read"):
        for bs in (262144, 1048576):
            a, b = med.get((tg, op, bs, 1)), med.get((tg, op, bs, 4))
            if a and b:
                print("%s 4-drive/1-drive scaling, %s %dK: %.2f" % (tg, op, bs // 1024, b / a))
EOF
echo "results: $RES"
