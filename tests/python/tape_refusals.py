#!/usr/bin/env python3
"""Refusal checks on a loaded tape, chosen by the caller.

    python3 tape_refusals.py --portal 127.0.0.1:P --drive IQN
        [--changer IQN --barcode B [--drive-element N] [--unload]]
        [--expect-write-protected] [--expect-worm] [--small-tape [--max-bytes N]]
        [--tgt-compat] [--drive-lun L] [--changer-lun L] [--timeout S] [--deadline S]

With --changer and --barcode the tape is loaded first (as tape_job.py does)
and, with --unload, rewound, unloaded and put back in its slot at the end.
Otherwise the tape must already be in the drive.

--expect-write-protected: MODE SENSE shows WP; WRITE(6) and WRITE FILEMARKS
    are refused with DATA PROTECT 27/00; reads still work.
--expect-worm: appending at end of data works; overwriting after REWIND (and
    after LOCATE, not with --tgt-compat) is refused with DATA PROTECT 30/0C
    (any DATA PROTECT with --tgt-compat); the appended record reads back.
--small-tape: writes 256 KiB records from BOP until early warning (CHECK
    CONDITION, NO SENSE, EOM, 00/02 or 00/07, record written), then until
    VOLUME OVERFLOW (EOM, 00/02, VALID, INFORMATION = residue, record not
    written).  Bounded by --max-bytes (default 1 GiB).  Overwrites the tape.

Exit 0 when every chosen check passed, 1 with "FAIL: <check>: <why>".
"""

import argparse
import faulthandler
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sgw_scsi as S  # noqa: E402
import tape_job as J  # noqa: E402
from tape_job import expect, log  # noqa: E402

KiB, MiB = 1024, 1024 * 1024


def _reads_work(dr, what):
    """Reads from BOP must not be refused: a record, a filemark or blank."""
    dr.mode_select_block(0)
    r = dr.rewind()
    expect(r.good, "%s: REWIND: %s" % (what, r.describe()))
    r = dr.read(1 * MiB, sili=True)
    ok = r.good or (r.check and r.sense.key in (S.NO_SENSE, S.BLANK_CHECK))
    expect(ok, "%s: READ(6) from BOP refused: %s" % (what, r.describe()))
    log("  read from BOP: %s" % r.describe())


def check_write_protected(dr, compat=False):
    J.step("write protected")
    m = dr.mode_sense6(0x00, alloc=12)
    log("  MODE SENSE device-specific 0x%02x (WP=%s)" % (m.device_specific, m.write_protected))
    if not compat:
        expect(m.write_protected, "MODE SENSE does not show WP")
    r = dr.rewind()
    expect(r.good, "REWIND: %s" % r.describe())
    r = dr.write(J.record_data(9, 0, 64 * KiB))
    expect(r.is_sense(S.DATA_PROTECT, 0x27, 0x00), "WRITE(6) on a protected tape: %s (want DATA PROTECT 27/00)"
           % r.describe())
    log("  WRITE(6) refused: %s" % r.sense)
    r = dr.write_filemarks(1)
    expect(r.is_sense(S.DATA_PROTECT, 0x27, 0x00),
           "WRITE FILEMARKS on a protected tape: %s (want DATA PROTECT 27/00)" % r.describe())
    log("  WRITE FILEMARKS refused: %s" % r.sense)
    _reads_work(dr, "write protected")


def _read_to_eod(dr, limit=100000):
    """Read every record from BOP to end of data (bounded); returns the list
    of (kind, data)."""
    out = []
    dr.mode_select_block(0)
    r = dr.rewind()
    expect(r.good, "REWIND: %s" % r.describe())
    for _ in range(limit):
        r = dr.read(1 * MiB, sili=True)
        if r.good or (r.check and r.sense.key == S.NO_SENSE and r.sense.ili and not r.sense.filemark):
            n = len(r.data)
            if r.check:  # take the record length from INFORMATION (residue)
                n = 1 * MiB - r.sense.information
            out.append(("rec", r.buffer[:n]))
        elif r.check and r.sense.filemark:
            out.append(("fm", b""))
        elif r.check and r.sense.key == S.BLANK_CHECK:
            return out
        else:
            raise J.JobError("reading to end of data: %s" % r.describe())
    raise J.JobError("no end of data within %d objects" % limit)


def check_worm(dr, compat=False):
    J.step("WORM")
    dr.mode_select_block(0)
    r = dr.space(S.SPACE_EOD, 0)
    expect(r.good, "SPACE(6) to end of data: %s" % r.describe())
    payload = J.record_data(7, 7, 64 * KiB)
    r = dr.write(payload)
    expect(r.good, "append at end of data on WORM: %s" % r.describe())
    r = dr.write_filemarks(1)
    expect(r.good, "filemark appended on WORM: %s" % r.describe())
    log("  appended a 64 KiB record and a filemark at end of data")

    def refused(r, what):
        if compat:
            expect(r.check and r.sense.key == S.DATA_PROTECT, "%s: %s (want DATA PROTECT)" % (what, r.describe()))
        else:
            expect(r.is_sense(S.DATA_PROTECT, 0x30, 0x0C), "%s: %s (want DATA PROTECT 30/0C)" % (what, r.describe()))
        log("  %s refused: %s" % (what, r.sense))

    r = dr.rewind()
    expect(r.good, "REWIND: %s" % r.describe())
    refused(dr.write(J.record_data(7, 8, 64 * KiB)), "WRITE(6) at BOP after REWIND")
    r = dr.rewind()
    refused(dr.write_filemarks(1), "WRITE FILEMARKS at BOP")
    if not compat:
        r = dr.locate(1)
        expect(r.good, "LOCATE 1: %s" % r.describe())
        refused(dr.write(J.record_data(7, 9, 64 * KiB)), "WRITE(6) after LOCATE 1")
    objs = _read_to_eod(dr)
    expect(len(objs) >= 2 and objs[-1][0] == "fm" and objs[-2] == ("rec", payload),
           "appended record not found before end of data (%d objects)" % len(objs))
    log("  appended record reads back intact; %d objects on tape" % len(objs))


def check_small_tape(dr, max_bytes=1 << 30, rec=256 * KiB, compat=False):
    J.step("small tape")
    dr.mode_select_block(0)
    r = dr.rewind()
    expect(r.good, "REWIND: %s" % r.describe())
    data = J.record_data(5, 5, rec)
    written = 0
    ew_at = None
    for i in range(max_bytes // rec + 1):
        r = dr.write(data)
        if r.good:
            written += rec
            continue
        expect(r.check, "WRITE(6) %d: %s" % (i, r.describe()))
        s = r.sense
        if ew_at is None and s.key == S.NO_SENSE:
            expect(s.eom and ((s.asc, s.ascq) in ((0, 2), (0, 7)) or compat),  # tgt: 00/00
                   "early warning: %s (want NO SENSE EOM 00/02 or 00/07)" % r.describe())
            if not compat:
                expect(not s.valid or s.information == 0, "early warning write not complete: %s" % r.describe())
            written += rec
            ew_at = written
            log("  early warning after %d bytes (%d records): %s" % (written, i + 1, r.describe()))
            continue
        if s.key == S.VOLUME_OVERFLOW:
            expect(ew_at is not None or compat, "VOLUME OVERFLOW without an early warning first")
            expect(s.eom, "VOLUME OVERFLOW without EOM: %s" % r.describe())
            if not compat:
                expect((s.asc, s.ascq) == (0, 2), "VOLUME OVERFLOW %02X/%02X, want 00/02" % (s.asc, s.ascq))
                expect(s.valid and 0 < s.information <= rec,
                       "VOLUME OVERFLOW residue: VALID=%s INFORMATION=%d, want 1..%d" % (s.valid, s.information, rec))
            log("  VOLUME OVERFLOW after %d bytes (%d after early warning): %s"
                % (written, written - (ew_at or 0), r.describe()))
            if ew_at is None:
                log("  (tgt-compat: no early warning was reported)")
            return written
        if s.key == S.NO_SENSE and s.eom:  # more warnings between EW and the end
            written += rec
            if compat and written - ew_at >= 64 * rec:
                log("  (tgt-compat: tgt writes on past its size after early warning; VOLUME OVERFLOW not checked)")
                return written
            continue
        raise J.JobError("WRITE(6) %d after %d bytes: %s" % (i, written, r.describe()))
    raise J.JobError("no VOLUME OVERFLOW within --max-bytes %d (early warning at %s)" % (max_bytes, ew_at))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    J.add_connection_args(p)
    p.add_argument("--barcode")
    p.add_argument("--drive-element", type=int)
    p.add_argument("--unload", action="store_true", help="rewind, unload and return the tape to its slot")
    p.add_argument("--expect-write-protected", action="store_true")
    p.add_argument("--expect-worm", action="store_true")
    p.add_argument("--small-tape", action="store_true")
    p.add_argument("--max-bytes", type=int, default=1 << 30)
    a = p.parse_args(argv)
    if not (a.expect_write_protected or a.expect_worm or a.small_tape):
        p.error("choose at least one check")
    faulthandler.dump_traceback_later(a.deadline, exit=True)
    try:
        J.step("connect")
        ch, dr = J.open_sessions(a, need_changer=bool(a.barcode))
        job = None
        if a.barcode:
            expect(ch is not None, "--barcode needs --changer")
            job = J.TapeJob(ch, dr, compat=a.tgt_compat)
            J.step("load %s" % a.barcode)
            job.load(job.inventory(), a.barcode, a.drive_element)
        else:
            dr.wait_ready(timeout=max(60, a.timeout), log=log)
        if a.expect_write_protected:
            check_write_protected(dr, a.tgt_compat)
        if a.expect_worm:
            check_worm(dr, a.tgt_compat)
        if a.small_tape:
            check_small_tape(dr, a.max_bytes, compat=a.tgt_compat)
        if job and a.unload:
            J.step("unload")
            expect(dr.rewind().good, "REWIND failed")
            expect(dr.load_unload(load=False).good, "LOAD UNLOAD failed")
            r = ch.move_medium(job.transport, job.drive_addr, job.home_slot)
            expect(r.good, "MOVE MEDIUM drive -> slot %s: %s" % (job.home_slot, r.describe()))
            log("  tape back in slot %d" % job.home_slot)
    except (J.JobError, S.ScsiError, S.CheckCondition) as e:
        print("FAIL: %s: %s" % (J._current_step[0], e), file=sys.stderr, flush=True)
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
