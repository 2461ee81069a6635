#!/usr/bin/env bash
# Does the web console slow the data path? One sgw with a VOLUME_GIB local
# volume, the same two `qemu-img bench` runs as vs-tgt.sh (1 MiB sequential
# writes QD16, 4 KiB reads QD32), alternating "quiet" runs (nobody looks at
# the console) and "polled" runs (a logged-in client fetches /dashboard and
# /metrics every POLL_INTERVAL seconds for the whole run) for ROUNDS rounds
# (A B, then B A in even rounds to cancel position effects), then the
# median throughput of each and the polled/quiet ratio.
#
# The load is harsher than production on purpose: the gateway samples its
# metrics every CONSOLE_SAMPLE_SECS (default 1 s; production default 10 s)
# and the poller asks for the dashboard every POLL_INTERVAL (default 1 s,
# where htmx in a browser re-fetches it every console_sample_secs). The
# poller runs on the same machine, so its curl processes compete for CPU
# with qemu-img and sgw as well: the ratio bounds the overhead from above.
#
# Usage: benches/scripts/console-overhead.sh      (from anywhere in the clone)
#
# Environment:
#   SGW_BIN            the sgw binary (default ${CARGO_TARGET_DIR:-target}/release/sgw,
#                      built with `cargo build --release -p gateway --bin sgw` if missing)
#   ROUNDS             rounds of one quiet and one polled run (default 3)
#   POLL_INTERVAL      seconds between two polls of /dashboard + /metrics
#                      (default 1; decimals allowed, e.g. 0.5)
#   CONSOLE_SAMPLE_SECS  the gateway's console_sample_secs (default 1)
#   VOLUME_GIB         the local volume's size in GiB (default 1); a larger
#                      one allows longer runs, whose ratios noise moves less
#   SEQWRITE_COUNT     1 MiB writes per seqwrite run (default 1024, at most
#                      1024 per GiB of the volume)
#   READ4K_COUNT       4 KiB reads per read4k run (default 40000, at most
#                      262144 per GiB of the volume);
#                      smaller counts make a quick smoke test, e.g.
#                      ROUNDS=1 SEQWRITE_COUNT=256 READ4K_COUNT=10000
#   RUN_TIMEOUT        seconds one qemu-img run may take (default 300)
#   BENCH_DIR          where the temporary directory goes (default ${TMPDIR:-/tmp});
#                      the volume's backing file lives there
#   BENCH_SYNC         1 (default): `sync` before each timed run so one run's
#                      write-back does not land in the next run's timing
#
# The volume is pre-filled with one sequential write pass (always the
# whole volume, whatever SEQWRITE_COUNT says), so reads hit allocated
# blocks. Only 127.0.0.1 is bound. Every process this script starts (sgw,
# the poller) is stopped by its PID, and the temporary directory is removed,
# on success, failure or Ctrl-C. A polled run in which the poller fetched no
# dashboard (with the volume's chart in it) or no /metrics fails the script:
# a poller that silently failed would prove nothing.
#
# The table also gives sgw's CPU time (user + system, all its threads) per
# GiB moved, median of the rounds, quiet|polled: in polled runs it includes
# the console's own work. The last line is
#   ratios: seqwrite=X read4k=Y
# each polled/quiet median throughput; 0.97 or more is the acceptance bar
# (printed, not enforced: the exit status says only that the runs worked).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
POLL_INTERVAL="${POLL_INTERVAL:-1}"
CONSOLE_SAMPLE_SECS="${CONSOLE_SAMPLE_SECS:-1}"
SEQWRITE_COUNT="${SEQWRITE_COUNT:-1024}"
READ4K_COUNT="${READ4K_COUNT:-40000}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
BENCH_SYNC="${BENCH_SYNC:-1}"
VOLUME_GIB="${VOLUME_GIB:-1}"
[[ "$VOLUME_GIB" =~ ^[1-9][0-9]*$ && "$VOLUME_GIB" -le 64 ]] || { echo "VOLUME_GIB must be 1 to 64" >&2; exit 2; }
SIZE_BYTES=$((VOLUME_GIB * 1024 * 1024 * 1024))
ACCEPT_RATIO=0.97

die() { echo "console-overhead: error: $*" >&2; exit 1; }
log() { echo "console-overhead: $*" >&2; }
# The helpers shared with vs-tgt.sh (listed at the top of the file).
# shellcheck source=benches/scripts/bench-lib.sh
. benches/scripts/bench-lib.sh

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "RUN_TIMEOUT must be a positive integer (got '$RUN_TIMEOUT')"
[[ "$CONSOLE_SAMPLE_SECS" =~ ^[1-9][0-9]*$ ]] \
    || die "CONSOLE_SAMPLE_SECS must be a positive integer (got '$CONSOLE_SAMPLE_SECS')"
[[ "$SEQWRITE_COUNT" =~ ^[1-9][0-9]*$ && "$SEQWRITE_COUNT" -le $((1024 * VOLUME_GIB)) ]] \
    || die "SEQWRITE_COUNT must be an integer from 1 to $((1024 * VOLUME_GIB)) (got '$SEQWRITE_COUNT')"
[[ "$READ4K_COUNT" =~ ^[1-9][0-9]*$ && "$READ4K_COUNT" -le $((262144 * VOLUME_GIB)) ]] \
    || die "READ4K_COUNT must be an integer from 1 to $((262144 * VOLUME_GIB)) (got '$READ4K_COUNT')"
# A positive decimal number of seconds, at least 0.05 (no busy loop).
if ! [[ "$POLL_INTERVAL" =~ ^([0-9]+|[0-9]*\.[0-9]+)$ ]] \
    || ! awk -v p="$POLL_INTERVAL" 'BEGIN { exit !(p >= 0.05 && p <= 3600) }'; then
    die "POLL_INTERVAL must be a number of seconds from 0.05 to 3600 (got '$POLL_INTERVAL')"
fi

# --- prerequisites ----------------------------------------------------------
need_qemu_iscsi
resolve_sgw_bin

# --- state and cleanup -------------------------------------------------------
WORK=""
POLL_PID=""

# The poller finishes its current curl (at most 5 s) or sleep (at most
# POLL_INTERVAL) on SIGTERM and then leaves its loop, so no curl of it
# outlives it. It gets 5 s plus two intervals plus 5 s before SIGKILL.
stop_poller() {
    [[ -n "$POLL_PID" ]] || return 0
    local tries
    tries="$(awk -v p="$POLL_INTERVAL" 'BEGIN { printf "%d", (10 + 2 * p) * 10 + 1 }')"
    stop_pid "$POLL_PID" "$tries" "poller (pid $POLL_PID) did not stop on SIGTERM; killing it"
    POLL_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_poller
    stop_sgw
    if [[ $rc -ne 0 && -n "$WORK" && -s "$WORK/sgw.log" ]]; then
        log "last lines of sgw.log:"
        tail -n 20 "$WORK/sgw.log" >&2 || true
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/sgw-console.XXXXXX")"
# A private copy of sgw ($SGW) and its activation file, whose random admin
# password the console login below uses: it only ever sits in owner-only
# files (never on a command line), activate.json for sgw and login.json for
# curl's -d @file.
prepare_sgw "$WORK/login.json"
# Sample the metrics the dashboard charts more often than production does.
(umask 077 && printf 'console_sample_secs = %s\n' "$CONSOLE_SAMPLE_SECS" >"$WORK/sgw.toml") \
    || die "could not write the config file"
SGW_SERVE_ARGS=(--config "$WORK/sgw.toml")
COOKIES="$WORK/cookies.txt"

# sgw is up when qemu-img opens the LUN and sees its size.
check_lun() {
    local url=$1 info size
    info="$(timeout 30 qemu-img info -f raw --output=json "$url" 2>&1)" \
        || die "qemu-img info $url failed: $info"
    size="$(sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' <<<"$info" | head -n 1)"
    [[ "$size" == "$SIZE_BYTES" ]] || die "LUN at $url has size '$size', expected $SIZE_BYTES"
    log "sgw is up: $url ($VOLUME_GIB GiB)"
}

# --- console -----------------------------------------------------------------
# Logs in once: the session cookie lands in $COOKIES. Sessions expire after
# 30 idle minutes, far longer than a quiet run; an expired session would
# show as failed dashboard fetches (a redirect to /login), which fail the run.
console_login() {
    local out
    out="$(curl -sS --max-time 30 -c "$COOKIES" -H 'content-type: application/json' \
        -d @"$WORK/login.json" "http://127.0.0.1:$SGW_API_PORT/api/v1/login" 2>&1)" \
        || die "console login failed: $out"
    grep -q '"csrf"' <<<"$out" || die "console login refused: $out"
    grep -q 'sgw_session' "$COOKIES" || die "console login set no sgw_session cookie"
    log "logged in to the console"
}

# One authenticated GET; prints "HTTP-CODE SECONDS" (000 when curl failed)
# and leaves the body in $2.
fetch() {
    local path=$1 body=$2 out
    out="$(curl -sS --max-time 5 -b "$COOKIES" -o "$body" -w '%{http_code} %{time_total}' \
        "http://127.0.0.1:$SGW_API_PORT$path" 2>/dev/null)" || out="000 0"
    echo "$out"
}

# A dashboard fetch counts only if it is the real page with the volume's
# chart in it (not a redirect to /login, not an error page).
DASHBOARD_MARK='data-volume="bench"'

# The poller: runs in the background for one polled run, appending one
# line per fetch to $1: "dashboard ok SECS", "dashboard fail CODE SECS",
# "metrics ok SECS" or "metrics fail CODE SECS". SIGTERM ends it after the
# fetch or sleep under way. Its loop is bounded too: POLL_MAX polls cover
# two runs of RUN_TIMEOUT each plus the syncs before them, so it cannot
# outlive a script that lost track of it by much.
POLL_MAX="$(awk -v t="$RUN_TIMEOUT" -v p="$POLL_INTERVAL" 'BEGIN { printf "%d", (2 * t + 300) / p + 1 }')"
poller() {
    local out=$1 body=$2 stop=0 r
    trap - EXIT INT
    trap 'stop=1' TERM
    for _ in $(seq 1 "$POLL_MAX"); do
        r="$(fetch /dashboard "$body")"
        if [[ ${r%% *} == 200 ]] && grep -q "$DASHBOARD_MARK" "$body" 2>/dev/null; then
            echo "dashboard ok ${r#* }" >>"$out"
        else
            echo "dashboard fail $r" >>"$out"
        fi
        r="$(fetch /metrics "$body")"
        if [[ ${r%% *} == 200 && -s "$body" ]]; then
            echo "metrics ok ${r#* }" >>"$out"
        else
            echo "metrics fail $r" >>"$out"
        fi
        [[ $stop -eq 1 ]] && break
        # Sleeps a whole interval after the fetches (a few ms each), so the
        # period is POLL_INTERVAL plus the fetch time.
        sleep "$POLL_INTERVAL"
        [[ $stop -eq 1 ]] && break
    done
}

# Starts the poller and waits (bounded) for its first good dashboard, so the
# console load is on before the timed runs start.
start_poller() {
    local out=$1
    : >"$out"
    poller "$out" "$out.body" &
    POLL_PID=$!
    for _ in $(seq 1 100); do
        grep -q '^dashboard ok' "$out" 2>/dev/null && return 0
        kill -0 "$POLL_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "the poller fetched no dashboard within 10 s: $(tail -n 2 "$out" | tr '\n' ' ')"
}

# Counts lines of one kind in a poller's log.
count_lines() {
    local n
    n="$(grep -c "^$1" "$2" 2>/dev/null)" || true
    echo "${n:-0}"
}

# --- benchmark ---------------------------------------------------------------
# The seqwrite and read4k runs of vs-tgt.sh, same parameters (-c is a knob).
TESTS=(seqwrite read4k)
MODES=(quiet polled)
declare -A LABEL=([seqwrite]="1M seq write d16" [read4k]="4k read d32")
declare -A ARGS=([seqwrite]="-w -s 1M -d 16 -c $SEQWRITE_COUNT" [read4k]="-s 4k -d 32 -c $READ4K_COUNT")
declare -A BYTES=([seqwrite]=$((SEQWRITE_COUNT * 1048576)) [read4k]=$((READ4K_COUNT * 4096)))
declare -A OPS=([seqwrite]="$SEQWRITE_COUNT" [read4k]="$READ4K_COUNT")
declare -A RESULT=()
declare -A CPU=()
DASH_OK=0
DASH_FAIL=0
METRICS_OK=0
METRICS_FAIL=0
DASH_TIMES=""

log "load before: $(uptime)"
start_sgw
"$SGW" --api "$SGW_API" volume create bench --size "${VOLUME_GIB}GiB" --kind local >/dev/null \
    || die "sgw volume create failed"
SGW_URL="iscsi://127.0.0.1:$SGW_ISCSI_PORT/iqn.2026-11.org.sgw:volume:bench/0"
check_lun "$SGW_URL"

console_login
# One fetch up front: the dashboard must show the volume and say it samples
# every CONSOLE_SAMPLE_SECS (the config file took effect).
r="$(fetch /dashboard "$WORK/dashboard.html")"
[[ ${r%% *} == 200 ]] || die "GET /dashboard answered HTTP ${r%% *}"
grep -q "$DASHBOARD_MARK" "$WORK/dashboard.html" || die "the dashboard has no chart of volume bench"
grep -q "Sampled every $CONSOLE_SAMPLE_SECS s" "$WORK/dashboard.html" \
    || die "the dashboard does not sample every $CONSOLE_SAMPLE_SECS s: --config not applied?"
r="$(fetch /metrics "$WORK/metrics.txt")"
[[ ${r%% *} == 200 && -s "$WORK/metrics.txt" ]] || die "GET /metrics answered HTTP ${r%% *}"
log "console answers: /dashboard (sampled every $CONSOLE_SAMPLE_SECS s) and /metrics"

log "pre-filling the LUN (one sequential write pass, $VOLUME_GIB GiB)"
bench_once "$SGW_URL" "-w -s 1M -d 16 -c $((1024 * VOLUME_GIB))" >/dev/null
sync

for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds run quiet first, even rounds polled first (position effects).
    order="quiet polled"
    [[ $((round % 2)) -eq 0 ]] && order="polled quiet"
    for mode in $order; do
        kill -0 "$SGW_PID" 2>/dev/null || die "sgw (pid $SGW_PID) is no longer running"
        polls="$WORK/polls-$round.txt"
        [[ $mode == polled ]] && start_poller "$polls"
        for t in "${TESTS[@]}"; do
            [[ "$BENCH_SYNC" == 1 ]] && sync
            c0="$(cpu_ticks "$SGW_PID")"
            secs="$(bench_once "$SGW_URL" "${ARGS[$t]}")"
            c1="$(cpu_ticks "$SGW_PID")"
            mibs="$(awk -v b="${BYTES[$t]}" -v s="$secs" 'BEGIN { printf "%.2f", b / s / 1048576 }')"
            # sgw CPU seconds per GiB moved (in polled runs, console work included).
            cpu="$(awk -v c=$((c1 - c0)) -v hz="$TICKS_PER_SEC" -v b="${BYTES[$t]}" \
                'BEGIN { printf "%.3f", c / hz / (b / 1073741824) }')"
            RESULT[$mode,$t]+="$mibs "
            CPU[$mode,$t]+="$cpu "
            log "round $round/$ROUNDS  $mode  ${LABEL[$t]}: ${secs}s  ${mibs} MiB/s  sgw CPU ${cpu} s/GiB"
        done
        if [[ $mode == polled ]]; then
            stop_poller
            dok="$(count_lines 'dashboard ok' "$polls")"
            dfail="$(count_lines 'dashboard fail' "$polls")"
            mok="$(count_lines 'metrics ok' "$polls")"
            mfail="$(count_lines 'metrics fail' "$polls")"
            log "round $round/$ROUNDS  poller: dashboard ${dok} ok ${dfail} failed, metrics ${mok} ok ${mfail} failed"
            [[ $dok -gt 0 ]] || die "round $round: the poller fetched no dashboard: $(tail -n 2 "$polls" | tr '\n' ' ')"
            [[ $mok -gt 0 ]] || die "round $round: the poller fetched no /metrics: $(tail -n 2 "$polls" | tr '\n' ' ')"
            DASH_OK=$((DASH_OK + dok))
            DASH_FAIL=$((DASH_FAIL + dfail))
            METRICS_OK=$((METRICS_OK + mok))
            METRICS_FAIL=$((METRICS_FAIL + mfail))
            DASH_TIMES+="$(awk '$1 == "dashboard" && $2 == "ok" { printf "%s ", $3 }' "$polls")"
        fi
    done
done
log "load after: $(uptime)"

# --- report ------------------------------------------------------------------
printf '\n%-18s %11s %12s %10s %11s %12s %16s\n' "test (median of $ROUNDS)" "quiet MiB/s" "polled MiB/s" \
    "quiet IOPS" "polled IOPS" "polled/quiet" "sgw CPU s/GiB q|p"
ratios="ratios:"
for t in "${TESTS[@]}"; do
    q="$(median <<<"${RESULT[quiet,$t]}")"
    p="$(median <<<"${RESULT[polled,$t]}")"
    ratio="$(awk -v q="$q" -v p="$p" 'BEGIN { printf "%.3f", p / q }')"
    per_op=$(( ${BYTES[$t]} / ${OPS[$t]} ))
    cq="$(median <<<"${CPU[quiet,$t]}")"
    cp="$(median <<<"${CPU[polled,$t]}")"
    printf '%-18s %11.1f %12.1f %10.0f %11.0f %12s %16s\n' "${LABEL[$t]}" "$q" "$p" \
        "$(awk -v m="$q" -v o="$per_op" 'BEGIN { print m * 1048576 / o }')" \
        "$(awk -v m="$p" -v o="$per_op" 'BEGIN { print m * 1048576 / o }')" "$ratio" \
        "$(printf '%.3f|%.3f' "$cq" "$cp")"
    ratios+=" $t=$ratio"
done
echo "runs (MiB/s): $(for t in "${TESTS[@]}"; do printf '%s quiet[%s] polled[%s]; ' "$t" "${RESULT[quiet,$t]% }" "${RESULT[polled,$t]% }"; done)"
dash_median="$(median <<<"$DASH_TIMES" || echo 0)"
echo "poller (every ${POLL_INTERVAL}s, console_sample_secs=$CONSOLE_SAMPLE_SECS): dashboard ${DASH_OK} ok ${DASH_FAIL} failed" \
    "(median $(awk -v s="$dash_median" 'BEGIN { printf "%.1f", s * 1000 }') ms), metrics ${METRICS_OK} ok ${METRICS_FAIL} failed"
echo "acceptance bar: polled/quiet >= $ACCEPT_RATIO for each test (reported, not enforced)"
echo "load: $(uptime | sed 's/.*load average/load average/')"
echo "$ratios"
