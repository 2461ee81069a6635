# Sourced by guestlab-disk.sh and guestlab-tape.sh: finds the guest lab,
# installs the guest's qemu, builds the image and sgw (unless SGW_BIN names
# one), and starts a scratch
# sgw on free loopback ports with the extra `serve` flags in the caller's
# SERVE_ARGS array (if any), claimed with --activate-from, and waits until
# it is ready. Sets LAB, SGW, ISCSI, API (the plain-HTTP port: health and
# /metrics), HTTPS, DATA and PID, an EXIT trap that stops sgw by its PID
# and removes its files, and `api` (the CLI against it, over its socket).
LAB=${GUESTLAB:-../shared/guestlab}
[ -x "$LAB/run.sh" ] || { echo "guestlab not found at $LAB (set GUESTLAB)" >&2; exit 1; }

# The guest runs under qemu-system-x86_64 of the same Debian release as the
# qemu-utils the tests install.
if ! command -v qemu-system-x86_64 >/dev/null; then
  qver=$(apt-cache show qemu-block-extra | awk '/^Version:/ {print $2; exit}')
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "qemu-system-x86=$qver" >/dev/null
fi
"$LAB/build.sh"

# The binary run-all.sh has just built and tested (SGW_BIN), or a fresh build.
if [ -n "${SGW_BIN:-}" ] && [ -x "$SGW_BIN" ]; then
  SGW=$SGW_BIN
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release -p gateway --bin sgw
  SGW="$CARGO_TARGET_DIR/release/sgw"
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ISCSI=$(port); API=$(port); HTTPS=$(port)
DATA=$(mktemp -d)
# A fresh data directory is unactivated: claim it at start with a random
# admin password (unused: `api` goes through the gateway's owner-only socket).
(umask 077; printf '{"gateway_name":"guestlab","admin_user":"admin","admin_password":"%s"}\n' \
  "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >"$DATA/activate.json")
# --iscsi-access open: the guests' initiators have names of their own.
"$SGW" serve --iscsi-access open --data-dir "$DATA" --iscsi-listen "127.0.0.1:$ISCSI" --api-listen "127.0.0.1:$API" \
  --https-listen "127.0.0.1:$HTTPS" --activate-from "$DATA/activate.json" ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} \
  >"$DATA.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA" "$DATA.log" "$DATA.run"' EXIT
api() { "$SGW" --api "unix:$DATA/sgw.sock" "$@"; }
# Health answers as soon as sgw listens; volumes and tapes are up at "ready":true.
for i in $(seq 300); do
  curl -fs --max-time 2 "http://127.0.0.1:$API/api/v1/health" 2>/dev/null | grep -q '"ready": *true' && break
  if [ "$i" = 300 ] || ! kill -0 "$PID" 2>/dev/null; then
    echo "sgw did not become ready:" >&2; tail -n 20 "$DATA.log" >&2; exit 1
  fi
  sleep 0.1
done
