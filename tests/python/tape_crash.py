#!/usr/bin/env python3
"""Crash checks for a tape: write files until killed, then verify.

    python3 tape_crash.py write --portal P --changer IQN --drive IQN --barcode B [--files N]
    python3 tape_crash.py verify --portal P --changer IQN --drive IQN --barcode B --committed N

write: loads the tape into the drive, then writes files of 24 variable
records (64 KiB, with a short one at the end) each followed by a filemark,
printing "COMMITTED <n>" once the filemark ending file n-1 is acknowledged.
Stops after --files files (default 1000): the caller kills the gateway
meanwhile.

verify: the tape must still be in the drive element it was loaded into
(library state survived); reading from BOP, the first --committed files read
back bit for bit with their filemarks; whatever follows is whole files of the
same pattern; then end of data (BLANK CHECK).  Nothing torn, nothing
invented.

Exit 0 on success, 1 with "FAIL: <why>".
"""

import argparse
import faulthandler
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sgw_scsi as S  # noqa: E402
import tape_job as J  # noqa: E402
from tape_job import expect, log  # noqa: E402

KiB = 1024
RECORDS = 24


def record(file_no, rec_no):
    length = 64 * KiB if rec_no < RECORDS - 1 else 777 + file_no
    return J.record_data(100 + file_no, rec_no, length)


def write(job, dr, barcode, files):
    job.load(job.inventory(), barcode)
    dr.mode_select_block(0)
    expect(dr.rewind().good, "REWIND")
    for f in range(files):
        for i in range(RECORDS):
            r = dr.write(record(f, i))
            expect(r.good, "file %d record %d: %s" % (f, i, r.describe()))
        r = dr.write_filemarks(1)
        expect(r.good, "file %d filemark: %s" % (f, r.describe()))
        print("COMMITTED %d" % (f + 1), flush=True)


def verify(job, dr, barcode, committed):
    els = job.inventory()
    here = [e for e in els if e.full and e.barcode == barcode]
    expect(len(here) == 1 and here[0].type == S.ET_DATA_TRANSFER,
           "tape %s should still be in a drive: %s" % (barcode, [str(e) for e in here]))
    dr.wait_ready(timeout=60, log=log)
    dr.mode_select_block(0)
    expect(dr.rewind().good, "REWIND")
    f = 0
    while True:
        for i in range(RECORDS):
            want = record(f, i)
            r = dr.read(64 * KiB, sili=True)
            if i == 0 and r.check and r.sense.key == S.BLANK_CHECK:
                expect(f >= committed, "end of data after %d files, %d were committed" % (f, committed))
                log("  %d whole files read back (%d committed before the kill); then end of data" % (f, committed))
                return
            got = r.data if r.good else b""
            expect(r.good and got == want, "file %d record %d: %s, %d bytes, data %s"
                   % (f, i, r.describe(), len(got), "ok" if got == want else "differs"))
        r = dr.read(64 * KiB)
        expect(r.check and r.sense.filemark, "file %d: no filemark after its records: %s" % (f, r.describe()))
        f += 1
        expect(f < 100000, "no end of data")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["write", "verify"])
    J.add_connection_args(p)
    p.add_argument("--barcode", required=True)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--committed", type=int, default=0)
    a = p.parse_args(argv)
    faulthandler.dump_traceback_later(a.deadline, exit=True)
    try:
        ch, dr = J.open_sessions(a)
        expect(ch is not None, "--changer is required")
        job = J.TapeJob(ch, dr)
        if a.mode == "write":
            write(job, dr, a.barcode, a.files)
        else:
            verify(job, dr, a.barcode, a.committed)
    except (J.JobError, S.ScsiError, S.CheckCondition) as e:
        print("FAIL: %s" % e, file=sys.stderr, flush=True)
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
