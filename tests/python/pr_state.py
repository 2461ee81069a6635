"""Persistent reservations and the removable medium of a disk LUN, one
command per step, for the tests that check what survives a restart.

    pr_state.py --portal HOST:PORT --target IQN STEP...

Steps, each printed as one line `STEP: OUTCOME`:
    register KEY     PERSISTENT RESERVE OUT REGISTER of KEY (hex), APTPL=1
    reserve KEY TYPE PERSISTENT RESERVE OUT RESERVE with KEY, TYPE (1..8)
    keys             READ KEYS: `keys: 0x..,0x..` (or `keys: none`)
    reservation      READ RESERVATION: `reservation: key=0x.. type=N` or none
    caps             REPORT CAPABILITIES: `caps: PTPL_C=c PTPL_A=a`
    eject / load     START STOP UNIT with LOEJ, START=0 / 1
    tur              TEST UNIT READY
A command that does not succeed prints `STATUS sense=KEY/ASC/ASCQ`.
The exit status is 0 once every step ran, whatever the outcomes."""

import struct
import sys

import sgw_scsi


def outcome(r):
    if r.good:
        return "GOOD"
    if r.check and r.sense is not None:
        return "CHECK CONDITION sense=%x/%02x/%02x" % (r.sense.key, r.sense.asc, r.sense.ascq)
    return "status 0x%02x" % r.status


def prout(s, action, kind, key, sa_key, aptpl):
    params = struct.pack(">QQIBBH", key, sa_key, 0, 1 if aptpl else 0, 0, 0)
    cdb = struct.pack(">BBBHIB", 0x5F, action, kind, 0, len(params), 0)
    return outcome(s.execute(cdb, data_out=params))


def prin(s, action):
    r = s.execute(struct.pack(">BBIBHB", 0x5E, action, 0, 0, 512, 0), data_in_len=512)
    return r, (r.data if r.good else b"")


def main():
    s, steps = sgw_scsi.step_client(timeout=30)
    while steps:
        op = steps.pop(0)
        if op == "register":
            key = int(steps.pop(0), 16)
            line = "register %x: %s" % (key, prout(s, 0, 0, 0, key, True))
        elif op == "reserve":
            key, kind = int(steps.pop(0), 16), int(steps.pop(0))
            line = "reserve %x %d: %s" % (key, kind, prout(s, 1, kind, key, 0, False))
        elif op == "keys":
            r, d = prin(s, 0)
            n = struct.unpack(">I", d[4:8])[0] // 8 if r.good else 0
            keys = [struct.unpack(">Q", d[8 + 8 * i:16 + 8 * i])[0] for i in range(n)]
            line = "keys: %s" % (",".join("0x%x" % k for k in keys) or "none") if r.good else "keys: " + outcome(r)
        elif op == "reservation":
            r, d = prin(s, 1)
            if not r.good:
                line = "reservation: " + outcome(r)
            elif struct.unpack(">I", d[4:8])[0] == 0:
                line = "reservation: none"
            else:
                line = "reservation: key=0x%x type=%d" % (struct.unpack(">Q", d[8:16])[0], d[21] & 0x0F)
        elif op == "caps":
            r, d = prin(s, 2)
            line = "caps: PTPL_C=%d PTPL_A=%d" % (d[2] & 1, d[3] & 1) if r.good else "caps: " + outcome(r)
        elif op in ("eject", "load"):
            start = 1 if op == "load" else 0
            line = "%s: %s" % (op, outcome(s.execute(bytes([0x1B, 0, 0, 0, 0x02 | start, 0]))))
        elif op == "tur":
            line = "tur: %s" % outcome(s.execute(bytes(6)))
        else:
            raise SystemExit("unknown step %r" % op)
        print(line, flush=True)
    s.close()


if __name__ == "__main__":
    sys.exit(main())
