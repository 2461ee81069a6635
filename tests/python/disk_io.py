"""Writes, reads and flushes a disk LUN in whole MiB and prints each
command's outcome with its sense, for the tests that check how a failing
disk answers (qemu-io only reports an errno).

    disk_io.py --portal HOST:PORT --target IQN STEP...

Steps, each printed as one line `STEP: OUTCOME`:
    write MIB COUNT BYTE   WRITE(10) of COUNT MiB of BYTE from MiB MIB; stops
                           at the first command that is not GOOD
    read MIB COUNT BYTE    READ(10), then checks every byte is BYTE
                           (`MISMATCH at MiB n` otherwise)
    sync                   SYNCHRONIZE CACHE(10)
    tur                    TEST UNIT READY
    hold                   prints `hold: logged in`, then waits for a line on
                           stdin (the session stays logged in meanwhile)
A step whose session has gone prints `STEP: ERROR <why>`.
The exit status is 0 once every step ran, whatever the outcomes."""

import struct
import sys

import sgw_scsi

BLOCK = 512
MIB_BLOCKS = (1 << 20) // BLOCK


def cdb10(opcode, lba, blocks):
    return struct.pack(">BBIBHB", opcode, 0, lba, 0, blocks, 0)


def write(s, mib, count, byte):
    data = bytes([byte]) * (1 << 20)
    for m in range(mib, mib + count):
        r = s.execute(cdb10(0x2A, m * MIB_BLOCKS, MIB_BLOCKS), data_out=data)
        if not r.good:
            return "%s at MiB %d" % (r.describe(), m)
    return "GOOD"


def read(s, mib, count, byte):
    want = bytes([byte]) * (1 << 20)
    for m in range(mib, mib + count):
        r = s.execute(cdb10(0x28, m * MIB_BLOCKS, MIB_BLOCKS), data_in_len=1 << 20)
        if not r.good:
            return "%s at MiB %d" % (r.describe(), m)
        if r.data != want:
            return "MISMATCH at MiB %d" % m
    return "GOOD"


def main():
    s, steps = sgw_scsi.step_client(timeout=60)
    while steps:
        op = steps.pop(0)
        if op == "hold":
            print("hold: logged in", flush=True)
            sys.stdin.readline()
            continue
        try:
            if op == "sync":
                print("sync: %s" % s.execute(cdb10(0x35, 0, 0)).describe(), flush=True)
            elif op == "tur":
                print("tur: %s" % s.execute(bytes(6)).describe(), flush=True)
            else:
                mib, count, byte = int(steps.pop(0)), int(steps.pop(0)), int(steps.pop(0), 0)
                run = write if op == "write" else read
                print("%s %d %d: %s" % (op, mib, count, run(s, mib, count, byte)), flush=True)
        except sgw_scsi.ScsiError as e:
            s.broken = True
            print("%s: ERROR %s" % (op, e), flush=True)
    s.close()


if __name__ == "__main__":
    sys.exit(main())
