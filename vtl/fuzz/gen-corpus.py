#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/: small valid inputs in each
fuzz target's input format (see the comment at the top of each target).
Run from anywhere; it replaces the files it writes and leaves others alone."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- tape_index: a serialized index (docs/FORMAT.md, "Tapes") ----

def index(runs) -> bytes:
    """runs: (record length or None for filemarks, count)."""
    objects = sum(c for _, c in runs)
    filemarks = sum(c for l, c in runs if l is None)
    data_end = sum(l * c for l, c in runs if l is not None)
    body = b"SGWTAPIX" + struct.pack("<HHIQQQ", 1, 0, len(runs), objects, filemarks, data_end)
    for length, count in runs:
        kind = 1 if length is None else 0
        body += struct.pack("<B3xIQ", kind, length or 0, count)
    return body + struct.pack("<I", crc32c(body))


write("tape_index", "empty", index([]))
write("tape_index", "one-file", index([(65536, 22888), (None, 1)]))
write("tape_index", "mixed", index([(512, 3), (None, 2), (10, 1), (16 << 20, 4), (None, 1)]))

# ---- tape_cdb: config byte, then (header, u16 data length, CDB, data) ----


def cmd(cdb: bytes, data: bytes = b"", nexus: int = 0, reload: bool = False) -> bytes:
    header = len(cdb) | nexus << 5 | (0x40 if reload else 0)
    return bytes([header]) + struct.pack(">H", len(data)) + cdb + data


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big", signed=n < 0)


TUR = bytes(6)
clear_ua = cmd(TUR) + cmd(TUR)

write("tape_cdb", "write-read-variable", bytes([0]) + clear_ua
      + cmd(b"\x0a\x00" + u24(100) + b"\x00", b"a" * 100)
      + cmd(b"\x10\x00" + u24(1) + b"\x00")
      + cmd(b"\x01\x00\x00\x00\x00\x00")
      + cmd(b"\x08\x00" + u24(50) + b"\x00")
      + cmd(b"\x08\x02" + u24(200) + b"\x00")
      + cmd(b"\x08\x00" + u24(10) + b"\x00"))
write("tape_cdb", "fixed-mode", bytes([0]) + clear_ua
      + cmd(b"\x15\x10\x00\x00\x0c\x00", bytes([0, 0, 0x10, 8, 0x58, 0, 0, 0, 0, 0, 2, 0]))
      + cmd(b"\x0a\x01" + u24(2) + b"\x00", bytes(1024))
      + cmd(b"\x11\x00" + u24(-1) + b"\x00")
      + cmd(b"\x08\x01" + u24(4) + b"\x00"))
write("tape_cdb", "space-locate-position", bytes([4]) + clear_ua
      + cmd(b"\x11\x01" + u24(0x7FFFFF) + b"\x00")
      + cmd(b"\x11\x01" + u24(-2) + b"\x00")
      + cmd(b"\x2b\x00\x00\x00\x00\x00\x02\x00\x00\x00")
      + cmd(b"\x34\x06\x00\x00\x00\x00\x00\x00\x00\x00")
      + cmd(b"\x92\x08\x00\x00" + (1).to_bytes(8, "big") + bytes(4))
      + cmd(b"\x34\x08\x00\x00\x00\x00\x00\x00\x20\x00"))
write("tape_cdb", "worm-overwrite", bytes([2 | 4]) + clear_ua
      + cmd(b"\x2b\x00\x00\x00\x00\x00\x01\x00\x00\x00")
      + cmd(b"\x0a\x00" + u24(4) + b"\x00", b"worm")
      + cmd(b"\x11\x03\x00\x00\x00\x00")
      + cmd(b"\x19\x01\x00\x00\x00\x00"))
write("tape_cdb", "unload-prevent-log", bytes([1 | 4]) + clear_ua
      + cmd(b"\x1e\x00\x00\x00\x01\x00")
      + cmd(b"\x1b\x00\x00\x00\x00\x00")
      + cmd(b"\x1e\x00\x00\x00\x00\x00", nexus=0)
      + cmd(b"\x1b\x00\x00\x00\x00\x00", reload=True)
      + cmd(b"\x4d\x00\x2e\x00\x00\x00\x00\x10\x00\x00")
      + cmd(b"\x4d\x00\x0c\x00\x00\x00\x00\x10\x00\x00")
      + cmd(b"\x44\x01\x00\x00\x00\x00\x00\x10\x00\x00"))
