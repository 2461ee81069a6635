# shellcheck shell=bash
# bench-lib.sh: the helpers vs-tgt.sh and console-overhead.sh share (one
# sgw on loopback with a 1 GiB local volume, timed `qemu-img bench` runs).
# Not a script of its own: a caller sources it, after `set -euo pipefail`,
# after cd-ing to the repository root and after defining
#   die MSG...   print MSG (prefixed by the script's name) to stderr, exit 1
#   log MSG...   print MSG (prefixed by the script's name) to stderr
# Sourcing it defines the functions below and sets TAKEN_PORTS=" ",
# FREE_PORT="", SGW_PID="", SGW_SERVE_ARGS=() and TICKS_PER_SEC; it starts
# nothing and writes nothing. What each function reads (r) and sets (s):
#
#   need CMD HINT       dies "CMD not found: HINT" unless CMD is on PATH
#   need_qemu_iscsi     needs qemu-img (with its iscsi driver), curl, ss and
#                       timeout
#   resolve_sgw_bin     r/s SGW_BIN (default ${CARGO_TARGET_DIR:-target}/release/sgw,
#                       built with cargo if missing); dies unless executable
#   prepare_sgw [LOGIN] r SGW_BIN, WORK. s SGW: a private copy $WORK/sgw (a
#                       concurrent `cargo build` cannot swap it mid-run);
#                       s SGW_API: unix:$WORK/sgw-data/sgw.sock, the
#                       owner-only socket the CLI uses. Writes the owner-only
#                       $WORK/activate.json with a random admin password,
#                       and the same password as the console login body
#                       {"user":"admin","password":...} to LOGIN if given.
#   free_port           r/s TAKEN_PORTS (ports handed out so far); s FREE_PORT.
#                       Call it directly, not in $(...): TAKEN_PORTS must stick.
#   start_sgw           r SGW, WORK, SGW_SERVE_ARGS (extra `serve` arguments,
#                       put right after `serve`); s SGW_ISCSI_PORT,
#                       SGW_API_PORT, SGW_HTTPS_PORT, SGW_PID. Appends to
#                       $WORK/sgw.log; returns once health says "ready":true
#                       (three attempts on fresh ports, else dies).
#   stop_pid PID TRIES MSG
#                       if PID runs: SIGTERM, up to TRIES tenths of a second
#                       for it to go, then log MSG (unless empty) and SIGKILL;
#                       reaps PID (it must be a child of this shell)
#   stop_sgw            r/s SGW_PID: stop_pid with 10 s, then SGW_PID=""
#                       (a no-op when SGW_PID is empty)
#   bench_once URL ARGS r RUN_TIMEOUT; one `qemu-img bench -f raw -t none ARGS
#                       URL`; prints the seconds it reports
#   cpu_ticks PID       prints the CPU time (user + system, all threads) PID
#                       has used, in clock ticks (0 when it is gone)
#   median              prints the median of the numbers on stdin (space or
#                       newline separated) as %.6f; fails on no numbers
#   TICKS_PER_SEC       clock ticks per second, for cpu_ticks

TAKEN_PORTS=" "
FREE_PORT=""
SGW_PID=""
SGW_SERVE_ARGS=()
TICKS_PER_SEC="$(getconf CLK_TCK)"

# --- prerequisites ----------------------------------------------------------
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

need_qemu_iscsi() {
    need qemu-img "install qemu-utils and qemu-block-extra together (apt-get install -y qemu-utils qemu-block-extra)"
    need curl "apt-get install -y curl"
    need ss "apt-get install -y iproute2"
    need timeout "coreutils"
    if ! qemu-img --help 2>/dev/null | grep -qw iscsi; then
        die "this qemu-img has no iscsi driver: install qemu-utils and qemu-block-extra together (Debian's 7.2)"
    fi
}

resolve_sgw_bin() {
    if [[ -z "${SGW_BIN:-}" ]]; then
        SGW_BIN="${CARGO_TARGET_DIR:-target}/release/sgw"
        if [[ ! -x "$SGW_BIN" ]]; then
            log "building $SGW_BIN"
            cargo build --release -p gateway --bin sgw
        fi
    fi
    [[ -x "$SGW_BIN" ]] || die "sgw binary '$SGW_BIN' not found or not executable"
}

# --- sgw ---------------------------------------------------------------------
# A fresh data directory is unactivated: sgw claims it at start with a random
# admin password. The password only ever sits in owner-only files (never on
# a command line): activate.json for sgw, LOGIN for curl's -d @file.
prepare_sgw() {
    local login="${1:-}"
    cp -- "$SGW_BIN" "$WORK/sgw"
    SGW="$WORK/sgw"
    SGW_API="unix:$WORK/sgw-data/sgw.sock"
    [[ ${#SGW_API} -le 112 ]] || die "socket path $SGW_API is too long for a unix socket: use a shorter BENCH_DIR"
    (
        umask 077
        password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" || exit 1
        [[ ${#password} -ge 12 ]] || exit 1
        printf '{"gateway_name":"bench","admin_user":"admin","admin_password":"%s"}\n' "$password" \
            >"$WORK/activate.json" || exit 1
        if [[ -n "$login" ]]; then
            printf '{"user":"admin","password":"%s"}\n' "$password" >"$login" || exit 1
        fi
    ) || die "could not write the activation file${login:+ and the login file}"
}

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        [[ "$TAKEN_PORTS" == *" $p "* ]] && continue
        if [[ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]]; then
            TAKEN_PORTS+="$p "
            FREE_PORT="$p"
            return 0
        fi
    done
    die "no free TCP port found"
}

start_sgw() {
    local attempt
    for attempt in 1 2 3; do
        free_port
        SGW_ISCSI_PORT="$FREE_PORT"
        free_port
        SGW_API_PORT="$FREE_PORT"
        free_port
        SGW_HTTPS_PORT="$FREE_PORT"
        mkdir -p "$WORK/sgw-data"
        # --iscsi-access open: the benchmark's initiators use their own names.
        "$SGW" serve --iscsi-access open ${SGW_SERVE_ARGS[@]+"${SGW_SERVE_ARGS[@]}"} --data-dir "$WORK/sgw-data" \
            --iscsi-listen "127.0.0.1:$SGW_ISCSI_PORT" \
            --api-listen "127.0.0.1:$SGW_API_PORT" --https-listen "127.0.0.1:$SGW_HTTPS_PORT" \
            --activate-from "$WORK/activate.json" >>"$WORK/sgw.log" 2>&1 &
        SGW_PID=$!
        # Health answers as soon as sgw listens; volumes are up at "ready":true.
        for _ in $(seq 1 150); do
            kill -0 "$SGW_PID" 2>/dev/null || break
            if curl -fsS --max-time 2 "http://127.0.0.1:$SGW_API_PORT/api/v1/health" 2>/dev/null \
                | grep -q '"ready": *true'; then
                return 0
            fi
            sleep 0.2
        done
        log "sgw did not come up (attempt $attempt)"
        stop_sgw
    done
    die "sgw serve did not start (see the log above)"
}

stop_pid() {
    local pid=$1 tries=$2 msg=$3
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 "$tries"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            [[ -z "$msg" ]] || log "$msg"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

stop_sgw() {
    [[ -n "$SGW_PID" ]] || return 0
    stop_pid "$SGW_PID" 100 "sgw (pid $SGW_PID) did not stop on SIGTERM in 10 s; killing it"
    SGW_PID=""
}

# --- measuring ---------------------------------------------------------------
bench_once() {
    local url=$1 args=$2 out secs
    # shellcheck disable=SC2086 # ARGS are words on purpose
    out="$(timeout "$RUN_TIMEOUT" qemu-img bench -f raw -t none $args "$url" 2>&1)" \
        || die "qemu-img bench $args $url failed or timed out (${RUN_TIMEOUT}s): $out"
    secs="$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' <<<"$out")"
    [[ -n "$secs" ]] || die "no 'Run completed in X seconds.' in qemu-img output: $out"
    echo "$secs"
}

cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

median() {
    tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR]=$1} END {
        if (NR == 0) exit 1
        if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]
        else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
