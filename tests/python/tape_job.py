#!/usr/bin/env python3
"""A realistic backup job against a virtual tape library over iSCSI.

    python3 tape_job.py --portal 127.0.0.1:P --changer IQN --drive IQN
        [--drive-element N] [--barcode B] [--tgt-compat]
        [--changer-lun L] [--drive-lun L] [--chap-user U --chap-secret S]
        [--timeout SECONDS] [--deadline SECONDS]

Steps: inventory; tape from an import/export slot to a free storage slot if
needed; load it into the drive; wait ready; write three files (variable
64 KiB records + a short one; fixed 32 KiB blocks; variable 256 KiB and
1 MiB records), each with a filemark; rewind, read everything back bit for
bit with ILI/residual/filemark/EOD checks; SPACE, LOCATE and READ POSITION
checks; rewind, unload, move the tape to a free import/export slot.

Exits 0 when every check passed; otherwise prints "FAIL: <step>: <why>" and
exits 1 (2 for bad arguments).  Every SCSI command has a timeout, and
--deadline bounds the whole run (a C-level watchdog: it fires even inside a
hung libiscsi call).

--tgt-compat: Debian tgt's VTL is thin.  It never gets READ ELEMENT STATUS
type 0 (which we never send anyway), its short element status reports are
parsed leniently, READ POSITION / LOCATE / SPACE(16) / backward SPACE checks
are skipped (tgt returns zeros, lacks LOCATE, spaces backwards wrongly),
residuals are not checked on ILI/filemark reads (tgt swaps them), and end of
data may be BLANK CHECK with any ASC.  Devices default to LUN 1 there.

The pieces are functions taking sessions, for use from other tests:
    job = TapeJob(changer, drive, compat=False); job.run(barcode, drive_element)
"""

import argparse
import faulthandler
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sgw_scsi as S  # noqa: E402

KiB, MiB = 1024, 1024 * 1024


class JobError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def expect(cond, msg):
    if not cond:
        raise JobError(msg)


def record_data(file_no, rec_no, length):
    """Deterministic pseudo-random bytes of one record."""
    return random.Random(file_no * 1_000_003 + rec_no * 7919 + length).randbytes(length)


# The tape layout: a list of logical objects (records and filemarks) in order.
# Each record: dict(file=, rec=, data=, fixed=block length or 0).
def build_layout():
    files = []
    f1 = [record_data(0, i, 64 * KiB) for i in range(8)] + [record_data(0, 8, 1000)]
    files.append(("variable 64 KiB + short", 0, f1))
    f2 = [record_data(1, i, 32 * KiB) for i in range(12)]
    files.append(("fixed 32 KiB, 4 blocks per WRITE(6)", 32 * KiB, f2))
    f3 = [record_data(2, i, n) for i, n in enumerate([256 * KiB, 256 * KiB, 256 * KiB, 1 * MiB, 1 * MiB])]
    files.append(("variable 256 KiB and 1 MiB", 0, f3))
    objects = []
    for fno, (_, bl, recs) in enumerate(files):
        for rno, d in enumerate(recs):
            objects.append({"kind": "rec", "file": fno, "rec": rno, "data": d, "fixed": bl})
        objects.append({"kind": "fm", "file": fno})
    return files, objects


class TapeJob:
    def __init__(self, changer: S.Changer, drive: S.Tape, compat=False):
        self.ch = changer
        self.dr = drive
        self.compat = compat
        self.ch.strict = not compat
        self.files, self.objects = build_layout()
        self.first_obj = []  # object number of each file's first record
        n = 0
        for _, _, recs in self.files:
            self.first_obj.append(n)
            n += len(recs) + 1
        self.eod = n
        self.transport = None
        self.drive_addr = None
        self.home_slot = None

    # ------------------------------------------------------------ helpers
    def obj_of(self, file_no, rec_no):
        return self.first_obj[file_no] + rec_no

    def file_of(self, obj):
        """Logical file number at object position `obj` (filemarks before it)."""
        return sum(1 for o in self.objects[:obj] if o["kind"] == "fm")

    def check_pos(self, obj, what):
        """READ POSITION short and long form must both say `obj`."""
        if self.compat:
            return
        p = self.dr.read_position(S.RP_SHORT)
        expect(not p.perr and p.first == obj,
               "%s: READ POSITION short says first=%s (PERR=%s), expected %d" % (what, p.first, p.perr, obj))
        expect(p.bop == (obj == 0), "%s: BOP=%s at object %d" % (what, p.bop, obj))
        pl = self.dr.read_position(S.RP_LONG)
        expect(not pl.lonu and pl.first == obj, "%s: READ POSITION long says %s, expected %d" % (what, pl.first, obj))
        expect(pl.file_number == self.file_of(obj),
               "%s: READ POSITION long file number %s, expected %d" % (what, pl.file_number, self.file_of(obj)))
        log("    position %d (file %d) ok" % (obj, self.file_of(obj)))

    def ok(self, r: S.Result, what):
        if not r.good:
            raise JobError("%s: %s" % (what, r.describe()))
        return r

    def set_block(self, bl):
        self.dr.mode_select_block(bl)
        if not self.compat:
            m = self.dr.mode_sense6(0x00, alloc=12)
            expect(m.block_length == bl, "MODE SENSE block length %s after MODE SELECT %d" % (m.block_length, bl))

    # ------------------------------------------------------------ 1. inventory
    def inventory(self, title="inventory"):
        els = self.ch.inventory(dvcid=True)
        log("  %s:" % title)
        for e in els:
            if e.type != S.ET_STORAGE or e.full:
                log("    " + str(e))
        log("    (%d storage slots empty)" % sum(1 for e in els if e.type == S.ET_STORAGE and not e.full))
        for t in (S.ET_TRANSPORT, S.ET_STORAGE, S.ET_IMPORT_EXPORT, S.ET_DATA_TRANSFER):
            expect(any(e.type == t for e in els), "inventory has no %s element" % S.ET_NAMES[t])
        addrs = [e.address for e in els]
        expect(len(addrs) == len(set(addrs)), "duplicate element addresses in inventory")
        if not self.compat:
            m = self.ch.element_map()
            for t, (first, count) in ((1, m.transport), (2, m.storage), (3, m.import_export), (4, m.drives)):
                got = sorted(e.address for e in els if e.type == t)
                expect(got == list(range(first, first + count)),
                       "element address page says %s at %d x%d, READ ELEMENT STATUS gives %s"
                       % (S.ET_NAMES[t], first, count, got))
        return els

    def pick_drive(self, els, wanted=None):
        drives = [e for e in els if e.type == S.ET_DATA_TRANSFER]
        if wanted is not None:
            for e in drives:
                if e.address == wanted:
                    return e
            raise JobError("no drive element %d (drives: %s)" % (wanted, [e.address for e in drives]))
        serial = self.dr.serial_number()
        match = [e for e in drives if e.dvcid and serial and serial.encode() in e.dvcid]
        if len(match) == 1:
            log("  drive element %d matches the drive's serial %r (DVCID)" % (match[0].address, serial))
            return match[0]
        if len(drives) == 1:
            return drives[0]
        raise JobError("cannot tell which drive element is %s (serial %r): pass --drive-element"
                       % (self.dr.target, serial))

    # ------------------------------------------------------------ 2. load
    def load(self, els, barcode=None, drive_element=None):
        self.transport = next(e.address for e in els if e.type == S.ET_TRANSPORT)
        drive = self.pick_drive(els, drive_element)
        self.drive_addr = drive.address
        tapes = [e for e in els if e.full and e.barcode and e.type in (S.ET_STORAGE, S.ET_IMPORT_EXPORT,
                                                                        S.ET_DATA_TRANSFER)]
        if barcode is None:
            cand = [e for e in tapes if e.type != S.ET_DATA_TRANSFER]
            expect(cand, "no tape with a barcode in a slot")
            tape = cand[0]
        else:
            cand = [e for e in tapes if e.barcode == barcode]
            expect(len(cand) == 1, "tape %s: found %d times in the inventory" % (barcode, len(cand)))
            tape = cand[0]
        barcode = tape.barcode
        log("  tape %s is in %s element %d" % (barcode, tape.type_name, tape.address))
        if tape.type == S.ET_DATA_TRANSFER:
            expect(tape.address == drive.address, "tape %s is in another drive (%d)" % (barcode, tape.address))
            log("  already in our drive")
            self.home_slot = tape.source
        else:
            if drive.full:
                raise JobError("drive element %d is full (%s)" % (drive.address, drive.barcode))
            if tape.type == S.ET_IMPORT_EXPORT:
                free = [e for e in els if e.type == S.ET_STORAGE and not e.full]
                expect(free, "no free storage slot to import %s into" % barcode)
                dest = free[0].address
                log("  MOVE MEDIUM import/export %d -> storage %d" % (tape.address, dest))
                self.ok(self.ch.move_medium(self.transport, tape.address, dest), "MOVE MEDIUM i/e -> storage")
                els = self.ch.inventory()
                slot = next(e for e in els if e.address == dest)
                expect(slot.full and slot.barcode == barcode,
                       "after import, slot %d is %s" % (dest, slot))
                tape = slot
            self.home_slot = tape.address
            log("  MOVE MEDIUM storage %d -> drive %d" % (tape.address, drive.address))
            self.ok(self.ch.move_medium(self.transport, tape.address, drive.address), "MOVE MEDIUM slot -> drive")
            els = self.ch.inventory()
            d = next(e for e in els if e.address == drive.address)
            s = next(e for e in els if e.address == tape.address)
            expect(d.full, "drive element %d not full after MOVE MEDIUM" % drive.address)
            expect(d.barcode == barcode, "drive element shows barcode %r, expected %r" % (d.barcode, barcode))
            expect(not s.full, "source slot %d still full after MOVE MEDIUM" % tape.address)
            if not self.compat:
                expect(d.svalid and d.source == tape.address,
                       "drive element source %s, expected %d" % (d.source if d.svalid else None, tape.address))
            # Moving a tape into a full drive must be refused.
            other = [e for e in els if e.type == S.ET_STORAGE and e.full]
            if other and not self.compat:
                r = self.ch.move_medium(self.transport, other[0].address, drive.address)
                expect(r.is_sense(S.ILLEGAL_REQUEST, 0x3B, 0x0D),
                       "MOVE MEDIUM into a full drive: %s (want ILLEGAL REQUEST 3B/0D)" % r.describe())
                log("  MOVE MEDIUM into the full drive refused: %s" % r.sense)
        seen = self.dr.wait_ready(timeout=max(60, self.dr.timeout), log=log)
        log("  drive ready (%s)" % (", ".join(str(s) for s in seen) or "no unit attention"))
        return barcode

    # ------------------------------------------------------------ 3. write
    def write(self):
        bl = self.dr.read_block_limits()
        log("  READ BLOCK LIMITS: %s" % bl)
        expect(bl["max"] >= 1 * MiB, "maximum block length %d < 1 MiB" % bl["max"])
        m = self.dr.mode_sense6(0x3F)
        log("  MODE SENSE: density 0x%02x block length %s WP=%s buffered=%d" % (
            m.density or 0, m.block_length, m.write_protected, m.buffered_mode))
        expect(not m.write_protected, "tape is write protected")
        if not self.compat:
            dens = self.dr.report_density_support(media=True)
            log("  REPORT DENSITY SUPPORT (media): %s" % ", ".join("0x%02x %s" % (d["primary"], d["name"])
                                                                    for d in dens))
            expect(dens, "REPORT DENSITY SUPPORT (media) lists nothing")
        self.ok(self.dr.rewind(), "REWIND")
        self.check_pos(0, "after load+rewind")
        obj = 0
        for fno, (desc, bl, recs) in enumerate(self.files):
            self.set_block(bl)
            if bl:
                for i in range(0, len(recs), 4):
                    chunk = b"".join(recs[i:i + 4])
                    self.ok(self.dr.write(chunk, fixed=True), "file %d WRITE(6) fixed blocks %d.." % (fno, i))
                    obj += len(recs[i:i + 4])
            else:
                for i, d in enumerate(recs):
                    self.ok(self.dr.write(d), "file %d WRITE(6) record %d (%d bytes)" % (fno, i, len(d)))
                    obj += 1
            self.check_pos(obj, "file %d written" % fno)
            self.ok(self.dr.write_filemarks(1), "file %d WRITE FILEMARKS" % fno)
            obj += 1
            self.check_pos(obj, "file %d filemark" % fno)
            log("  file %d written: %s, %d records, %d bytes" % (fno, desc, len(recs), sum(map(len, recs))))
        self.set_block(0)

    # ------------------------------------------------------------ 4. read back
    def read_rec(self, obj, length=None, sili=False, what=""):
        """Variable-mode READ(6) of the record at `obj`, checked."""
        o = self.objects[obj]
        expect(o["kind"] == "rec", "object %d is not a record" % obj)
        data = o["data"]
        want = len(data) if length is None else length
        r = self.dr.read(want, sili=sili)
        tag = "%sREAD(6) %d of file %d record %d (%d bytes)" % (what, want, o["file"], o["rec"], len(data))
        if want == len(data):
            expect(r.good, "%s: %s" % (tag, r.describe()))
            got = r.data
        elif sili and want > len(data):
            if self.compat:  # tgt may ignore SILI
                expect(r.good or (r.check and r.sense.ili), "%s with SILI: %s" % (tag, r.describe()))
                got = r.buffer[:len(data)]
            else:
                expect(r.good, "%s with SILI: %s" % (tag, r.describe()))
                expect(r.residual_status == S.RESIDUAL_UNDERFLOW and r.residual == want - len(data),
                       "%s with SILI: residual %s" % (tag, r.describe()))
                got = r.data
            log("    %s with SILI: %s" % (tag, r.describe()))
        else:
            expect(r.check and r.sense.key == S.NO_SENSE and r.sense.ili and r.sense.valid,
                   "%s: want ILI, got %s" % (tag, r.describe()))
            expect(r.sense.information == want - len(data),
                   "%s: ILI INFORMATION %d, want %d" % (tag, r.sense.information, want - len(data)))
            n = min(want, len(data))
            if not self.compat:
                expect(r.residual == max(0, want - len(data)),
                       "%s: residual %d, want %d" % (tag, r.residual, max(0, want - len(data))))
                got = r.data
            else:
                # tgt sends no data for an oversized record (residual = the whole
                # request), and for an undersized one reports residual 0 with
                # the data present: take the data by length, accept none.
                got = r.data[:n] if r.residual < want else b""
                if not got:
                    log("    %s: %s (tgt: no data transferred)" % (tag, r.describe()))
                    return r
            expect(len(got) == n, "%s: %d bytes of data, want %d" % (tag, len(got), n))
            data = data[:n]
            log("    %s: %s" % (tag, r.describe()))
        expect(got == data, "%s: data mismatch" % tag)
        return r

    def read_filemark(self, length=64 * KiB, fixed=False, what=""):
        r = self.dr.read(length, fixed=fixed)
        tag = "%sREAD(6) at a filemark" % what
        expect(r.check and r.sense.key == S.NO_SENSE and r.sense.filemark and r.sense.asc == 0
               and r.sense.ascq == 1, "%s: want NO SENSE 00/01 FILEMARK, got %s" % (tag, r.describe()))
        expect(r.sense.valid and r.sense.information == length,
               "%s: INFORMATION %s, want %d" % (tag, r.sense.information, length))
        if not self.compat:
            total = length * (self.dr.block_length if fixed else 1)
            expect(r.residual == total and not r.data, "%s: residual %d data %d bytes, want %d and none"
                   % (tag, r.residual, len(r.data), total))
        log("    %s: %s" % (tag, r.sense))

    def read_eod(self, what=""):
        r = self.dr.read(64 * KiB)
        tag = "%sREAD(6) at end of data" % what
        if self.compat:
            expect(r.check and r.sense.key == S.BLANK_CHECK, "%s: want BLANK CHECK, got %s" % (tag, r.describe()))
        else:
            expect(r.is_sense(S.BLANK_CHECK, 0x00, 0x05), "%s: want BLANK CHECK 00/05, got %s" % (tag, r.describe()))
            expect(not r.data and r.residual == 64 * KiB, "%s: data %d residual %d" % (tag, len(r.data), r.residual))
        log("    %s: %s" % (tag, r.sense))

    def read_all(self):
        self.ok(self.dr.rewind(), "REWIND")
        self.check_pos(0, "rewound")
        # file 0: exact, short request (ILI, negative INFORMATION), long request
        # (ILI, positive INFORMATION + residual), then exact, the short last
        # record with SILI (GOOD + residual, or ILI on tgt), then the filemark.
        f0 = self.first_obj[0]
        recs0 = self.files[0][2]
        self.read_rec(f0 + 0)
        self.read_rec(f0 + 1, length=4096, what="short request: ")
        self.check_pos(f0 + 2, "after a short read")
        self.read_rec(f0 + 2, length=128 * KiB, what="long request: ")
        for i in range(3, len(recs0) - 1):
            self.read_rec(f0 + i)
        self.read_rec(f0 + len(recs0) - 1, length=64 * KiB, sili=True, what="short record: ")
        self.read_filemark(what="file 0 end: ")
        self.check_pos(self.first_obj[1], "after filemark 0")
        # file 1: fixed 32 KiB, 4 blocks per READ(6), then FILEMARK with INFORMATION = 4
        self.set_block(32 * KiB)
        recs1 = self.files[1][2]
        for i in range(0, len(recs1), 4):
            r = self.ok(self.dr.read(4, fixed=True), "READ(6) fixed 4 blocks at file 1 block %d" % i)
            expect(r.data == b"".join(recs1[i:i + 4]), "file 1 blocks %d..%d: data mismatch" % (i, i + 3))
        self.read_filemark(length=4, fixed=True, what="file 1 end (fixed): ")
        self.set_block(0)
        self.check_pos(self.first_obj[2], "after filemark 1")
        for i in range(len(self.files[2][2])):
            self.read_rec(self.first_obj[2] + i)
        self.read_filemark(length=1 * MiB, what="file 2 end: ")
        self.check_pos(self.eod, "after filemark 2")
        self.read_eod()
        log("  read back %d records in 3 files bit for bit" % sum(len(f[2]) for f in self.files))

    def positioning(self):
        sp = self.dr.space
        self.ok(self.dr.rewind(), "REWIND")
        self.check_pos(0, "rewound")
        self.ok(sp(S.SPACE_FILEMARKS, 2), "SPACE(6) 2 filemarks")
        log("  SPACE(6) filemarks +2")
        self.check_pos(self.first_obj[2], "SPACE filemarks +2")
        self.read_rec(self.first_obj[2])
        if not self.compat:
            self.ok(sp(S.SPACE_FILEMARKS, -1), "SPACE(6) filemarks -1")
            log("  SPACE(6) filemarks -1")
            self.check_pos(self.first_obj[2] - 1, "SPACE filemarks -1 (BOP side of the filemark)")
            self.ok(sp(S.SPACE_BLOCKS, -1), "SPACE(6) blocks -1")
            log("  SPACE(6) blocks -1")
            last1 = self.first_obj[2] - 2
            self.check_pos(last1, "SPACE blocks -1")
            self.read_rec(last1)
            r = sp(S.SPACE_BLOCKS, 1)
            expect(r.check and r.sense.key == S.NO_SENSE and r.sense.filemark and r.sense.valid
                   and r.sense.information == 1 and (r.sense.asc, r.sense.ascq) == (0, 1),
                   "SPACE(6) 1 block onto a filemark: want FILEMARK 00/01 INFO=1, got %s" % r.describe())
            log("  SPACE(6) block onto a filemark: %s" % r.sense)
            self.check_pos(self.first_obj[2], "after spacing onto a filemark")
            r = sp(S.SPACE_FILEMARKS, -2, sixteen=True)
            self.ok(r, "SPACE(16) filemarks -2")
            log("  SPACE(16) filemarks -2")
            self.check_pos(self.first_obj[1] - 1, "SPACE(16) filemarks -2")
            r = sp(S.SPACE_BLOCKS, -5)
            expect(r.good, "SPACE(6) blocks -5: %s" % r.describe())
            self.check_pos(self.first_obj[1] - 6, "SPACE blocks -5")
            self.read_rec(self.first_obj[1] - 6)
        self.ok(self.dr.rewind(), "REWIND")
        self.ok(sp(S.SPACE_BLOCKS, 3), "SPACE(6) 3 blocks")
        log("  SPACE(6) blocks +3")
        self.check_pos(3, "SPACE blocks +3")
        self.read_rec(3)
        self.ok(self.dr.rewind(), "REWIND")
        self.ok(sp(S.SPACE_FILEMARKS, 1), "SPACE(6) 1 filemark")
        self.ok(sp(S.SPACE_BLOCKS, 2), "SPACE(6) 2 blocks")
        log("  SPACE(6) filemarks +1, blocks +2")
        self.check_pos(self.first_obj[1] + 2, "SPACE filemarks +1 blocks +2")
        self.read_rec(self.first_obj[1] + 2)
        self.ok(sp(S.SPACE_EOD, 0), "SPACE(6) to end of data")
        log("  SPACE(6) to end of data")
        self.check_pos(self.eod, "SPACE to EOD")
        self.read_eod(what="after SPACE EOD: ")
        if not self.compat:
            for obj, sixteen in ((5, False), (self.first_obj[1] + 5, True), (self.first_obj[2] + 3, False),
                                 (self.first_obj[2] + 4, True), (1, True)):
                self.ok(self.dr.locate(obj, sixteen=sixteen), "LOCATE(%d) %d" % (16 if sixteen else 10, obj))
                log("  LOCATE(%d) to object %d" % (16 if sixteen else 10, obj))
                self.check_pos(obj, "LOCATE %d" % obj)
                self.read_rec(obj)
            self.ok(self.dr.locate(self.first_obj[1] - 1), "LOCATE to a filemark")
            self.read_filemark(what="after LOCATE to filemark 0: ")
            self.ok(self.dr.locate(0, sixteen=True), "LOCATE(16) 0")
            self.check_pos(0, "LOCATE 0")
            ext = self.dr.read_position(S.RP_EXTENDED)
            expect(ext.first == 0 and ext.bop, "READ POSITION extended at BOP: %s" % ext)
        else:
            log("  (tgt-compat: READ POSITION, LOCATE, SPACE(16) and backward SPACE checks skipped)")

    # ------------------------------------------------------------ 5. unload
    def unload(self, barcode):
        self.ok(self.dr.rewind(), "REWIND")
        self.ok(self.dr.load_unload(load=False), "LOAD UNLOAD (unload)")
        log("  unloaded")
        r = self.dr.test_unit_ready()
        if not self.compat:  # tgt still says GOOD after an unload
            expect(r.check and r.sense.key == S.NOT_READY,
                   "TEST UNIT READY after unload: %s (want NOT READY)" % r.describe())
        log("  TEST UNIT READY after unload: %s" % r.describe())
        els = self.ch.inventory()
        free = [e for e in els if e.type == S.ET_IMPORT_EXPORT and not e.full]
        expect(free, "no free import/export slot to export %s" % barcode)
        dest = free[0].address
        log("  MOVE MEDIUM drive %d -> import/export %d" % (self.drive_addr, dest))
        self.ok(self.ch.move_medium(self.transport, self.drive_addr, dest), "MOVE MEDIUM drive -> i/e")
        els = self.inventory("inventory after export")
        d = next(e for e in els if e.address == self.drive_addr)
        ie = next(e for e in els if e.address == dest)
        expect(not d.full, "drive %d still full after export" % self.drive_addr)
        expect(ie.full and ie.barcode == barcode, "import/export slot %d: %s" % (dest, ie))
        return dest

    def run(self, barcode=None, drive_element=None):
        step("1 inventory")
        els = self.inventory()
        step("2 load")
        barcode = self.load(els, barcode, drive_element)
        step("3 write three files")
        self.write()
        step("4 read back and position")
        self.read_all()
        self.positioning()
        step("5 rewind, unload, export")
        slot = self.unload(barcode)
        return barcode, slot


_current_step = ["setup"]


def step(name):
    _current_step[0] = name
    log("== step %s" % name)


def add_connection_args(p):
    p.add_argument("--portal", required=True, help="host:port")
    p.add_argument("--changer", help="changer target IQN")
    p.add_argument("--drive", required=True, help="drive target IQN")
    p.add_argument("--changer-lun", type=int)
    p.add_argument("--drive-lun", type=int)
    p.add_argument("--chap-user")
    p.add_argument("--chap-secret")
    p.add_argument("--timeout", type=int, default=30, help="per-command timeout, seconds")
    p.add_argument("--deadline", type=int, default=600, help="whole-run bound, seconds")
    p.add_argument("--tgt-compat", action="store_true")


def open_sessions(a, need_changer=True):
    lun_default = 1 if a.tgt_compat else 0
    kw = dict(chap_user=a.chap_user, chap_secret=a.chap_secret, timeout=a.timeout)
    ch = None
    if a.changer and need_changer:
        ch = S.Changer(a.portal, a.changer, lun_default if a.changer_lun is None else a.changer_lun, **kw)
        ch.strict = not a.tgt_compat
    dr = S.Tape(a.portal, a.drive, lun_default if a.drive_lun is None else a.drive_lun, **kw)
    return ch, dr


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_connection_args(p)
    p.add_argument("--drive-element", type=int)
    p.add_argument("--barcode")
    a = p.parse_args(argv)
    if not a.changer:
        p.error("--changer is required")
    faulthandler.dump_traceback_later(a.deadline, exit=True)
    t0 = time.monotonic()
    try:
        step("connect")
        ch, dr = open_sessions(a)
        job = TapeJob(ch, dr, compat=a.tgt_compat)
        barcode, slot = job.run(a.barcode, a.drive_element)
    except (JobError, S.ScsiError, S.CheckCondition) as e:
        print("FAIL: step %s: %s" % (_current_step[0], e), file=sys.stderr, flush=True)
        return 1
    log("PASS: tape %s written, verified and exported to import/export slot %d in %.1fs"
        % (barcode, slot, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
