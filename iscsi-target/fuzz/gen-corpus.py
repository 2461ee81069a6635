#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/: small valid inputs in each
fuzz target's input format (see the comment at the top of each target).
Run from anywhere; it replaces the files it writes and leaves others alone."""

import hashlib
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


def pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- pdu_decode: mode byte, then one PDU ----

def pdu(op, b1=0, b2=0, b3=0, b8=bytes(8), itt=1, words=(0,) * 7, ahs=b"", data=b"",
        hd=False, dd=False) -> bytes:
    words = tuple(words) + (0,) * (7 - len(words))
    bhs = struct.pack(">BBBBB", op, b1, b2, b3, len(ahs) // 4) + len(data).to_bytes(3, "big")
    bhs += b8 + struct.pack(">I", itt) + struct.pack(">7I", *words)
    head = bhs + ahs
    out = head + (struct.pack("<I", crc32c(head)) if hd else b"")
    if data:
        out += pad4(data) + (struct.pack("<I", crc32c(pad4(data))) if dd else b"")
    return out


def cdb_words(cdb: bytes):
    cdb = cdb.ljust(16, b"\0")
    return struct.unpack(">4I", cdb[:16])


login_text = b"InitiatorName=iqn.1994-05.com.example:i\0TargetName=iqn.t:open\0SessionType=Normal\0AuthMethod=None\0"
isid_tsih = bytes([0x80, 0, 0, 0, 0, 1, 0, 0])
write10 = bytes([0x2A, 0, 0, 0, 0, 8, 0, 0, 1, 0])
read10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
cdb32 = bytes([0x7F, 0, 0, 0, 0, 0, 0, 0x18]) + bytes(24)
ext = cdb32[16:]
ahs_ext = pad4(struct.pack(">HBB", len(ext) + 1, 1, 0) + ext)
ahs_bidi = struct.pack(">HBB", 5, 2, 0) + struct.pack(">I", 4096)

pdus = {
    "login-request": (0, pdu(0x43, 0x87, 0, 0, isid_tsih, 1, (0, 1, 0), data=login_text)),
    "login-request-digests": (3, pdu(0x43, 0x87, 0, 0, isid_tsih, 1, (0, 1, 0), data=login_text, hd=True, dd=True)),
    "scsi-write10-immediate": (0, pdu(0x01, 0xA1, 0, 0, bytes(8), 2, (512, 2, 1) + cdb_words(write10), data=bytes(range(256)) * 2)),
    "scsi-read10": (1, pdu(0x41, 0xC1, 0, 0, bytes(8), 3, (4096, 3, 1) + cdb_words(read10), hd=True)),
    "scsi-cdb32-bidi-ahs": (0, pdu(0x01, 0xE1, 0, 0, bytes(8), 4, (512, 4, 1) + cdb_words(cdb32), ahs=ahs_ext + ahs_bidi, data=b"x" * 12)),
    "data-in-status": (7, pdu(0x25, 0x83, 0, 0, bytes(8), 3, (0xFFFFFFFF, 5, 6, 7, 0, 0, 0), data=b"\xAB" * 100, hd=True, dd=True)),
    "data-out": (2, pdu(0x05, 0x80, 0, 0, bytes(8), 2, (0x10, 0, 1, 0, 0, 512), data=b"\x55" * 64, dd=True)),
    "nop-out-ping": (0, pdu(0x40, 0x80, 0, 0, bytes(8), 9, (0xFFFFFFFF, 5, 1), data=b"ping")),
    "nop-in": (0, pdu(0x20, 0x80, 0, 0, bytes(8), 0xFFFFFFFF, (7, 1, 2, 3))),
    "text-sendtargets": (0, pdu(0x04, 0x80, 0, 0, bytes(8), 5, (0xFFFFFFFF, 6, 1), data=b"SendTargets=All\0")),
    "text-response": (0, pdu(0x24, 0x80, 0, 0, bytes(8), 5, (0xFFFFFFFF, 1, 2, 3), data=b"TargetName=iqn.t:open\0TargetAddress=10.0.0.1:3260,1\0")),
    "task-mgmt-abort": (0, pdu(0x42, 0x81, 0, 0, bytes(8), 6, (2, 7, 1, 2, 0))),
    "task-mgmt-response": (0, pdu(0x22, 0x80, 0, 0, bytes(8), 6, (0, 1, 2, 3))),
    "logout-request": (0, pdu(0x46, 0x80, 0, 0, bytes(8), 8, (0, 9, 1))),
    "logout-response": (0, pdu(0x26, 0x80, 0, 0, bytes(8), 8, (0, 1, 2, 3, 0, (2 << 16) | 20))),
    "snack": (0, pdu(0x10, 0x81, 0, 0, bytes(8), 3, (0xFFFFFFFF, 0, 1, 0, 0, 2, 1))),
    "scsi-response-sense": (0, pdu(0x21, 0x82, 0, 2, bytes(8), 2, (0, 1, 2, 3, 0, 0, 512), data=struct.pack(">H", 18) + bytes([0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0]))),
    "login-response": (0, pdu(0x23, 0x87, 0, 0, bytes([0x80, 0, 0, 0, 0, 1, 0, 1]), 1, (0, 1, 2, 3, 0), data=b"TargetPortalGroupTag=1\0")),
    "r2t": (0, pdu(0x31, 0x80, 0, 0, bytes(8), 2, (0x10, 1, 2, 3, 0, 512, 65536))),
    "async-message": (0, pdu(0x32, 0x80, 0, 0, bytes(8), 0xFFFFFFFF, (0xFFFFFFFF, 1, 2, 3, (1 << 24), 0), data=b"")),
    "reject": (0, pdu(0x3F, 0x80, 0x09, 0, bytes(8), 0xFFFFFFFF, (0xFFFFFFFF, 1, 2, 3, 0), data=bytes(48))),
}
for name, (mode, frame) in pdus.items():
    write("pdu_decode", name, bytes([mode]) + frame)

# ---- login_text: records split by 0xFF, each a control byte and text ----

def kv(*pairs) -> bytes:
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)


def control(transit=False, cont=False, csg=0, nsg=0) -> int:
    return (0x80 if transit else 0) | (0x40 if cont else 0) | csg << 4 | nsg << 2


def records(*recs) -> bytes:
    return b"\xff".join(bytes([c]) + t for c, t in recs)


OPERATIONAL = kv(("HeaderDigest", "CRC32C,None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "65536"),
                 ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"), ("InitialR2T", "No"),
                 ("ImmediateData", "Yes"), ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0"),
                 ("DefaultTime2Wait", "2"), ("DefaultTime2Retain", "20"), ("DataPDUInOrder", "Yes"),
                 ("DataSequenceInOrder", "Yes"), ("MaxConnections", "1"), ("IFMarker", "No"), ("OFMarker", "No"))
INITIATOR = ("InitiatorName", "iqn.1994-05.com.example:i")
chap_r = hashlib.md5(bytes([7]) + b"s3cr3t-s3cr3t" + bytes([0x11] * 16)).digest()

write("login_text", "text-only", b"InitiatorName=iqn.x\0TargetName=iqn.y\0")
write("login_text", "open-normal", records(
    (control(True, csg=0, nsg=1), kv(INITIATOR, ("TargetName", "iqn.t:open"), ("SessionType", "Normal"), ("AuthMethod", "None"))),
    (control(True, csg=1, nsg=3), OPERATIONAL)))
write("login_text", "open-straight-to-ffp", records(
    (control(True, csg=1, nsg=3), kv(INITIATOR, ("TargetName", "iqn.t:open"), ("InitiatorAlias", "host"), ("MaxRecvDataSegmentLength", "0x2000"), ("X-com.example.key", "1")))))
write("login_text", "chap-one-way", records(
    (control(csg=0), kv(INITIATOR, ("TargetName", "iqn.t:chap"), ("AuthMethod", "CHAP,None"))),
    (control(csg=0), kv(("CHAP_A", "5"))),
    (control(True, csg=0, nsg=1), kv(("CHAP_N", "u"), ("CHAP_R", "0x" + chap_r.hex()))),
    (control(True, csg=1, nsg=3), OPERATIONAL)))
write("login_text", "chap-mutual-base64", records(
    (control(csg=0), kv(INITIATOR, ("TargetName", "iqn.t:mutual"), ("AuthMethod", "CHAP"))),
    (control(csg=0), kv(("CHAP_A", "7,5"))),
    (control(True, csg=0, nsg=3), kv(("CHAP_N", "u"), ("CHAP_R", "0b" + __import__("base64").b64encode(chap_r).decode()),
                                    ("CHAP_I", "3"), ("CHAP_C", "0x0a0b0c0d0e0f")))))
write("login_text", "discovery", records(
    (control(True, csg=0, nsg=1), kv(INITIATOR, ("SessionType", "Discovery"), ("AuthMethod", "None"))),
    (control(True, csg=1, nsg=3), kv(("HeaderDigest", "None"), ("MaxRecvDataSegmentLength", "8192"), ("InitialR2T", "Yes")))))
first = kv(INITIATOR, ("TargetName", "iqn.t:open"))
write("login_text", "continued-text", records(
    (control(cont=True, csg=1), first[:20]),
    (control(True, csg=1, nsg=3), first[20:] + OPERATIONAL)))

# ---- cdb_parse: config byte, then (header, u16 data length, CDB, data) ----

def cmd(cdb: bytes, data: bytes = b"", nexus: int = 0) -> bytes:
    return bytes([len(cdb) | nexus << 5]) + struct.pack(">H", len(data)) + cdb + data


def cdb16(op, b1=0, lba=0, count=0, b14=0) -> bytes:
    return bytes([op, b1]) + struct.pack(">QI", lba, count) + bytes([b14, 0])


def pr_out(sa, type_=0, key=0, sa_key=0, flags=0, rest=b"") -> bytes:
    params = struct.pack(">QQ", key, sa_key) + bytes([0, 0, 0, 0, flags, 0, 0, 0]) + rest
    return cmd(bytes([0x5F, sa, type_, 0, 0]) + struct.pack(">I", len(params)) + b"\0", params)


naa = bytes([0x60, 0, 0, 0, 0, 0, 0, 0]) + struct.pack(">Q", 0x1234_5678_9ABC_DEF0)
target_desc = bytes([0xE4, 0, 0, 0, 0x01, 0x03, 0, 16]) + naa + bytes(5) + (512).to_bytes(3, "big")
segment = bytes([0x02, 0, 0, 24]) + struct.pack(">HHHHQQ", 0, 0, 0, 2, 0, 8)
xcopy_list = bytes([1, 0]) + struct.pack(">H", len(target_desc)) + bytes(4) + struct.pack(">II", len(segment), 0) + target_desc + segment
unmap_list = struct.pack(">HH", 22, 16) + bytes(4) + struct.pack(">QI", 4, 8) + bytes(4)
caching = bytes([0x08, 0x12, 0x04]) + bytes(17)
mode_select10 = struct.pack(">HBBBBH", 0, 0, 0, 0, 0, 0) + caching
transport_id = bytes([0x05, 0, 0, 8]) + b"iqn.i:2\0"

cdbs = {
    "read10": b"\0" + cmd(read10),
    "write16": b"\0" + cmd(cdb16(0x8A, 0x08, 2, 1), bytes(range(256)) * 2),
    "write16-4k": b"\x01" + cmd(cdb16(0x8A, 0, 1, 1), b"\x5a" * 4096),
    "inquiry-std-vpd": b"\0" + cmd(bytes([0x12, 0, 0, 0, 96, 0])) + cmd(bytes([0x12, 1, 0x83, 1, 0, 0]))
                       + cmd(bytes([0x12, 1, 0xB0, 0, 64, 0])) + cmd(bytes([0x12, 1, 0x00, 0, 64, 0])),
    "report-luns-capacity": b"\0" + cmd(bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])) + cmd(bytes([0x25]) + bytes(9))
                            + cmd(bytes([0x9E, 0x10]) + bytes(8) + struct.pack(">I", 32) + bytes(2)),
    "unmap-then-lba-status": b"\0" + cmd(cdb16(0x8A, 0, 0, 16), b"\x01" * (16 * 512))
                             + cmd(bytes([0x42, 0, 0, 0, 0, 0, 0]) + struct.pack(">H", len(unmap_list)) + b"\0", unmap_list)
                             + cmd(bytes([0x9E, 0x12]) + struct.pack(">QI", 0, 64) + bytes(2)),
    "persistent-reserve": b"\0" + pr_out(0, sa_key=0xAA) + pr_out(1, 0x03, key=0xAA)
                          + cmd(bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 64, 0])) + cmd(bytes([0x5E, 1, 0, 0, 0, 0, 0, 0, 64, 0]))
                          + cmd(read10, nexus=1) + pr_out(4, 0x03, key=0xAA, sa_key=0xBB),
    "persistent-reserve-spec-i-pt": b"\0" + pr_out(0, sa_key=0xAA, flags=0x08,
                                                   rest=struct.pack(">I", len(transport_id)) + transport_id)
                                    + cmd(bytes([0x5E, 3, 0, 0, 0, 0, 0, 0, 255, 0])),
    "mode-sense-select": b"\0" + cmd(bytes([0x1A, 0, 0x3F, 0, 255, 0])) + cmd(bytes([0x5A, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0]))
                         + cmd(bytes([0x55, 0x10, 0, 0, 0, 0, 0]) + struct.pack(">H", len(mode_select10)) + b"\0", mode_select10)
                         + cmd(bytes([0x00]) + bytes(5), nexus=1),
    "write-same-unmap": b"\0" + cmd(cdb16(0x93, 0x08, 8, 4), bytes(512)) + cmd(cdb16(0x93, 0x01, 0, 0)),
    "compare-and-write": b"\0" + cmd(bytes([0x89, 0]) + struct.pack(">Q", 3) + bytes([0, 0, 0, 1, 0, 0]), bytes(512) + b"\xee" * 512),
    "extended-copy": b"\0" + cmd(cdb16(0x8A, 0, 0, 2), b"\x11" * 1024)
                     + cmd(bytes([0x83, 0]) + bytes(8) + struct.pack(">I", len(xcopy_list)) + bytes(2), xcopy_list)
                     + cmd(bytes([0x84, 0, 1]) + bytes(7) + struct.pack(">I", 64) + bytes(2))
                     + cmd(bytes([0x84, 3, 0]) + bytes(7) + struct.pack(">I", 64) + bytes(2)),
    "verify-sync-prefetch": b"\0" + cmd(bytes([0x2F, 0x02, 0, 0, 0, 0, 0, 0, 2, 0]), bytes(1024))
                            + cmd(bytes([0x2F, 0x06, 0, 0, 0, 0, 0, 0, 4, 0]), bytes(512))
                            + cmd(bytes([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0])) + cmd(cdb16(0x90, 0, 0, 8)),
    "write-atomic": b"\x02" + cmd(bytes([0x9C, 0]) + struct.pack(">Q", 4) + bytes(2) + struct.pack(">H", 2) + bytes(2), b"\x77" * 1024),
    "report-opcodes-misc": b"\x04" + cmd(bytes([0xA3, 0x0C, 0x80, 0, 0, 0]) + struct.pack(">I", 4096) + bytes(2))
                           + cmd(bytes([0xA3, 0x0C, 0x02, 0x9E, 0, 0x10]) + struct.pack(">I", 64) + bytes(2))
                           + cmd(bytes([0x1B, 0, 0, 0, 1, 0])) + cmd(bytes([0x03, 0, 0, 0, 252, 0]))
                           + cmd(bytes([0x37, 0, 0x18, 0, 0, 0, 0, 0, 64, 0])) + cmd(bytes([0x16]) + bytes(5))
                           + cmd(bytes([0x08, 0, 0, 1, 0, 0])) + cmd(bytes([0x0A, 0, 0, 1, 1, 0]), bytes(512)),
}
for name, data in cdbs.items():
    write("cdb_parse", name, data)

# ---- dataout: 12-byte header, then 5-byte actions ----

def dataout_header(initial_r2t, first_burst, max_burst, mrdsl, outstanding, total, imm) -> bytes:
    flags = (1 if initial_r2t else 0) | (outstanding - 1) << 1
    return (bytes([flags]) + struct.pack(">HHH", first_burst - 512, max_burst - 512, mrdsl - 512)
            + total.to_bytes(3, "big") + struct.pack(">H", imm))


def action(kind, length=0, pick=0, extra=0, final=False) -> bytes:
    return bytes([kind | (4 if final else 0)]) + struct.pack(">H", length) + bytes([pick, extra])


write("dataout", "immediate-covers-all", dataout_header(False, 8192, 16384, 8192, 1, 4096, 4096))
write("dataout", "unsolicited-then-r2t", dataout_header(False, 8192, 16384, 8192, 2, 40960, 4096)
      + action(1, 4096) + action(0) + action(2, 8192) + action(2, 8192) + action(2, 8192, 1) + action(2, 8192, 1))
write("dataout", "initial-r2t", dataout_header(True, 4096, 8192, 4096, 1, 20000, 0)
      + action(0) + action(2, 4096) + action(2, 4096) + action(0) + action(2, 4096))
write("dataout", "raw-data-out", dataout_header(False, 8192, 8192, 2048, 1, 12000, 1000)
      + action(3, 1048, 0, 2) + action(0) + action(3, 512, 1, 16))
# Regression: the dataout fuzzer's first find, an F bit ending the
# unsolicited burst before FirstBurstLength (see server/dataout.rs tests).
write("dataout", "regression-unsolicited-early-f", bytes([
    0, 30, 0, 62, 0, 30, 46, 3, 30, 6, 0, 3, 4, 24, 0, 2, 0, 0, 238, 159, 0, 0, 249, 0, 0, 0, 0,
    109, 108, 108, 108, 108, 236, 63, 115, 16, 0, 16, 0]))
