#!/usr/bin/env python3
"""Tape throughput client for tape-vs-tgt.sh (libiscsi through ctypes,
tests/python/sgw_scsi.py).  One thread and one session per drive, one command
outstanding per drive (tape is sequential); the GIL is released inside
libiscsi, and data go straight from/to preallocated buffers.

  tape_bench.py load  --portal P --changer IQN --drives IQN,IQN.. [--lun L] [--lenient]
      puts a barcoded tape into each drive (drive element found by DVCID =
      serial number, else in element order) and waits until each is ready.
  tape_bench.py run   --portal P --drives IQN,.. --bs BYTES --bytes TOTAL --op write|read [--lun L]
      write: rewind, TOTAL/ndrives bytes of variable records of BS, a filemark;
      read: rewind, read them back.  Prints one JSON line: MB/s (aggregate,
      from a common start to the last drive's end) and the client's CPU use.
  tape_bench.py unload --portal P --changer IQN --drives IQN,.. [--lun L] [--lenient]
"""

import argparse
import json
import os
import sys
import threading
import time
import ctypes

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
import sgw_scsi as S  # noqa: E402


def drive_elements(ch, drives):
    els = ch.inventory(dvcid=True)
    des = [e for e in els if e.type == S.ET_DATA_TRANSFER]
    out = []
    for i, dr in enumerate(drives):
        serial = dr.serial_number()
        m = [e for e in des if e.dvcid and serial and serial.encode() in e.dvcid]
        out.append(m[0] if len(m) == 1 else des[i])
    return els, out


def cmd_load(a):
    ch = S.Changer(a.portal, a.changer, a.lun, timeout=60)
    ch.strict = not a.lenient
    drives = [S.Tape(a.portal, t, a.lun, timeout=60) for t in a.drives.split(",")]
    els, des = drive_elements(ch, drives)
    transport = next(e.address for e in els if e.type == S.ET_TRANSPORT)
    # New sgw tapes wait in import/export slots (as AWS's do); a move
    # from there into a drive is as good as one from a storage slot.
    tapes = [e for e in els if e.type in (S.ET_STORAGE, S.ET_IMPORT_EXPORT) and e.full and e.barcode]
    if a.barcodes:
        want = a.barcodes.split(",")
        tapes = [next(t for t in tapes if t.barcode == b) for b in want]
    for dr, de in zip(drives, des):
        if de.full:
            continue
        t = tapes.pop(0)
        r = ch.move_medium(transport, t.address, de.address)
        if not r.good:
            sys.exit("load %s -> %d: %s" % (t.barcode, de.address, r.describe()))
        dr.wait_ready(timeout=60)
        print("loaded %s into drive element %d (%s)" % (t.barcode, de.address, dr.target))


def cmd_unload(a):
    ch = S.Changer(a.portal, a.changer, a.lun, timeout=60)
    ch.strict = not a.lenient
    drives = [S.Tape(a.portal, t, a.lun, timeout=60) for t in a.drives.split(",")]
    els, des = drive_elements(ch, drives)
    transport = next(e.address for e in els if e.type == S.ET_TRANSPORT)
    for dr, de in zip(drives, des):
        if not de.full:
            continue
        dr.rewind()
        dr.load_unload(load=False)
        dest = de.source if de.svalid else next(e.address for e in ch.inventory()
                                                  if e.type == S.ET_STORAGE and not e.full)
        r = ch.move_medium(transport, de.address, dest)
        print("unloaded drive element %d -> %d: %s" % (de.address, dest, r.describe()))


def worker(dr, op, bs, nrec, barrier, out, idx):
    try:
        dr.mode_select_block(0)
        r = dr.rewind()
        if not r.good:
            raise S.ScsiError("REWIND: " + r.describe())
        if op == "write":
            buf = os.urandom(bs)
        else:
            buf = ctypes.create_string_buffer(bs)
        barrier.wait(timeout=120)
        t0 = time.monotonic()
        for i in range(nrec):
            if op == "write":
                r = dr.execute(S.cdb_write6(bs), data_out=buf)
                if not r.good and not (r.check and r.sense.key == S.NO_SENSE and r.sense.eom):
                    raise S.ScsiError("WRITE(6) %d: %s" % (i, r.describe()))
            else:
                r = dr.execute(S.cdb_read6(bs), into=buf)
                if not r.good:
                    raise S.ScsiError("READ(6) %d: %s" % (i, r.describe()))
        if op == "write":
            r = dr.write_filemarks(1)
            if not r.good and not (r.check and r.sense.eom):
                raise S.ScsiError("WRITE FILEMARKS: " + r.describe())
        out[idx] = (t0, time.monotonic())
    except BaseException as e:  # noqa
        out[idx] = e
        try:
            barrier.abort()
        except Exception:
            pass


def cmd_run(a):
    iqns = a.drives.split(",")
    drives = [S.Tape(a.portal, t, a.lun, timeout=120) for t in iqns]
    nrec = max(1, a.bytes // len(drives) // a.bs)
    barrier = threading.Barrier(len(drives))
    out = [None] * len(drives)
    c0 = os.times()
    th = [threading.Thread(target=worker, args=(d, a.op, a.bs, nrec, barrier, out, i)) for i, d in enumerate(drives)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=3600)
    c1 = os.times()
    for o in out:
        if not isinstance(o, tuple):
            sys.exit("tape_bench: %s" % o)
    start = min(o[0] for o in out)
    end = max(o[1] for o in out)
    total = nrec * a.bs * len(drives)
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    print(json.dumps({"op": a.op, "bs": a.bs, "drives": len(drives), "bytes": total,
                      "seconds": round(end - start, 3), "MBps": round(total / (end - start) / 1e6, 1),
                      "client_cpu_s": round(cpu, 2), "client_cpu_pct": round(100 * cpu / (end - start), 1)}))
    for d in drives:
        d.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["load", "run", "unload"])
    p.add_argument("--portal", required=True)
    p.add_argument("--changer")
    p.add_argument("--drives", required=True, help="comma-separated drive IQNs")
    p.add_argument("--barcodes", help="comma-separated, for load")
    p.add_argument("--lun", type=int, default=0)
    p.add_argument("--lenient", action="store_true", help="tgt's short READ ELEMENT STATUS reports")
    p.add_argument("--bs", type=int, default=1 << 20)
    p.add_argument("--bytes", type=int, default=2 << 30)
    p.add_argument("--op", choices=["write", "read"], default="write")
    a = p.parse_args()
    {"load": cmd_load, "run": cmd_run, "unload": cmd_unload}[a.cmd](a)


if __name__ == "__main__":
    main()
