#!/usr/bin/env bash
# Runs the guest lab's tape-openiscsi scenario (a Linux guest's kernel
# initiator: open-iscsi login, mtx over ch/sg, mt-st over st, tar and dd
# files with filemarks, fsf/eod/tell checks, then Bacula's btape test)
# against the virtual tape library of a scratch sgw, with LAB_STRICT=1.
# Needs ../shared/guestlab (or GUESTLAB=DIR) and about 10 minutes the first
# time (it builds the guest image); a run takes 3-7 minutes.
# Usage: tests/scripts/guestlab-tape.sh [TAPE_SIZE [TAPES]]
#   TAPE_SIZE: each tape's size (default 200GiB; thin). btape writes about
#   1.3 GB, so tapes must be well over 1.5 GB.
#   TAPES: how many tapes to create (default 3); the scenario imports one.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=${GUESTLAB:-../shared/guestlab}
[ -x "$LAB/run.sh" ] || { echo "guestlab not found at $LAB (set GUESTLAB)" >&2; exit 1; }
SIZE=${1:-200GiB}
COUNT=${2:-3}

# The guest runs under qemu-system-x86_64 of the same Debian release as the
# qemu-utils the tests install.
if ! command -v qemu-system-x86_64 >/dev/null; then
  qver=$(apt-cache show qemu-block-extra | awk '/^Version:/ {print $2; exit}')
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "qemu-system-x86=$qver" >/dev/null
fi
"$LAB/build.sh"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p gateway --bin sgw
SGW="$CARGO_TARGET_DIR/release/sgw"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ISCSI=$(port); API=$(port)
DATA=$(mktemp -d)
"$SGW" serve --data-dir "$DATA" --iscsi-listen "127.0.0.1:$ISCSI" --api-listen "127.0.0.1:$API" \
  >"$DATA.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA" "$DATA.log" "$DATA.run"' EXIT
api() { "$SGW" --api "http://127.0.0.1:$API" "$@"; }
for _ in $(seq 100); do
  api tape list >/dev/null 2>&1 && break
  sleep 0.1
done
for i in $(seq "$COUNT"); do
  api tape create --barcode "$(printf 'LAB%03dL6' "$i")" --size "$SIZE"
done
# New tapes become AVAILABLE (in an import/export slot) once imported.
for _ in $(seq 300); do
  api tape list --json | python3 -c 'import json,sys; sys.exit(any(t["state"] != "AVAILABLE" for t in json.load(sys.stdin)))' && break
  sleep 0.1
done
api tape list
lib=$(api tape library --json)
CHANGER=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["changer"]["iqn"])' "$lib")
DRIVE=$(python3 -c 'import json,sys; print(min(json.loads(sys.argv[1])["drives"], key=lambda d: d["element"])["iqn"])' "$lib")
LAB_STRICT=1 "$LAB/run.sh" "127.0.0.1:$ISCSI" "$CHANGER" "$DRIVE" tape-openiscsi | tee "$DATA.run"
curl -s "http://127.0.0.1:$API/metrics" | grep -E '^sgw_tape_' || true
tail -1 "$DATA.run" | grep -q '^PASS'
