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
SIZE=${1:-200GiB}
COUNT=${2:-3}
# The cache is reserved on disk at start: 4 GiB holds what btape writes.
SERVE_ARGS=(--cache-size 4GiB)
. tests/scripts/guestlab-common.sh
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
