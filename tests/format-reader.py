#!/usr/bin/env python3
"""An independent reader of the sgw bucket format, written from docs/FORMAT.md
alone, over a directory of plain files (one per object, named by its key).

It checks that the specification is complete: the Rust test
`gateway/tests/cloud_format_reader.rs` exports a bucket written by the
gateway and this script must decode every chunk to the expected bytes.

usage: format-reader.py EXPORT_DIR PREFIX RECOVERY_KEY
prints one line per chunk: "<namespace> <id> <sha256 of plaintext>"
"""
import hashlib
import json
import os
import struct
import sys

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


CRC_TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC_TABLE.append(c)


def derive(context, key):
    return blake3.blake3(key, derive_key_context=context).digest()


def unwrap_data_key(record, master, namespace):
    assert record["format"] == "sgw-data-key" and record["version"] == 1
    assert record["namespace"] == namespace
    if record["master_key_id"] != derive("sgw 2026 master-key-id v1", master)[:8].hex():
        raise SystemExit(f"wrong master key for {namespace}")
    key_id = bytes.fromhex(record["key_id"])
    wrapped = bytes.fromhex(record["wrapped"])
    aad = b"sgw-data-key-v1" + b"\0" + namespace.encode() + b"\0" + key_id
    wrapping_key = derive("sgw 2026 master-key-wrap v1", master)
    data_key = AESGCM(wrapping_key).decrypt(bytes.fromhex(record["nonce"]), wrapped, aad)
    assert derive("sgw 2026 data-key-id v1", data_key)[:8] == key_id
    return data_key


def read_chunk(obj, chunk_id, data_key):
    assert len(obj) >= 52 and obj[0:4] == b"SGWC" and obj[4] == 1
    flags = obj[5]
    assert flags & ~1 == 0 and obj[6:8] == b"\0\0"
    (stored_crc,) = struct.unpack("<I", obj[32:36])
    assert crc32c(obj[36:], crc32c(obj[0:32])) == stored_crc, "crc mismatch"
    assert obj[8:16] == derive("sgw 2026 data-key-id v1", data_key)[:8], "other data key"
    (plain_len,) = struct.unpack("<I", obj[16:20])
    nonce = obj[20:32]
    aad = chunk_id + obj[0:32]
    payload = AESGCM(derive("sgw 2026 chunk-encryption v1", data_key)).decrypt(nonce, obj[36:], aad)
    if flags & 1:
        plain = zstandard.ZstdDecompressor().decompress(payload, max_output_size=plain_len)
    else:
        plain = payload
    assert len(plain) == plain_len
    id_key = derive("sgw 2026 chunk-id v1", data_key)
    assert blake3.blake3(plain, key=id_key).digest() == chunk_id, "id mismatch"
    return plain


def main():
    root, prefix, recovery = sys.argv[1], sys.argv[2].strip("/"), sys.argv[3]
    master = bytes.fromhex("".join(c for c in recovery if c not in "- \n"))
    base = os.path.join(root, prefix) if prefix else root
    with open(os.path.join(base, "sgw-bucket.json")) as f:
        marker = json.load(f)
    assert marker == {"format": "sgw-bucket", "version": 1}, marker
    for namespace in sorted(os.listdir(os.path.join(base, "ns"))):
        with open(os.path.join(base, "keys", namespace + ".json")) as f:
            data_key = unwrap_data_key(json.load(f), master, namespace)
        chunks = os.path.join(base, "ns", namespace, "chunks")
        for fanout in sorted(os.listdir(chunks)):
            for name in sorted(os.listdir(os.path.join(chunks, fanout))):
                assert name[:2] == fanout and len(name) == 64
                with open(os.path.join(chunks, fanout, name), "rb") as f:
                    plain = read_chunk(f.read(), bytes.fromhex(name), data_key)
                print(namespace, name, hashlib.sha256(plain).hexdigest())


if __name__ == "__main__":
    main()
