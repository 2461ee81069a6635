"""Small SCSI-over-iSCSI client for the tape library tests.

A ctypes wrapper over libiscsi.so.7 (libiscsi 1.19), because cython-iscsi
exposes neither sense data nor residuals.  One `Session` is one iSCSI login
to one target/LUN; `Session.execute` sends any CDB and returns a `Result`
(status, decoded sense, residual, data).  On top: SSC command builders and
a `Tape` helper, SMC builders and a `Changer` helper (READ ELEMENT STATUS
parsed into `Element`s), and an adapter that runs pyscsi command objects
over our session (`Session.execute_pyscsi`), raising a `CheckCondition`
that carries the real sense bytes.

struct scsi_task offsets (checked against /usr/include/iscsi/scsi-lowlevel.h
of libiscsi 1.19 with offsetof): status 0, residual_status 32, residual 40,
sense 48, datain 64 ({int size; unsigned char *data}).  On CHECK CONDITION
datain holds the SCSI Response data segment: a 2-byte sense length, then the
sense bytes.  Data-in always goes to a caller buffer registered with
scsi_task_add_data_in_buffer, so that a READ that ends in CHECK CONDITION
(ILI, filemark) keeps its data apart from the sense.

Every command is bounded: iscsi_set_timeout() applies to login and SCSI PDUs
(the sync event loop services timeouts at least once a second), and
auto-reconnect is off so that a dead target gives an error, not a retry loop.
"""

import ctypes
import ctypes.util
import os
import struct
import time
from dataclasses import dataclass, field
from typing import List, Optional

# ---------------------------------------------------------------- libiscsi

_lib = None


def lib():
    global _lib
    if _lib is None:
        name = os.environ.get("SGW_LIBISCSI") or ctypes.util.find_library("iscsi") or "libiscsi.so.7"
        L = ctypes.CDLL(name)
        vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        sig = {
            "iscsi_create_context": (vp, [cp]),
            "iscsi_destroy_context": (i, [vp]),
            "iscsi_set_targetname": (i, [vp, cp]),
            "iscsi_set_session_type": (i, [vp, i]),
            "iscsi_set_header_digest": (i, [vp, i]),
            "iscsi_set_initiator_username_pwd": (i, [vp, cp, cp]),
            "iscsi_set_target_username_pwd": (i, [vp, cp, cp]),
            "iscsi_set_timeout": (i, [vp, i]),
            "iscsi_set_noautoreconnect": (None, [vp, i]),
            "iscsi_set_tcp_user_timeout": (i, [vp, i]),
            "iscsi_full_connect_sync": (i, [vp, cp, i]),
            "iscsi_logout_sync": (i, [vp]),
            "iscsi_disconnect": (i, [vp]),
            "iscsi_get_error": (cp, [vp]),
            "scsi_create_task": (vp, [i, cp, i, i]),
            "scsi_free_scsi_task": (None, [vp]),
            "scsi_task_add_data_in_buffer": (i, [vp, i, vp]),
            "iscsi_scsi_command_sync": (vp, [vp, i, vp, vp]),
        }
        for fn, (res, args) in sig.items():
            f = getattr(L, fn)
            f.restype = res
            f.argtypes = args
        _lib = L
    return _lib


class _IscsiData(ctypes.Structure):  # struct iscsi_data
    _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]


ISCSI_SESSION_NORMAL = 2
ISCSI_HEADER_DIGEST_NONE_CRC32C = 1
XFER_NONE, XFER_READ, XFER_WRITE = 0, 1, 2
RESIDUAL_NONE, RESIDUAL_UNDERFLOW, RESIDUAL_OVERFLOW = 0, 1, 2
# struct scsi_task offsets, libiscsi 1.19 x86_64
OFF_STATUS, OFF_RESIDUAL_STATUS, OFF_RESIDUAL, OFF_DATAIN = 0, 32, 40, 64

GOOD, CHECK_CONDITION, BUSY, RESERVATION_CONFLICT = 0x00, 0x02, 0x08, 0x18

# sense keys
NO_SENSE, RECOVERED_ERROR, NOT_READY, MEDIUM_ERROR, HARDWARE_ERROR = 0x0, 0x1, 0x2, 0x3, 0x4
ILLEGAL_REQUEST, UNIT_ATTENTION, DATA_PROTECT, BLANK_CHECK = 0x5, 0x6, 0x7, 0x8
ABORTED_COMMAND, VOLUME_OVERFLOW, MISCOMPARE = 0xB, 0xD, 0xE
SENSE_KEY_NAMES = {
    0: "NO SENSE", 1: "RECOVERED ERROR", 2: "NOT READY", 3: "MEDIUM ERROR",
    4: "HARDWARE ERROR", 5: "ILLEGAL REQUEST", 6: "UNIT ATTENTION", 7: "DATA PROTECT",
    8: "BLANK CHECK", 9: "VENDOR SPECIFIC", 0xA: "COPY ABORTED", 0xB: "ABORTED COMMAND",
    0xD: "VOLUME OVERFLOW", 0xE: "MISCOMPARE",
}


class ScsiError(Exception):
    """Transport failure, timeout, or an unexpected SCSI status."""


@dataclass
class Sense:
    raw: bytes
    response_code: int = 0
    key: int = 0
    asc: int = 0
    ascq: int = 0
    valid: bool = False
    information: int = 0  # signed 32-bit for fixed format
    filemark: bool = False
    eom: bool = False
    ili: bool = False
    sksv: bool = False
    sense_key_specific: bytes = b""
    descriptor_format: bool = False

    @classmethod
    def parse(cls, b: bytes) -> "Sense":
        s = cls(raw=bytes(b))
        if not b:
            return s
        s.response_code = b[0] & 0x7F
        if s.response_code in (0x70, 0x71) and len(b) >= 3:
            s.valid = bool(b[0] & 0x80)
            s.filemark = bool(b[2] & 0x80)
            s.eom = bool(b[2] & 0x40)
            s.ili = bool(b[2] & 0x20)
            s.key = b[2] & 0x0F
            if len(b) >= 7:
                s.information = struct.unpack(">i", bytes(b[3:7]))[0]
            if len(b) >= 14:
                s.asc, s.ascq = b[12], b[13]
            if len(b) >= 18:
                s.sksv = bool(b[15] & 0x80)
                s.sense_key_specific = bytes(b[15:18])
        elif s.response_code in (0x72, 0x73) and len(b) >= 8:
            s.descriptor_format = True
            s.key, s.asc, s.ascq = b[1] & 0x0F, b[2], b[3]
            d, end = 8, min(len(b), 8 + b[7])
            while d + 2 <= end:
                typ, ln = b[d], b[d + 1]
                body = b[d + 2:d + 2 + ln]
                if typ == 0x00 and len(body) >= 10:  # information
                    s.valid = bool(body[0] & 0x80)
                    s.information = struct.unpack(">q", bytes(body[2:10]))[0]
                elif typ == 0x02 and len(body) >= 5:  # sense key specific
                    s.sksv = bool(body[2] & 0x80)
                    s.sense_key_specific = bytes(body[2:5])
                elif typ == 0x04 and len(body) >= 2:  # stream commands
                    s.filemark = bool(body[1] & 0x80)
                    s.eom = bool(body[1] & 0x40)
                    s.ili = bool(body[1] & 0x20)
                d += 2 + ln
        return s

    def __str__(self):
        bits = [n for n, v in (("FILEMARK", self.filemark), ("EOM", self.eom), ("ILI", self.ili)) if v]
        info = " INFO=%d" % self.information if self.valid else ""
        return "%s %02X/%02X%s%s" % (SENSE_KEY_NAMES.get(self.key, hex(self.key)), self.asc, self.ascq,
                                     info, (" " + "+".join(bits)) if bits else "")


@dataclass
class Result:
    cdb: bytes
    status: int
    data: bytes = b""
    residual: int = 0
    residual_status: int = RESIDUAL_NONE
    sense: Optional[Sense] = None
    buffer: bytes = b""  # the whole data-in buffer, whatever the residual says

    @property
    def good(self):
        return self.status == GOOD

    @property
    def check(self):
        return self.status == CHECK_CONDITION

    def is_sense(self, key, asc=None, ascq=None):
        if not self.check or self.sense is None:
            return False
        s = self.sense
        return s.key == key and (asc is None or s.asc == asc) and (ascq is None or s.ascq == ascq)

    def describe(self):
        if self.good:
            r = "GOOD"
        elif self.check:
            r = "CHECK CONDITION %s" % self.sense
        else:
            r = "status 0x%02x" % self.status
        if self.residual_status != RESIDUAL_NONE:
            r += " residual=%s%d" % ("-" if self.residual_status == RESIDUAL_OVERFLOW else "", self.residual)
        return r


try:  # pyscsi's exception, when pyscsi is installed, so that its users can catch it
    from pyscsi.pyscsi.scsi_exception import SCSICheckCondition as _PyscsiCheckCondition
except Exception:  # pragma: no cover - pyscsi is optional
    _PyscsiCheckCondition = Exception


class CheckCondition(_PyscsiCheckCondition):
    """Raised by execute(check=True) on CHECK CONDITION; carries the Result."""

    def __init__(self, result: Result, what: str = ""):
        self.message = "%s%s: CHECK CONDITION %s" % (what, cdb_name(result.cdb), result.sense)
        Exception.__init__(self, self.message)
        self.result = result
        self.sense = result.sense
        self.show_data = False

    def __str__(self):
        return self.message


def cdb_name(cdb: bytes) -> str:
    return "%s (%s)" % (OPCODE_NAMES.get(cdb[0], "opcode 0x%02x" % cdb[0]), cdb.hex())


OPCODE_NAMES = {
    0x00: "TEST UNIT READY", 0x01: "REWIND", 0x03: "REQUEST SENSE", 0x05: "READ BLOCK LIMITS",
    0x07: "INITIALIZE ELEMENT STATUS", 0x08: "READ(6)", 0x0A: "WRITE(6)", 0x10: "WRITE FILEMARKS(6)",
    0x11: "SPACE(6)", 0x12: "INQUIRY", 0x15: "MODE SELECT(6)", 0x19: "ERASE", 0x1A: "MODE SENSE(6)",
    0x1B: "LOAD UNLOAD", 0x1E: "PREVENT ALLOW MEDIUM REMOVAL", 0x2B: "LOCATE(10)", 0x34: "READ POSITION",
    0x44: "REPORT DENSITY SUPPORT", 0x4D: "LOG SENSE", 0x91: "SPACE(16)", 0x92: "LOCATE(16)",
    0xA0: "REPORT LUNS", 0xA5: "MOVE MEDIUM", 0xB8: "READ ELEMENT STATUS",
}


class Session:
    """One iSCSI session to one LUN of one target, via libiscsi's sync API."""

    def __init__(self, portal: str, target: str, lun: int = 0, *, chap_user: str = None,
                 chap_secret: str = None, timeout: int = 30,
                 initiator: str = "iqn.2026-01.test.sgw:pyclient", header_digest: bool = False):
        self.portal, self.target, self.lun = portal, target, lun
        self.timeout = int(timeout)
        self._cur_timeout = None
        self.broken = False
        L = lib()
        self._ctx = L.iscsi_create_context(initiator.encode())
        if not self._ctx:
            raise ScsiError("iscsi_create_context failed")
        L.iscsi_set_targetname(self._ctx, target.encode())
        L.iscsi_set_session_type(self._ctx, ISCSI_SESSION_NORMAL)
        if header_digest:
            L.iscsi_set_header_digest(self._ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C)
        else:
            L.iscsi_set_header_digest(self._ctx, 0)
        L.iscsi_set_noautoreconnect(self._ctx, 1)
        L.iscsi_set_tcp_user_timeout(self._ctx, self.timeout * 1000)
        if chap_user is not None:
            L.iscsi_set_initiator_username_pwd(self._ctx, chap_user.encode(), (chap_secret or "").encode())
        self._set_timeout(self.timeout)
        if L.iscsi_full_connect_sync(self._ctx, portal.encode(), lun) != 0:
            err = self.error()
            L.iscsi_destroy_context(self._ctx)
            self._ctx = None
            raise ScsiError("login to %s %s LUN %d failed: %s" % (portal, target, lun, err))

    def error(self) -> str:
        e = lib().iscsi_get_error(self._ctx) if self._ctx else None
        return e.decode(errors="replace") if e else "?"

    def _set_timeout(self, t):
        if t != self._cur_timeout:
            lib().iscsi_set_timeout(self._ctx, int(t))
            self._cur_timeout = t

    def close(self):
        if self._ctx:
            L = lib()
            if not self.broken:
                self._set_timeout(5)
                L.iscsi_logout_sync(self._ctx)
            L.iscsi_destroy_context(self._ctx)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def execute(self, cdb, data_out=None, data_in_len: int = 0, *, check: bool = False,
                timeout: int = None, into=None, what: str = "") -> Result:
        """Send one CDB.  data_out: bytes-like written to the target; data_in_len:
        expected data-in length (or pass `into`, a writable ctypes buffer / bytearray,
        to receive data without an extra copy; then Result.data is empty).
        check=True raises CheckCondition on CHECK CONDITION.  Any status other
        than GOOD / CHECK CONDITION, and any transport error, raises ScsiError."""
        if self._ctx is None:
            raise ScsiError("session closed")
        if self.broken:
            raise ScsiError("session broken by an earlier transport error")
        L = lib()
        cdb = bytes(cdb)
        self._set_timeout(timeout if timeout is not None else self.timeout)
        keep = []
        d = None
        if data_out is not None and len(data_out) > 0:
            direction, xfer = XFER_WRITE, len(data_out)
            if isinstance(data_out, bytes):
                ptr = ctypes.cast(ctypes.c_char_p(data_out), ctypes.c_void_p)
                keep.append(data_out)
            else:
                cbuf = (ctypes.c_char * xfer).from_buffer(data_out)
                keep.append(cbuf)
                ptr = ctypes.cast(cbuf, ctypes.c_void_p)
            d = _IscsiData(xfer, ptr)
        elif into is not None or data_in_len:
            direction = XFER_READ
            if into is None:
                buf = ctypes.create_string_buffer(data_in_len)
            else:
                buf = into if isinstance(into, ctypes.Array) else (ctypes.c_char * len(into)).from_buffer(into)
            xfer = data_in_len or ctypes.sizeof(buf)
        else:
            direction, xfer = XFER_NONE, 0
        task = L.scsi_create_task(len(cdb), cdb, direction, xfer)
        if not task:
            raise ScsiError("scsi_create_task failed")
        try:
            if direction == XFER_READ:
                if L.scsi_task_add_data_in_buffer(task, xfer, ctypes.cast(buf, ctypes.c_void_p)) != 0:
                    raise ScsiError("scsi_task_add_data_in_buffer failed")
            r = L.iscsi_scsi_command_sync(self._ctx, self.lun, task, ctypes.byref(d) if d is not None else None)
            status = ctypes.c_int.from_address(task + OFF_STATUS).value
            if not r:
                self.broken = True
                raise ScsiError("%s%s: transport error (status 0x%x): %s" % (what, cdb_name(cdb), status & 0xFFFFFFFF, self.error()))
            rs = ctypes.c_int.from_address(task + OFF_RESIDUAL_STATUS).value
            resid = ctypes.c_size_t.from_address(task + OFF_RESIDUAL).value
            res = Result(cdb=cdb, status=status, residual=resid, residual_status=rs)
            if status not in (GOOD, CHECK_CONDITION, BUSY, RESERVATION_CONFLICT, 0x28):
                if status & 0x0F000000:
                    self.broken = True
                raise ScsiError("%s%s: status 0x%x: %s" % (what, cdb_name(cdb), status & 0xFFFFFFFF, self.error()))
            if status == CHECK_CONDITION:
                dsize = ctypes.c_int.from_address(task + OFF_DATAIN).value
                dptr = ctypes.c_void_p.from_address(task + OFF_DATAIN + 8).value
                raw = ctypes.string_at(dptr, dsize) if dptr and dsize > 0 else b""
                if len(raw) >= 2:
                    slen = struct.unpack(">H", raw[:2])[0]
                    raw = raw[2:2 + slen]
                res.sense = Sense.parse(raw)
            if direction == XFER_READ and into is None:
                n = xfer
                if rs == RESIDUAL_UNDERFLOW:
                    n = max(0, xfer - resid)
                res.buffer = buf.raw
                res.data = res.buffer[:n]
            if check and status == CHECK_CONDITION:
                raise CheckCondition(res, what)
            if check and status != GOOD:
                raise ScsiError("%s%s: status 0x%02x" % (what, cdb_name(cdb), status))
            return res
        finally:
            L.scsi_free_scsi_task(task)

    # ------------------------------------------------------ pyscsi adapter
    def execute_pyscsi(self, cmd, timeout=None):
        """Run a pyscsi SCSICommand (built with its opcode object) over this
        session: fills cmd.datain, raises CheckCondition (a subclass of pyscsi's
        SCSICheckCondition) with real sense on CHECK CONDITION."""
        dout = bytes(cmd.dataout) if len(cmd.dataout) else None
        r = self.execute(bytes(cmd.cdb), dout, len(cmd.datain) if dout is None else 0, check=True, timeout=timeout)
        if r.data:
            cmd.datain[:len(r.data)] = r.data
        return r

    # ------------------------------------------------------ common SPC
    def test_unit_ready(self):
        return self.execute(b"\x00" * 6)

    def inquiry(self, evpd=False, page=0, alloc=255):
        cdb = bytes([0x12, 1 if evpd else 0, page, alloc >> 8, alloc & 0xFF, 0])
        return self.execute(cdb, data_in_len=alloc, check=True).data

    def serial_number(self) -> str:
        d = self.inquiry(True, 0x80)
        return d[4:4 + d[3]].decode(errors="replace").strip()

    def wait_ready(self, timeout=60.0, poll=0.1, log=None):
        """Poll TEST UNIT READY until GOOD, swallowing UNIT ATTENTION and
        NOT READY (becoming ready / medium not present).  Returns the list of
        senses seen.  Bounded by `timeout` seconds."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            r = self.test_unit_ready()
            if r.good:
                return seen
            if r.check:
                seen.append(r.sense)
                if log:
                    log("    TEST UNIT READY: %s" % r.sense)
                if r.sense.key == UNIT_ATTENTION:
                    continue
                if r.sense.key != NOT_READY:
                    raise CheckCondition(r, "waiting for ready: ")
            if time.monotonic() > deadline:
                raise ScsiError("TEST UNIT READY not GOOD after %.0fs: %s" % (timeout, r.describe()))
            time.sleep(poll)


# ------------------------------------------------------------------ SSC

def step_client(timeout=60):
    """For the test clients that take `--portal P --target IQN STEP...`:
    parses those, logs in, clears the power-on unit attention (the first
    commands after login get it) and returns the session and the steps."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--portal", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("steps", nargs="+")
    a = p.parse_args()
    s = Session(a.portal, a.target, timeout=timeout)
    for _ in range(2):
        s.execute(bytes(6))
    return s, list(a.steps)


def _u24(n):
    if n < 0:
        n &= 0xFFFFFF
    return n.to_bytes(3, "big")


def cdb_read6(length, fixed=False, sili=False):
    return bytes([0x08, (0x02 if sili else 0) | (0x01 if fixed else 0)]) + _u24(length) + b"\x00"


def cdb_write6(length, fixed=False):
    return bytes([0x0A, 0x01 if fixed else 0]) + _u24(length) + b"\x00"


def cdb_write_filemarks6(count, immed=False, setmark=False):
    return bytes([0x10, (0x02 if setmark else 0) | (0x01 if immed else 0)]) + _u24(count) + b"\x00"


SPACE_BLOCKS, SPACE_FILEMARKS, SPACE_SEQ_FILEMARKS, SPACE_EOD = 0, 1, 2, 3


def cdb_space6(code, count):
    assert -(1 << 23) <= count < (1 << 23)
    return bytes([0x11, code & 0x0F]) + _u24(count) + b"\x00"


def cdb_space16(code, count, param_len=0):
    return bytes([0x91, code & 0x0F, 0, 0]) + struct.pack(">q", count) + struct.pack(">H", param_len) + b"\x00\x00"


def cdb_locate10(block, bt=False, cp=False, partition=0, immed=False):
    return bytes([0x2B, (0x04 if bt else 0) | (0x02 if cp else 0) | (0x01 if immed else 0), 0]) + \
        struct.pack(">I", block) + bytes([0, partition, 0])


def cdb_locate16(obj, dest_type=0, cp=False, partition=0, immed=False):
    return bytes([0x92, ((dest_type & 7) << 3) | (0x02 if cp else 0) | (0x01 if immed else 0), 0, partition]) + \
        struct.pack(">Q", obj) + b"\x00\x00\x00\x00"


RP_SHORT, RP_SHORT_VENDOR, RP_LONG, RP_EXTENDED = 0, 1, 6, 8


def cdb_read_position(sa=RP_SHORT, alloc=None):
    if alloc is None:
        alloc = 0 if sa in (RP_SHORT, RP_SHORT_VENDOR, RP_LONG) else 32
    return bytes([0x34, sa & 0x1F, 0, 0, 0, 0, 0]) + struct.pack(">H", alloc) + b"\x00"


def cdb_rewind(immed=False):
    return bytes([0x01, 0x01 if immed else 0, 0, 0, 0, 0])


def cdb_load_unload(load=True, immed=False, hold=False, eot=False, reten=False):
    return bytes([0x1B, 0x01 if immed else 0, 0, 0,
                  (0x08 if hold else 0) | (0x04 if eot else 0) | (0x02 if reten else 0) | (0x01 if load else 0), 0])


def cdb_erase(long=False, immed=False):
    return bytes([0x19, (0x02 if immed else 0) | (0x01 if long else 0), 0, 0, 0, 0])


def cdb_read_block_limits(mloi=False):
    return bytes([0x05, 0x01 if mloi else 0, 0, 0, 0, 0])


def cdb_mode_sense6(page, subpage=0, alloc=255, dbd=False, pc=0):
    return bytes([0x1A, 0x08 if dbd else 0, ((pc & 3) << 6) | (page & 0x3F), subpage, alloc & 0xFF, 0])


def cdb_mode_select6(length, pf=True, sp=False):
    return bytes([0x15, (0x10 if pf else 0) | (0x01 if sp else 0), 0, 0, length & 0xFF, 0])


def cdb_report_density_support(media=False, medium_type=False, alloc=8192):
    return bytes([0x44, (0x02 if medium_type else 0) | (0x01 if media else 0), 0, 0, 0, 0, 0]) + \
        struct.pack(">H", alloc) + b"\x00"


def cdb_log_sense(page, subpage=0, pc=1, ppc=False, sp=False, param_ptr=0, alloc=4096):
    return bytes([0x4D, (0x02 if ppc else 0) | (0x01 if sp else 0), ((pc & 3) << 6) | (page & 0x3F), subpage, 0]) + \
        struct.pack(">HH", param_ptr, alloc) + b"\x00"


def cdb_prevent_allow(prevent=True):
    return bytes([0x1E, 0, 0, 0, 1 if prevent else 0, 0])


@dataclass
class Position:
    form: str
    bop: bool = False
    eop: bool = False
    bpew: bool = False
    partition: int = 0
    first: Optional[int] = None  # first logical object (short/extended) / logical object number (long)
    last: Optional[int] = None
    file_number: Optional[int] = None  # long form only
    objects_in_buffer: Optional[int] = None
    bytes_in_buffer: Optional[int] = None
    locu: bool = False
    lolu: bool = False
    perr: bool = False
    mpu: bool = False
    lonu: bool = False
    raw: bytes = b""

    @classmethod
    def parse(cls, sa, d):
        if sa in (RP_SHORT, RP_SHORT_VENDOR):
            if len(d) < 20:
                raise ScsiError("READ POSITION short form: %d bytes" % len(d))
            p = cls("short", raw=d, bop=bool(d[0] & 0x80), eop=bool(d[0] & 0x40), locu=bool(d[0] & 0x20),
                    lolu=bool(d[0] & 0x04), perr=bool(d[0] & 0x02), bpew=bool(d[0] & 0x01), partition=d[1])
            if not p.perr:
                p.first, p.last = struct.unpack(">II", d[4:12])
            if not p.locu:
                p.objects_in_buffer = int.from_bytes(d[13:16], "big")
                p.bytes_in_buffer = struct.unpack(">I", d[16:20])[0]
            return p
        if sa == RP_LONG:
            if len(d) < 32:
                raise ScsiError("READ POSITION long form: %d bytes" % len(d))
            p = cls("long", raw=d, bop=bool(d[0] & 0x80), eop=bool(d[0] & 0x40), mpu=bool(d[0] & 0x08),
                    lonu=bool(d[0] & 0x04), bpew=bool(d[0] & 0x01))
            p.partition = struct.unpack(">I", d[4:8])[0]
            if not p.lonu:
                p.first = struct.unpack(">Q", d[8:16])[0]
            if not p.mpu:
                p.file_number = struct.unpack(">Q", d[16:24])[0]
            return p
        if sa == RP_EXTENDED:
            if len(d) < 32:
                raise ScsiError("READ POSITION extended form: %d bytes" % len(d))
            p = cls("extended", raw=d, bop=bool(d[0] & 0x80), eop=bool(d[0] & 0x40), locu=bool(d[0] & 0x20),
                    lolu=bool(d[0] & 0x04), perr=bool(d[0] & 0x02), bpew=bool(d[0] & 0x01), partition=d[1])
            if not p.perr:
                p.first, p.last = struct.unpack(">QQ", d[8:24])
            if not p.locu:
                p.objects_in_buffer = int.from_bytes(d[5:8], "big")
                p.bytes_in_buffer = struct.unpack(">Q", d[24:32])[0]
            return p
        raise ValueError(sa)


@dataclass
class ModeData:
    medium_type: int
    device_specific: int
    density: Optional[int]
    num_blocks: Optional[int]
    block_length: Optional[int]
    pages: bytes
    raw: bytes

    @property
    def write_protected(self):
        return bool(self.device_specific & 0x80)

    @property
    def buffered_mode(self):
        return (self.device_specific >> 4) & 7

    @classmethod
    def parse6(cls, d):
        n = min(len(d), d[0] + 1)
        bdl = d[3]
        dens = nb = bl = None
        if bdl >= 8:
            dens = d[4]
            nb = int.from_bytes(d[5:8], "big")
            bl = int.from_bytes(d[9:12], "big")
        return cls(d[1], d[2], dens, nb, bl, bytes(d[4 + bdl:n]), bytes(d[:n]))


def parse_log_page(d):
    """LOG SENSE data -> (page, subpage, {param_code: bytes})."""
    page, sub = d[0] & 0x3F, d[1]
    n = struct.unpack(">H", d[2:4])[0]
    body, params, i = d[4:4 + n], {}, 0
    while i + 4 <= len(body):
        code = struct.unpack(">H", body[i:i + 2])[0]
        ln = body[i + 3]
        params[code] = bytes(body[i + 4:i + 4 + ln])
        i += 4 + ln
    return page, sub, params


def parse_density_support(d):
    n = struct.unpack(">H", d[0:2])[0]
    out, i = [], 4
    while i + 52 <= min(len(d), n + 2):
        x = d[i:i + 52]
        out.append({
            "primary": x[0], "secondary": x[1], "wrtok": bool(x[2] & 0x80), "dup": bool(x[2] & 0x40),
            "deflt": bool(x[2] & 0x20), "bits_per_mm": int.from_bytes(x[5:8], "big"),
            "media_width": struct.unpack(">H", x[8:10])[0], "tracks": struct.unpack(">H", x[10:12])[0],
            "capacity_mb": struct.unpack(">I", x[12:16])[0],
            "organization": x[16:24].decode(errors="replace").strip(),
            "name": x[24:32].decode(errors="replace").strip(),
            "description": x[32:52].decode(errors="replace").strip(),
        })
        i += 52
    return out


class Tape(Session):
    """An SSC drive session with helpers.  Helpers with check=False return the
    Result (callers inspect sense); the others raise CheckCondition."""

    def read(self, length, fixed=False, sili=False, timeout=None, into=None) -> Result:
        return self.execute(cdb_read6(length, fixed, sili), data_in_len=length * (self.block_length if fixed else 1)
                            if into is None else 0, timeout=timeout, into=into)

    block_length = 0  # the fixed block length the caller last set (for read sizing)

    def write(self, data, fixed=False, blocks=None, timeout=None) -> Result:
        if fixed:
            assert self.block_length and len(data) % self.block_length == 0
            n = len(data) // self.block_length if blocks is None else blocks
        else:
            n = len(data)
        return self.execute(cdb_write6(n, fixed), data_out=data, timeout=timeout)

    def write_filemarks(self, count=1, immed=False) -> Result:
        return self.execute(cdb_write_filemarks6(count, immed))

    def space(self, code, count, sixteen=False) -> Result:
        return self.execute(cdb_space16(code, count) if sixteen else cdb_space6(code, count))

    def locate(self, obj, sixteen=False, partition=None) -> Result:
        if sixteen:
            return self.execute(cdb_locate16(obj, cp=partition is not None, partition=partition or 0))
        return self.execute(cdb_locate10(obj, cp=partition is not None, partition=partition or 0))

    def rewind(self, immed=False) -> Result:
        return self.execute(cdb_rewind(immed), timeout=max(self.timeout, 120))

    def load_unload(self, load=True, immed=False, eot=False, hold=False) -> Result:
        return self.execute(cdb_load_unload(load, immed, hold, eot), timeout=max(self.timeout, 120))

    def erase(self, long=False, immed=False) -> Result:
        return self.execute(cdb_erase(long, immed), timeout=max(self.timeout, 600) if long else None)

    def read_position(self, sa=RP_SHORT) -> Position:
        alloc = 32 if sa in (RP_LONG, RP_EXTENDED) else 20
        r = self.execute(cdb_read_position(sa), data_in_len=alloc, check=True)
        return Position.parse(sa, r.data)

    def read_block_limits(self):
        d = self.execute(cdb_read_block_limits(), data_in_len=6, check=True).data
        return {"granularity": d[0] & 0x1F, "max": int.from_bytes(d[1:4], "big"),
                "min": struct.unpack(">H", d[4:6])[0]}

    def mode_sense6(self, page=0x00, subpage=0, alloc=255, dbd=False, pc=0) -> ModeData:
        r = self.execute(cdb_mode_sense6(page, subpage, alloc, dbd, pc), data_in_len=alloc, check=True)
        return ModeData.parse6(r.data)

    def mode_select_block(self, block_length, density=0, buffered=1, pages=b"") -> Result:
        """MODE SELECT(6) with a header and one block descriptor (density,
        block length; 0 = variable)."""
        hdr = bytes([0, 0, (buffered & 7) << 4, 8])
        bd = bytes([density, 0, 0, 0, 0]) + block_length.to_bytes(3, "big")
        data = hdr + bd + pages
        r = self.execute(cdb_mode_select6(len(data)), data_out=data, check=True)
        self.block_length = block_length
        return r

    def report_density_support(self, media=False):
        r = self.execute(cdb_report_density_support(media), data_in_len=8192, check=True)
        return parse_density_support(r.data)

    def log_sense(self, page, subpage=0, pc=1):
        r = self.execute(cdb_log_sense(page, subpage, pc), data_in_len=4096, check=True)
        return parse_log_page(r.data)


# ------------------------------------------------------------------ SMC

ET_ALL, ET_TRANSPORT, ET_STORAGE, ET_IMPORT_EXPORT, ET_DATA_TRANSFER = 0, 1, 2, 3, 4
ET_NAMES = {1: "transport", 2: "storage", 3: "import/export", 4: "drive"}


def cdb_read_element_status(element_type=0, start=0, count=0xFFFF, alloc=0xFFFF, voltag=True, curdata=True,
                            dvcid=False):
    return bytes([0xB8, (0x10 if voltag else 0) | (element_type & 0x0F)]) + struct.pack(">HH", start, count) + \
        bytes([(0x02 if curdata else 0) | (0x01 if dvcid else 0)]) + alloc.to_bytes(3, "big") + b"\x00\x00"


def cdb_move_medium(transport, source, dest, invert=False):
    return bytes([0xA5, 0]) + struct.pack(">HHH", transport, source, dest) + bytes([0, 0, 1 if invert else 0, 0])


def cdb_initialize_element_status():
    return bytes([0x07, 0, 0, 0, 0, 0])


@dataclass
class Element:
    type: int
    address: int
    full: bool
    except_: bool = False
    access: bool = False
    impexp: bool = False
    asc: int = 0
    ascq: int = 0
    svalid: bool = False
    invert: bool = False
    source: Optional[int] = None
    barcode: Optional[str] = None
    alt_barcode: Optional[str] = None
    dvcid: Optional[bytes] = None  # identifier bytes of the identification descriptor
    dvcid_type: Optional[int] = None
    flags: int = 0

    @property
    def type_name(self):
        return ET_NAMES.get(self.type, str(self.type))

    def __str__(self):
        s = "%-13s %5d %s" % (self.type_name, self.address, "full " if self.full else "empty")
        if self.barcode:
            s += " barcode=%s" % self.barcode
        if self.svalid:
            s += " source=%d" % self.source
        if self.except_:
            s += " EXCEPT %02X/%02X" % (self.asc, self.ascq)
        if self.dvcid:
            s += " id=%r" % self.dvcid.decode(errors="replace")
        return s


def element_status_truncated(d) -> bool:
    """Whether READ ELEMENT STATUS data is cut short of the whole report:
    SMC-3 6.12.2 keeps NUMBER OF ELEMENTS AVAILABLE and BYTE COUNT OF
    REPORT AVAILABLE for the whole report whatever the allocation length,
    so a library with more elements than fit (AWS's 1,600 slots with
    volume tags) answers in parts."""
    return len(d) >= 8 and int.from_bytes(d[5:8], "big") > len(d) - 8


def parse_element_status(d, strict=True, alloc=None) -> List[Element]:
    """Parse READ ELEMENT STATUS data.  strict: the byte counts must add up
    (SMC-3: the report byte count excludes the 8-byte header), except that
    data cut at the allocation length `alloc` may end early, after a whole
    descriptor.  strict=False is for tgt, which counts the header in and so
    drops the last 8 bytes of the last descriptor: parse whatever is there,
    descriptors of at least 12 bytes (a 44-byte stump still holds the
    32-byte barcode)."""
    if len(d) < 8:
        raise ScsiError("READ ELEMENT STATUS: %d bytes" % len(d))
    nelem = struct.unpack(">H", d[2:4])[0]
    total = int.from_bytes(d[5:8], "big")
    truncated = total > len(d) - 8
    if strict and truncated and (alloc is None or len(d) > alloc):
        raise ScsiError("READ ELEMENT STATUS: report byte count %d > %d bytes returned" % (total, len(d) - 8))
    body = d[8:8 + total] if strict else d[8:]
    out = []
    while len(body) >= 8:
        etype = body[0] & 0x0F
        pvol, avol = bool(body[1] & 0x80), bool(body[1] & 0x40)
        dlen = struct.unpack(">H", body[2:4])[0]
        n = int.from_bytes(body[5:8], "big")
        page = body[8:8 + n]
        if dlen < 12:
            raise ScsiError("READ ELEMENT STATUS: element descriptor length %d" % dlen)
        if strict and ((len(page) != n and not truncated) or n % dlen or len(page) % dlen):
            raise ScsiError("READ ELEMENT STATUS: page of type %d: %d descriptor bytes, %d present, descriptor "
                            "length %d" % (etype, n, len(page), dlen))
        for off in range(0, len(page), dlen):
            if len(page) - off < (dlen if strict else 12):
                break
            e = page[off:off + dlen]
            el = Element(type=etype, address=struct.unpack(">H", e[0:2])[0], full=bool(e[2] & 0x01),
                         impexp=bool(e[2] & 0x02), except_=bool(e[2] & 0x04), access=bool(e[2] & 0x08),
                         flags=e[2], asc=e[4], ascq=e[5], svalid=bool(e[9] & 0x80), invert=bool(e[9] & 0x40))
            if el.svalid:
                el.source = struct.unpack(">H", e[10:12])[0]
            rest = e[12:]
            if pvol:
                tag = rest[:32].decode("ascii", errors="replace").rstrip(" \x00")
                el.barcode = tag or None
                rest = rest[36:]
            if avol:
                tag = rest[:32].decode("ascii", errors="replace").rstrip(" \x00")
                el.alt_barcode = tag or None
                rest = rest[36:]
            if len(rest) >= 4 and rest[3]:
                el.dvcid_type = rest[1] & 0x0F
                el.dvcid = bytes(rest[4:4 + rest[3]])
            out.append(el)
        body = body[8 + n:]
    if strict and not truncated and len(out) != nelem:
        raise ScsiError("READ ELEMENT STATUS: header says %d elements, %d parsed" % (nelem, len(out)))
    return out


@dataclass
class ElementMap:
    transport: tuple
    storage: tuple
    import_export: tuple
    drives: tuple  # (first address, count)


class Changer(Session):
    strict = True  # set False for tgt (see parse_element_status)

    def read_element_status(self, element_type, start=0, count=0xFFFF, voltag=True, dvcid=False,
                            alloc=0xFFFF) -> List[Element]:
        if element_type == ET_ALL and not self.strict:
            raise ValueError("READ ELEMENT STATUS type 0 corrupts tgtd's heap")
        """Asks again from the element after the last one returned while the
        report is cut at the allocation length (bounded)."""
        out = []
        for _ in range(256):
            r = self.execute(cdb_read_element_status(element_type, start, count, alloc, voltag, True, dvcid),
                             data_in_len=alloc, check=True, timeout=max(self.timeout, 60))
            part = parse_element_status(r.data, self.strict, alloc)
            out += part
            if not (self.strict and element_status_truncated(r.data)):
                return out
            if not part:
                raise ScsiError("READ ELEMENT STATUS: no whole descriptor within %d bytes" % alloc)
            start, count = part[-1].address + 1, count - len(part)
            if count <= 0:
                return out
        raise ScsiError("READ ELEMENT STATUS: report did not end within 256 requests")

    def inventory(self, dvcid=True) -> List[Element]:
        """All elements, asked type by type (never type 0: it corrupts tgtd's
        heap; read_element_status(ET_ALL) exercises it on other targets)."""
        out = []
        for t in (ET_TRANSPORT, ET_STORAGE, ET_IMPORT_EXPORT, ET_DATA_TRANSFER):
            out += self.read_element_status(t, dvcid=dvcid and t == ET_DATA_TRANSFER)
        return out

    def move_medium(self, transport, source, dest, invert=False) -> Result:
        return self.execute(cdb_move_medium(transport, source, dest, invert), timeout=max(self.timeout, 120))

    def initialize_element_status(self) -> Result:
        return self.execute(cdb_initialize_element_status(), timeout=max(self.timeout, 120))

    def element_map(self) -> ElementMap:
        r = self.execute(cdb_mode_sense6(0x1D, alloc=255, dbd=True), data_in_len=255, check=True)
        d = r.data
        p = d[4 + d[3]:]
        if (p[0] & 0x3F) != 0x1D or len(p) < 20:
            raise ScsiError("MODE SENSE page 0x1D: unexpected %s" % p[:20].hex())
        v = struct.unpack(">8H", p[2:18])
        return ElementMap((v[0], v[1]), (v[2], v[3]), (v[4], v[5]), (v[6], v[7]))

    # pyscsi-built CDBs (when pyscsi is installed), run over our session
    def pyscsi_move_medium(self, transport, source, dest):
        from pyscsi.pyscsi.scsi_cdb_movemedium import MoveMedium
        from pyscsi.pyscsi.scsi_enum_command import smc
        return self.execute_pyscsi(MoveMedium(smc.MOVE_MEDIUM, transport, source, dest))

    def pyscsi_read_element_status(self, element_type, start=0, num=0xFFFF, alloc=16384):
        from pyscsi.pyscsi.scsi_cdb_readelementstatus import ReadElementStatus
        from pyscsi.pyscsi.scsi_enum_command import smc
        cmd = ReadElementStatus(smc.READ_ELEMENT_STATUS, start, num, element_type=element_type, voltag=1,
                                alloclen=alloc)
        self.execute_pyscsi(cmd)
        return ReadElementStatus.unmarshall_datain(cmd.datain)


def cython_iscsi_shim():
    """Import cython-iscsi with the Cython 3 shim (ISCSI_SESSION_NORMAL is
    missing there).  Returns the module, or None if it is not installed.
    Use it only for commands that cannot return CHECK CONDITION."""
    try:
        import iscsi
    except ImportError:
        return None
    if not hasattr(iscsi, "ISCSI_SESSION_NORMAL"):
        iscsi.ISCSI_SESSION_NORMAL = getattr(iscsi.iscsi_session_type, "ISCSI_SESSION_NORMAL", 2)
    if not hasattr(iscsi, "ISCSI_HEADER_DIGEST_NONE_CRC32C"):
        iscsi.ISCSI_HEADER_DIGEST_NONE_CRC32C = getattr(iscsi.iscsi_header_digest,
                                                        "ISCSI_HEADER_DIGEST_NONE_CRC32C", 1)
    for name in ("SCSI_XFER_NONE", "SCSI_XFER_READ", "SCSI_XFER_WRITE"):
        if not hasattr(iscsi, name):
            setattr(iscsi, name, getattr(iscsi.scsi_xfer_dir, name, {"SCSI_XFER_NONE": 0, "SCSI_XFER_READ": 1,
                                                                      "SCSI_XFER_WRITE": 2}[name]))
    return iscsi


def parse_portal_url(url):
    """iscsi://[user%secret@]host:port/iqn/lun -> dict for Session(**...)."""
    assert url.startswith("iscsi://")
    rest = url[8:]
    user = secret = None
    if "@" in rest:
        cred, rest = rest.split("@", 1)
        user, _, secret = cred.partition("%")
    portal, target, lun = rest.split("/", 2)
    return dict(portal=portal, target=target, lun=int(lun or 0), chap_user=user, chap_secret=secret)
