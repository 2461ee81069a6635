#!/usr/bin/env bash
# sgw vs Debian's tgt: the same four `qemu-img bench` runs against both
# targets on loopback, alternating sgw/tgt run by run for ROUNDS rounds
# (A B, then B A in even rounds to cancel position effects), then
# the median throughput per target and the sgw/tgt ratio of each.
#
# Usage: benches/scripts/vs-tgt.sh            (from anywhere in the clone)
#
# Environment:
#   SGW_BIN      the sgw binary (default ${CARGO_TARGET_DIR:-target}/release/sgw,
#                built with `cargo build --release -p gateway --bin sgw` if missing)
#   ROUNDS       rounds of the four runs per target (default 3)
#   RUN_TIMEOUT  seconds one qemu-img run may take (default 300)
#   BENCH_DIR    where the temporary directory goes (default ${TMPDIR:-/tmp});
#                both 1 GiB backing files live there, on the same file system
#   BENCH_SYNC   1 (default): `sync` before each timed run so one target's
#                write-back does not land in the other's timing
#
# Both targets use file-backed 1 GiB LUNs: a sgw volume (LUN 0) and a tgt
# LUN with --bstype rdwr (LUN 1). Both are pre-filled with one sequential
# write pass, so reads hit allocated blocks on both. Only 127.0.0.1 is bound.
# The table also gives each target's CPU time (user + system, all its
# threads) per GiB moved, median of the rounds: on a shared machine it
# moves less than throughput. For the write runs it includes the flush
# qemu-img sends when it closes the LUN (fdatasync write-back), which
# varies from run to run. The last line is
#   ratios: seqwrite=X seqread=Y randwrite4k=Z read4k=W
# (the 4 KiB runs are qemu-img bench's default sequential pattern; the names
# are kept for comparison with earlier reports).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
BENCH_SYNC="${BENCH_SYNC:-1}"
SIZE_BYTES=$((1024 * 1024 * 1024))

die() { echo "vs-tgt: error: $*" >&2; exit 1; }
log() { echo "vs-tgt: $*" >&2; }
# The helpers shared with console-overhead.sh (listed at the top of the file).
# shellcheck source=benches/scripts/bench-lib.sh
. benches/scripts/bench-lib.sh

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "RUN_TIMEOUT must be a positive integer (got '$RUN_TIMEOUT')"

# --- prerequisites ----------------------------------------------------------
need tgtd "install Debian's tgt (apt-get install -y tgt)"
need tgtadm "install Debian's tgt (apt-get install -y tgt)"
need_qemu_iscsi
resolve_sgw_bin

# --- state and cleanup -------------------------------------------------------
WORK=""
TGT_PID=""
TGT_CTL=""
TGT_TID=1

stop_tgt() {
    [[ -n "$TGT_PID" ]] || return 0
    if kill -0 "$TGT_PID" 2>/dev/null; then
        # tgtd ignores SIGTERM while it has targets (see TESTING.md).
        timeout 10 tgtadm -C "$TGT_CTL" --lld iscsi --op delete --mode target --tid "$TGT_TID" --force \
            >/dev/null 2>&1 || true
        timeout 10 tgtadm -C "$TGT_CTL" --op delete --mode system >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do
            kill -0 "$TGT_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    # Still up: SIGTERM, then SIGKILL after 3 s (quietly).
    stop_pid "$TGT_PID" 30 ""
    if ! kill -0 "$TGT_PID" 2>/dev/null; then
        # tgtd leaves its control socket and lock file behind.
        rm -f -- "/var/run/tgtd/socket.$TGT_CTL" "/var/run/tgtd/socket.$TGT_CTL.lock"
    fi
    TGT_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_sgw
    stop_tgt
    if [[ $rc -ne 0 && -n "$WORK" ]]; then
        for f in "$WORK"/sgw.log "$WORK"/tgtd.log; do
            if [[ -s "$f" ]]; then
                log "last lines of $(basename "$f"):"
                tail -n 20 "$f" >&2 || true
            fi
        done
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/sgw-vs-tgt.XXXXXX")"
# A private copy of sgw ($SGW) and its activation file (the admin password
# is never used: the CLI goes through the owner-only socket $SGW_API).
prepare_sgw

# --- tgt ---------------------------------------------------------------------
start_tgt() {
    local attempt n
    truncate -s "$SIZE_BYTES" "$WORK/tgt.img"
    for attempt in $(seq 1 10); do
        n=$((100 + RANDOM % 800))
        # Someone else's tgtd answers on this control socket: pick another.
        if timeout 5 tgtadm -C "$n" --op show --mode system >/dev/null 2>&1; then
            continue
        fi
        TGT_CTL="$n"
        free_port
        TGT_PORT="$FREE_PORT"
        tgtd -f -C "$TGT_CTL" --iscsi "portal=127.0.0.1:$TGT_PORT" >>"$WORK/tgtd.log" 2>&1 &
        TGT_PID=$!
        local up=0
        for _ in $(seq 1 100); do
            kill -0 "$TGT_PID" 2>/dev/null || break
            if timeout 5 tgtadm -C "$TGT_CTL" --op show --mode system >/dev/null 2>&1; then
                up=1
                break
            fi
            sleep 0.1
        done
        if [[ $up -eq 1 ]] && kill -0 "$TGT_PID" 2>/dev/null; then
            tgtadm -C "$TGT_CTL" --lld iscsi --op new --mode target --tid "$TGT_TID" -T iqn.2026-11.bench:tgt
            tgtadm -C "$TGT_CTL" --lld iscsi --op new --mode logicalunit --tid "$TGT_TID" --lun 1 \
                --bstype rdwr -b "$WORK/tgt.img"
            tgtadm -C "$TGT_CTL" --lld iscsi --op bind --mode target --tid "$TGT_TID" -I ALL
            TGT_URL="iscsi://127.0.0.1:$TGT_PORT/iqn.2026-11.bench:tgt/1"
            return 0
        fi
        log "tgtd did not come up on control socket $TGT_CTL (attempt $attempt)"
        stop_tgt
    done
    die "tgtd did not start (see the log above)"
}

# A peer is up when qemu-img opens the LUN and sees 1 GiB.
check_peer() {
    local name=$1 url=$2 info size
    info="$(timeout 30 qemu-img info -f raw --output=json "$url" 2>&1)" \
        || die "$name: qemu-img info $url failed: $info"
    size="$(sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' <<<"$info" | head -n 1)"
    [[ "$size" == "$SIZE_BYTES" ]] || die "$name: LUN at $url has size '$size', expected $SIZE_BYTES"
    log "$name is up: $url (1 GiB)"
}

# --- benchmark ---------------------------------------------------------------
TESTS=(seqwrite seqread randwrite4k read4k)
declare -A LABEL=([seqwrite]="1M seq write d16" [seqread]="1M seq read d16"
    [randwrite4k]="4k write d32" [read4k]="4k read d32")
declare -A ARGS=([seqwrite]="-w -s 1M -d 16 -c 1024" [seqread]="-s 1M -d 16 -c 1024"
    [randwrite4k]="-w -s 4k -d 32 -c 40000" [read4k]="-s 4k -d 32 -c 40000")
declare -A BYTES=([seqwrite]=$((1024 * 1048576)) [seqread]=$((1024 * 1048576))
    [randwrite4k]=$((40000 * 4096)) [read4k]=$((40000 * 4096)))
declare -A OPS=([seqwrite]=1024 [seqread]=1024 [randwrite4k]=40000 [read4k]=40000)
declare -A RESULT=()
declare -A CPU=()

log "load before: $(uptime)"
start_sgw
"$SGW" --api "$SGW_API" volume create bench --size 1GiB --kind local >/dev/null \
    || die "sgw volume create failed"
SGW_URL="iscsi://127.0.0.1:$SGW_ISCSI_PORT/iqn.2026-11.org.sgw:volume:bench/0"
start_tgt
check_peer sgw "$SGW_URL"
check_peer tgt "$TGT_URL"

log "pre-filling both LUNs (one sequential 1 GiB write pass each)"
bench_once "$SGW_URL" "${ARGS[seqwrite]}" >/dev/null
bench_once "$TGT_URL" "${ARGS[seqwrite]}" >/dev/null
sync

for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds run sgw first, even rounds tgt first: back-to-back runs
    # showed a position effect of up to 20% on this machine.
    order="sgw tgt"
    [[ $((round % 2)) -eq 0 ]] && order="tgt sgw"
    for t in "${TESTS[@]}"; do
        for target in $order; do
            if [[ $target == sgw ]]; then url="$SGW_URL"; pid="$SGW_PID"; else url="$TGT_URL"; pid="$TGT_PID"; fi
            kill -0 "$pid" 2>/dev/null || die "$target (pid $pid) is no longer running"
            [[ "$BENCH_SYNC" == 1 ]] && sync
            c0="$(cpu_ticks "$pid")"
            secs="$(bench_once "$url" "${ARGS[$t]}")"
            c1="$(cpu_ticks "$pid")"
            mibs="$(awk -v b="${BYTES[$t]}" -v s="$secs" 'BEGIN { printf "%.2f", b / s / 1048576 }')"
            # Target CPU seconds per GiB moved: less sensitive to other load.
            cpu="$(awk -v c=$((c1 - c0)) -v hz="$TICKS_PER_SEC" -v b="${BYTES[$t]}" \
                'BEGIN { printf "%.3f", c / hz / (b / 1073741824) }')"
            RESULT[$target,$t]+="$mibs "
            CPU[$target,$t]+="$cpu "
            log "round $round/$ROUNDS  $target  ${LABEL[$t]}: ${secs}s  ${mibs} MiB/s  target CPU ${cpu} s/GiB"
        done
    done
done
log "load after: $(uptime)"

# --- report ------------------------------------------------------------------
printf '\n%-18s %10s %10s %9s %9s %8s %14s\n' "test (median of $ROUNDS)" "sgw MiB/s" "tgt MiB/s" \
    "sgw IOPS" "tgt IOPS" "sgw/tgt" "CPU s/GiB s|t"
ratios="ratios:"
for t in "${TESTS[@]}"; do
    s="$(median <<<"${RESULT[sgw,$t]}")"
    g="$(median <<<"${RESULT[tgt,$t]}")"
    ratio="$(awk -v s="$s" -v g="$g" 'BEGIN { printf "%.2f", s / g }')"
    per_op=$(( ${BYTES[$t]} / ${OPS[$t]} ))
    cs="$(median <<<"${CPU[sgw,$t]}")"
    cg="$(median <<<"${CPU[tgt,$t]}")"
    printf '%-18s %10.1f %10.1f %9.0f %9.0f %8s %14s\n' "${LABEL[$t]}" "$s" "$g" \
        "$(awk -v m="$s" -v p="$per_op" 'BEGIN { print m * 1048576 / p }')" \
        "$(awk -v m="$g" -v p="$per_op" 'BEGIN { print m * 1048576 / p }')" "$ratio" \
        "$(printf '%.2f|%.2f' "$cs" "$cg")"
    ratios+=" $t=$ratio"
done
echo "runs (MiB/s): $(for t in "${TESTS[@]}"; do printf '%s sgw[%s] tgt[%s]; ' "$t" "${RESULT[sgw,$t]% }" "${RESULT[tgt,$t]% }"; done)"
echo "load: $(uptime | sed 's/.*load average/load average/')"
echo "$ratios"
