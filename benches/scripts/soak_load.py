#!/usr/bin/env python3
"""Load generator, checker and report for soak.sh (libiscsi through ctypes,
tests/python/sgw_scsi.py; READ/WRITE/SYNCHRONIZE CACHE(10) CDBs from
tests/python/disk_io.py).

  soak_load.py run --portal P --volumes IQN,IQN --drives IQN,IQN --work DIR
                   --stop-file FILE [--max-seconds S] [rates, sizes...]
      one thread per device, until FILE exists:
      volumes: random 4 KiB-1 MiB WRITE(10)s and READ(10)s (half in a hot
        256 MiB region, half anywhere), a SYNCHRONIZE CACHE every
        --sync-interval seconds. Every 4 KiB block carries a pattern derived
        from (volume, block, generation), one 16-byte header (sector id,
        generation) per 512-byte sector. A write counts as acknowledged only
        once a later SYNCHRONIZE CACHE returned GOOD: then it is appended to
        DIR/vol-N.journal and fsync'd. Every read is checked against the
        last completed write (read your writes).
      tapes (already loaded): files of 4-24 variable records (16 KiB-1 MiB,
        a short last one), each closed by WRITE FILEMARKS(1); a file counts
        as acknowledged once its filemark returned GOOD (DIR/tape-N.journal,
        fsync'd). Every 5th file is read back (LOCATE, READ, SPACE EOD);
        once a generation holds --tape-rotate-mib the whole tape is read
        back from BOP, rewound and rewritten from BOP (a new generation).
      A transport error (the gateway was SIGKILLed) makes the thread log in
      again (bounded, --reconnect-secs) and verify before going on:
        volume: every block of the volume reads back as its last
          acknowledged generation, or (a write after it was not acknowledged
          yet) as one of those later generations, sector by sector; then
          the unacknowledged writes are written again (as an application
          replaying its log would), for the next SYNCHRONIZE CACHE;
        tape: rewind; the last --tail-files acknowledged files read back bit
          for bit with their filemarks, then end of data, or else the file
          whose filemark was in flight, whole, then end of data; SPACE EOD
          must land on the object count of the acknowledged files. While a
          rewrite from BOP has no acknowledged file yet, the old generation
          is no longer owed (the host overwrote it): either the new first
          file reads back whole, or the rewrite starts again.
      Reads that fail (e.g. a cloud read during the S3 outage) are retried
      for up to --read-retry-secs before they count as a failure.
      At stop: a last SYNCHRONIZE CACHE (retried), tapes end on a filemark.
      Writes DIR/load-stats.json every 10 s and at the end; exit 1 if any
      acknowledged write was lost or any check failed.

  soak_load.py verify --portal P --volumes ... --drives ... --work DIR
      a fresh process that knows only the journals: every block of each
      volume reads back as its journalled generation (zeros if none), each
      tape from BOP holds exactly the journalled files of its last
      generation, then end of data. Writes DIR/verify.json; exit 1 on loss.

  soak_load.py summary --work DIR --duration S --kill-every S
                       --outage-at S --outage S
      the report: load and verify figures, RSS and fds per segment with the
      flat verdict, restarts, the outage window and what the gateway logged
      in it. Exit 1 when the memory or fd verdict is "not flat".
"""

import argparse
import array
import collections
import datetime
import json
import os
import random
import re
import struct
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
import sgw_scsi as S  # noqa: E402
from disk_io import cdb10  # noqa: E402  READ(10) 0x28, WRITE(10) 0x2A, SYNCHRONIZE CACHE(10) 0x35

KiB, MiB = 1024, 1024 * 1024
SECTOR = 512
BLOCK = 4096                     # the unit of the volume model (the cache's sector)
SPB = BLOCK // SECTOR            # 512-byte sectors per block
HDR = struct.Struct("<QQ")       # per sector: sector id, generation
PAYLOAD = SECTOR - HDR.size
ZERO_BLOCK = bytes(BLOCK)
RLEN = 16 * MiB                  # pattern source: incompressible, so uploads are real
K1, K2 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F
TAPE_MAGIC = b"SOAKTAPE"
TAPE_HDR = struct.Struct(">8sBIIII")  # magic, drive, generation, file, record, length
MAX_RECORD = 1 * MiB
HOT_BLOCKS = 256 * MiB // BLOCK

T0 = time.monotonic()
_print_lock = threading.Lock()


def log(msg):
    with _print_lock:
        print("[%7.1f] %s %s" % (time.monotonic() - T0, threading.current_thread().name, msg), flush=True)


class Fatal(Exception):
    """A check failed or a bound ran out: the device's thread stops."""


class Unavailable(Exception):
    """A read or write the gateway refused for now (e.g. cloud outage)."""


def pattern_source(seed):
    return memoryview(random.Random(seed).randbytes(RLEN))


class Common:
    """Session handling shared by the device threads: reconnect after a
    transport error, bounded; UNIT ATTENTION retried; stats."""

    session_class = S.Session

    def __init__(self, name, a, iqn, idx, R, stop):
        self.name, self.a, self.iqn, self.idx, self.R, self.stop = name, a, iqn, idx, R, stop
        self.s = None
        self.failures = []
        self.st = collections.Counter()
        self.pace_t = time.monotonic()

    def fail(self, msg):
        self.failures.append("%.1fs %s" % (time.monotonic() - T0, msg))
        log("FAIL: " + msg)

    def connect(self, what):
        """Log in (again), bounded by --reconnect-secs; TEST UNIT READY until
        GOOD (swallowing UNIT ATTENTION and NOT READY)."""
        if self.s is not None:
            try:
                self.s.close()
            except Exception:
                pass
            self.s = None
        deadline = time.monotonic() + self.a.reconnect_secs
        last = None
        while time.monotonic() < deadline:
            try:
                s = self.session_class(self.a.portal, self.iqn, 0, timeout=self.a.cmd_timeout,
                                       initiator="iqn.2026-01.test.sgw:soak-%s" % self.name)
                s.wait_ready(timeout=120, poll=0.2)
                self.s = s
                return
            except (S.ScsiError, S.CheckCondition) as e:
                last = e
                time.sleep(0.5)
        raise Fatal("%s: could not log in to %s within %ds: %s" % (what, self.iqn, self.a.reconnect_secs, last))

    def run(self, cdb, **kw):
        """execute(), retrying UNIT ATTENTION (bounded); transport errors
        raise S.ScsiError to the thread's loop."""
        for _ in range(8):
            r = self.s.execute(cdb, **kw)
            if r.check and r.sense.key == S.UNIT_ATTENTION:
                self.st["unit_attentions"] += 1
                continue
            return r
        return r

    def checked(self, fn, what):
        """A helper of sgw_scsi that raises CheckCondition, retrying UNIT
        ATTENTION (bounded)."""
        for i in range(8):
            try:
                return fn()
            except S.CheckCondition as e:
                if e.sense.key != S.UNIT_ATTENTION or i == 7:
                    raise Fatal("%s %s: %s" % (self.name, what, e))
                self.st["unit_attentions"] += 1

    def pace(self, nbytes, rate):
        """At most `rate` bytes per second on average (bursts of 1 s)."""
        if rate <= 0:
            return
        now = time.monotonic()
        self.pace_t = max(self.pace_t, now - 1.0) + nbytes / rate
        if self.pace_t > now:
            time.sleep(self.pace_t - now)

    def main(self):
        """The thread: connect, then step until stop; a transport error means
        the gateway went away: reconnect and verify."""
        try:
            self.connect("start")
            self.setup()
            while not self.stop():
                try:
                    self.step()
                except S.ScsiError as e:
                    self.st["reconnects"] += 1
                    log("transport error (%s); logging in again" % str(e)[:160])
                    self.after_crash()
            self.finish()
        except Fatal as e:
            self.fail(str(e))
        except Exception:
            self.fail("thread crashed: " + traceback.format_exc())
        finally:
            if self.s is not None:
                try:
                    self.s.close()
                except Exception:
                    pass

    def after_crash(self):
        """Reconnect and verify, again and again if the gateway goes away
        during the verification (bounded)."""
        for attempt in range(10):
            self.connect("reconnect")
            try:
                self.verify_after_crash()
                return
            except S.ScsiError as e:
                self.st["reconnects"] += 1
                log("transport error during verification (%s); again" % str(e)[:160])
        raise Fatal("verification after a restart kept losing the connection")


# ------------------------------------------------------------------ volumes

class Volume(Common):
    def __init__(self, name, a, iqn, idx, R, stop, journal_path, verify_only=False):
        super().__init__(name, a, iqn, idx, R, stop)
        self.journal_path = journal_path
        self.verify_only = verify_only
        self.rng = random.Random("%s:%d" % (a.seed, idx))
        self.gen = 0
        self.unsynced = []          # (first block, blocks, generation) since the last GOOD sync
        self.nblocks = 0
        self.last_sync = time.monotonic()

    # The pattern of one 4 KiB block at generation `gen` (0: never written).
    def block(self, blk, gen):
        if gen == 0:
            return ZERO_BLOCK
        R, base, parts = self.R, (self.idx << 40) | (blk << 3), []
        for s in range(SPB):
            sid = base | s
            off = ((sid * K1) ^ (gen * K2)) % (RLEN - SECTOR)
            parts.append(HDR.pack(sid, gen))
            parts.append(R[off:off + PAYLOAD])
        return b"".join(parts)

    def sector(self, blk, s, gen):
        return self.block(blk, gen)[s * SECTOR:(s + 1) * SECTOR]

    def setup(self):
        r = self.run(bytes([0x9E, 0x10]) + bytes(8) + struct.pack(">I", 32) + bytes(2), data_in_len=32)
        if not r.good:
            raise Fatal("READ CAPACITY(16): " + r.describe())
        last, bl = struct.unpack(">QI", r.data[:12])
        if bl != SECTOR:
            raise Fatal("logical block size %d, expected 512" % bl)
        self.nblocks = (last + 1) * SECTOR // BLOCK
        if self.verify_only:
            return
        self.acked = array.array("Q", bytes(8 * self.nblocks))   # last acknowledged generation
        self.cur = array.array("Q", bytes(8 * self.nblocks))     # last completed write
        self.journal = open(self.journal_path, "x")
        self.journal.write("V %d %d %s\n" % (self.idx, self.nblocks, self.a.seed))
        self.sync_journal()
        log("%s: %d blocks of 4 KiB" % (self.iqn, self.nblocks))

    def sync_journal(self):
        self.journal.flush()
        os.fsync(self.journal.fileno())

    def pick(self, max_blocks):
        n = 1 << self.rng.randrange(0, max_blocks.bit_length())
        if self.rng.random() < 0.5:
            first = self.rng.randrange(0, HOT_BLOCKS - n + 1)
        else:
            first = self.rng.randrange(0, self.nblocks - n + 1)
        return first, n

    def step(self):
        if time.monotonic() - self.last_sync >= self.a.sync_interval and self.unsynced:
            self.sync()
            return
        first, n = self.pick(MiB // BLOCK)
        self.pace(n * BLOCK, self.a.vol_mbps * 1e6)
        if self.rng.random() < self.a.write_fraction:
            self.write(first, n)
        else:
            self.read_check(first, n)

    def write(self, first, n, replay_gen=None):
        if replay_gen is None:
            self.gen += 1
            gen = self.gen
            # In flight from here on: after a crash the blocks may hold it.
            self.unsynced.append((first, n, gen))
        else:
            gen = replay_gen
        data = b"".join(self.block(first + i, gen) for i in range(n))
        deadline = time.monotonic() + self.a.read_retry_secs
        while True:
            r = self.run(cdb10(0x2A, first * SPB, n * SPB), data_out=data)
            if r.good:
                break
            # Writes wait for uploads, they never fail: any refusal counts.
            self.st["write_errors"] += 1
            log("WRITE(10) blocks %d+%d gen %d: %s" % (first, n, gen, r.describe()))
            if time.monotonic() > deadline:
                raise Fatal("WRITE(10) blocks %d+%d refused for %ds: %s"
                            % (first, n, self.a.read_retry_secs, r.describe()))
            time.sleep(2)
        self.cur[first:first + n] = array.array("Q", [gen]) * n
        if replay_gen is None:
            self.st["writes"] += 1
            self.st["bytes_written"] += n * BLOCK
        else:
            self.st["writes_replayed"] += 1
            self.st["bytes_replayed"] += n * BLOCK

    def sync(self):
        r = self.run(cdb10(0x35, 0, 0))
        if not r.good:
            self.st["sync_errors"] += 1
            log("SYNCHRONIZE CACHE: %s" % r.describe())
            time.sleep(1)
            return False
        # Acknowledged: journal first, then the model.
        for first, n, gen in self.unsynced:
            self.journal.write("W %d %d %d\n" % (gen, first, n))
        self.sync_journal()
        for first, n, gen in self.unsynced:
            self.acked[first:first + n] = array.array("Q", [gen]) * n
            self.st["bytes_acked"] += n * BLOCK
            self.st["writes_acked"] += 1
        self.unsynced = []
        self.st["syncs"] += 1
        self.last_sync = time.monotonic()
        return True

    def read(self, first, n, deadline_secs):
        """READ(10) of blocks; retried while the gateway refuses it (bounded)."""
        deadline = time.monotonic() + deadline_secs
        while True:
            r = self.run(cdb10(0x28, first * SPB, n * SPB), data_in_len=n * BLOCK)
            if r.good and len(r.data) == n * BLOCK:
                self.st["reads"] += 1
                self.st["bytes_read"] += n * BLOCK
                return memoryview(r.data)
            self.st["read_errors"] += 1
            if self.st["read_errors"] <= 20 or self.st["read_errors"] % 100 == 0:
                log("READ(10) blocks %d+%d: %s (read errors so far: %d)"
                    % (first, n, r.describe(), self.st["read_errors"]))
            if time.monotonic() > deadline:
                raise Unavailable("READ(10) blocks %d+%d: %s" % (first, n, r.describe()))
            time.sleep(2)

    def read_check(self, first, n):
        try:
            data = self.read(first, n, 0)
        except Unavailable:
            return  # counted; the load goes on (e.g. the S3 outage)
        for i in range(n):
            blk = first + i
            got = data[i * BLOCK:(i + 1) * BLOCK]
            if got != self.block(blk, self.cur[blk]):
                self.st["read_mismatches"] += 1
                self.fail("%s block %d: read %s, the last completed write was generation %d"
                          % (self.name, blk, self.describe(blk, got), self.cur[blk]))
                # Adopt nothing: the next crash check will judge this block.
            else:
                self.st["bytes_verified"] += BLOCK

    def describe(self, blk, got):
        gens = []
        for s in range(SPB):
            sid, g = HDR.unpack_from(got, s * SECTOR)
            ok = bytes(got[s * SECTOR:(s + 1) * SECTOR]) == self.sector(blk, s, g) if g < 1 << 40 else False
            gens.append("%d%s" % (g, "" if ok else "!"))
        return "sector generations [%s] (! = not that generation's pattern)" % " ".join(gens)

    def classify(self, blk, got, allowed):
        """The generation the block holds (one of `allowed`), or a tuple of
        per-sector generations (all in `allowed`) for a torn unacknowledged
        write, or None."""
        for g in allowed:
            if got == self.block(blk, g):
                return g
        gens = []
        for s in range(SPB):
            sec = bytes(got[s * SECTOR:(s + 1) * SECTOR])
            g = HDR.unpack_from(sec)[1]
            if g not in allowed or sec != self.sector(blk, s, g):
                return None
            gens.append(g)
        return tuple(gens)

    def verify_after_crash(self):
        """Every block: its last acknowledged generation, or one of the
        writes since then that were not acknowledged (sector by sector)."""
        maybe = collections.defaultdict(list)
        for first, n, gen in self.unsynced:
            for b in range(first, first + n):
                maybe[b].append(gen)
        t = time.monotonic()
        torn, newer, lost = 0, 0, 0
        lost_gens = set()
        step = MiB // BLOCK
        for first in range(0, self.nblocks, step):
            n = min(step, self.nblocks - first)
            try:
                data = self.read(first, n, self.a.read_retry_secs)
            except Unavailable as e:
                raise Fatal("%s: verification read never succeeded: %s" % (self.name, e))
            for i in range(n):
                blk = first + i
                got = data[i * BLOCK:(i + 1) * BLOCK]
                acked = self.acked[blk]
                allowed = [acked] + maybe.get(blk, [])
                if self.cur[blk] not in allowed:
                    allowed.append(self.cur[blk])  # adopted after an earlier crash, unacknowledged
                found = self.classify(blk, got, allowed)
                if found is None:
                    lost += 1
                    lost_gens.add(acked)
                    if lost <= 20:
                        self.fail("%s block %d LOST: acknowledged generation %d (unacknowledged since: %s), read %s"
                                  % (self.name, blk, acked, maybe.get(blk, []), self.describe(blk, got)))
                    continue
                self.st["bytes_verified"] += BLOCK
                if isinstance(found, tuple):
                    torn += 1
                    self.cur[blk] = acked  # replayed below
                else:
                    if found != acked:
                        newer += 1
                    self.cur[blk] = found
        self.st["lost_blocks"] += lost
        self.st["lost_writes"] += len(lost_gens)
        self.st["verify_passes"] += 1
        self.st["torn_unacked_blocks"] += torn
        self.st["unacked_blocks_survived"] += newer
        log("verified %s after restart in %.1fs: %d blocks, %d lost, %d hold a later unacknowledged write, "
            "%d torn unacknowledged; replaying the %d unacknowledged writes"
            % (self.name, time.monotonic() - t, self.nblocks, lost, newer, torn, len(self.unsynced)))
        if lost:
            self.fail("%s: %d blocks (%d acknowledged writes) lost" % (self.name, lost, len(lost_gens)))
        # Writes since the last GOOD SYNCHRONIZE CACHE may or may not have
        # survived: write them again, as a journaling application would, so
        # that the next SYNCHRONIZE CACHE acknowledges exactly them.
        for first, n, gen in list(self.unsynced):
            self.write(first, n, replay_gen=gen)

    def finish(self):
        deadline = time.monotonic() + self.a.read_retry_secs
        while self.unsynced:
            try:
                if self.sync():
                    break
            except S.ScsiError:
                self.after_crash()
            if time.monotonic() > deadline:
                break
        for first, n, gen in self.unsynced:  # not acknowledged: allowed, not owed
            self.journal.write("P %d %d %d\n" % (gen, first, n))
        self.sync_journal()
        self.journal.close()
        log("stopped: %d writes acknowledged, %d left unacknowledged" % (self.st["writes_acked"], len(self.unsynced)))

    def verify_journal(self):
        """verify: only the journal is known."""
        acked = array.array("Q", bytes(8 * self.nblocks))
        maybe = collections.defaultdict(list)
        jwrites = 0
        with open(self.journal_path) as f:
            for line in f:
                p = line.split()
                if p[0] == "W":
                    gen, first, n = int(p[1]), int(p[2]), int(p[3])
                    acked[first:first + n] = array.array("Q", [gen]) * n
                    jwrites += 1
                elif p[0] == "P":
                    gen, first, n = int(p[1]), int(p[2]), int(p[3])
                    for b in range(first, first + n):
                        maybe[b].append(gen)
        t = time.monotonic()
        lost = 0
        lost_gens = set()
        step = MiB // BLOCK
        for first in range(0, self.nblocks, step):
            n = min(step, self.nblocks - first)
            data = self.read(first, n, self.a.read_retry_secs)
            for i in range(n):
                blk = first + i
                got = data[i * BLOCK:(i + 1) * BLOCK]
                if self.classify(blk, got, [acked[blk]] + maybe.get(blk, [])) is None:
                    lost += 1
                    lost_gens.add(acked[blk])
                    if lost <= 20:
                        self.fail("%s block %d LOST: journal says generation %d, read %s"
                                  % (self.name, blk, acked[blk], self.describe(blk, got)))
                else:
                    self.st["bytes_verified"] += BLOCK
        written = sum(1 for g in acked if g)
        self.st["lost_blocks"] += lost
        self.st["lost_writes"] += len(lost_gens)
        self.st["journal_writes"] = jwrites
        self.st["blocks_with_data"] = written
        log("verified %s from its journal in %.1fs: %d journalled writes, %d blocks hold data, %d lost"
            % (self.name, time.monotonic() - t, jwrites, written, lost))


# ------------------------------------------------------------------ tapes

class TapeDev(Common):
    session_class = S.Tape

    def __init__(self, name, a, iqn, idx, R, stop, journal_path, verify_only=False):
        super().__init__(name, a, iqn, idx, R, stop)
        self.journal_path = journal_path
        self.verify_only = verify_only
        self.rng = random.Random("tape:%s:%d" % (a.seed, idx))
        self.gen = 1
        self.files = []          # acknowledged files of this generation: [(nrec, bytes)]
        self.pending = None      # the file being written (its number), until its filemark is GOOD
        self.rewriting = False   # a rewrite from BOP has no acknowledged file yet
        self.gen_bytes = 0
        self.buf = bytearray(MAX_RECORD)

    def layout(self, gen, fno):
        r = random.Random("layout:%d:%d:%d" % (self.idx, gen, fno))
        n = r.randrange(4, 25)
        lens = [r.choice((16 * KiB, 64 * KiB, 256 * KiB, 256 * KiB, 512 * KiB, MiB)) for _ in range(n - 1)]
        return lens + [1000 + r.randrange(0, 4000)]

    def record(self, gen, fno, rec, length):
        hdr = TAPE_HDR.pack(TAPE_MAGIC, self.idx, gen, fno, rec, length)
        off = ((self.idx * K1) ^ (gen * K2) ^ (fno * 0x100000001B3) ^ (rec * 0x5851F42D)) % (RLEN - MAX_RECORD)
        return hdr + bytes(self.R[off:off + length - len(hdr)])

    def setup(self):
        if self.verify_only:
            return
        self.journal = open(self.journal_path, "x")
        self.journal.write("T %d %s\n" % (self.idx, self.a.seed))
        self.sync_journal()
        self.checked(lambda: self.s.mode_select_block(0), "MODE SELECT")
        r = self.run(S.cdb_rewind(), timeout=300)
        if not r.good:
            raise Fatal("REWIND: " + r.describe())
        self.journal.write("G %d\n" % self.gen)
        self.sync_journal()

    def sync_journal(self):
        self.journal.flush()
        os.fsync(self.journal.fileno())

    def objects(self, nfiles=None):
        """Logical objects (records and filemarks) of the first nfiles files."""
        return sum(n + 1 for n, _ in self.files[:nfiles])

    def step(self):
        if self.gen_bytes >= self.a.tape_rotate_mib * MiB:
            self.rotate()
        fno = len(self.files)
        lens = self.layout(self.gen, fno)
        self.pending = fno
        for rec, ln in enumerate(lens):
            self.pace(ln, self.a.tape_mbps * 1e6)
            r = self.run(S.cdb_write6(ln), data_out=self.record(self.gen, fno, rec, ln))
            if not r.good:
                raise Fatal("%s gen %d file %d record %d: WRITE(6): %s" % (self.name, self.gen, fno, rec, r.describe()))
            self.st["bytes_written"] += ln
        r = self.run(S.cdb_write_filemarks6(1))
        if not r.good:
            raise Fatal("%s gen %d file %d: WRITE FILEMARKS: %s" % (self.name, self.gen, fno, r.describe()))
        self.acknowledge(fno, lens)
        if fno % 5 == 4:
            self.read_back_last()

    def acknowledge(self, fno, lens):
        self.journal.write("F %d %d %d\n" % (self.gen, fno, len(lens)))
        self.sync_journal()
        self.files.append((len(lens), sum(lens)))
        self.pending = None
        self.rewriting = False
        self.gen_bytes += sum(lens)
        self.st["files_acked"] += 1
        self.st["bytes_acked"] += sum(lens)

    def read_file(self, gen, fno, deadline):
        """Reads one whole file at the current position and its filemark;
        Fatal on a difference, Unavailable when the read is refused."""
        lens = self.layout(gen, fno)
        for rec, ln in enumerate(lens):
            r = self.read_retry(deadline)
            want = self.record(gen, fno, rec, ln)
            if not (r.good and r.data == want):
                raise Fatal("%s gen %d file %d record %d: %s, %d bytes, data %s%s"
                            % (self.name, gen, fno, rec, r.describe(), len(r.data),
                               "ok" if r.data == want else "differs", self.header_of(r.data)))
            self.st["bytes_verified"] += ln
        r = self.read_retry(deadline)
        if not (r.check and r.sense.filemark):
            raise Fatal("%s gen %d file %d: no filemark after its %d records: %s"
                        % (self.name, gen, fno, len(lens), r.describe()))

    @staticmethod
    def header_of(data):
        if len(data) >= TAPE_HDR.size and data[:8] == TAPE_MAGIC:
            _, d, g, f, rec, ln = TAPE_HDR.unpack_from(data)
            return " (it is drive %d gen %d file %d record %d length %d)" % (d, g, f, rec, ln)
        return ""

    def read_retry(self, deadline):
        while True:
            r = self.run(S.cdb_read6(MAX_RECORD, sili=True), data_in_len=MAX_RECORD)
            if r.good or (r.check and r.sense.key in (S.NO_SENSE, S.BLANK_CHECK)):
                return r
            self.st["read_errors"] += 1
            log("READ(6): %s (read errors so far: %d)" % (r.describe(), self.st["read_errors"]))
            # A failed READ leaves the position where it was (no record
            # read): the same READ again.
            if time.monotonic() > deadline:
                raise Unavailable("READ(6): " + r.describe())
            time.sleep(2)

    def locate(self, obj):
        r = self.run(S.cdb_locate10(obj), timeout=300)
        if not r.good:
            raise Fatal("%s LOCATE %d: %s" % (self.name, obj, r.describe()))

    def to_eod(self):
        r = self.run(S.cdb_space6(S.SPACE_EOD, 0), timeout=300)
        if not r.good:
            raise Fatal("%s SPACE EOD: %s" % (self.name, r.describe()))
        p = self.checked(self.s.read_position, "READ POSITION")
        want = self.objects()
        if p.first != want:
            raise Fatal("%s: end of data at object %s, the acknowledged files end at %d" % (self.name, p.first, want))

    def read_back_last(self):
        fno = len(self.files) - 1
        self.locate(self.objects(fno))
        try:
            self.read_file(self.gen, fno, time.monotonic())
            self.st["files_read_back"] += 1
        except Unavailable:
            pass
        self.to_eod()

    def verify_from(self, first_file, deadline, strict_eod=True):
        """Rewind, skip first_file files, read the acknowledged files after
        them; then end of data, or the pending file whole then end of data."""
        r = self.run(S.cdb_rewind(), timeout=300)
        if not r.good:
            raise Fatal("%s REWIND: %s" % (self.name, r.describe()))
        if first_file:
            r = self.run(S.cdb_space6(S.SPACE_FILEMARKS, first_file), timeout=300)
            if not r.good:
                raise Fatal("%s SPACE %d filemarks: %s" % (self.name, first_file, r.describe()))
        for fno in range(first_file, len(self.files)):
            self.read_file(self.gen, fno, deadline)
        r = self.read_retry(deadline)
        if r.check and r.sense.key == S.BLANK_CHECK:
            return "eod"
        if self.pending is not None and r.good and r.data == self.record(self.gen, self.pending, 0, len(r.data)):
            # The filemark in flight at the kill was done: the file must be whole.
            lens = self.layout(self.gen, self.pending)
            r = self.run(S.cdb_locate10(self.objects()), timeout=300)
            self.read_file(self.gen, self.pending, deadline)
            r = self.read_retry(deadline)
            if not (r.check and r.sense.key == S.BLANK_CHECK):
                raise Fatal("%s: no end of data after the file in flight: %s" % (self.name, r.describe()))
            self.acknowledge(self.pending, lens)
            self.st["inflight_files_found_whole"] += 1
            return "pending"
        raise Fatal("%s gen %d: after %d acknowledged files expected end of data%s, read %s%s"
                    % (self.name, self.gen, len(self.files),
                       " or file %d" % self.pending if self.pending is not None else "",
                       r.describe(), self.header_of(r.data)))

    def verify_after_crash(self):
        try:
            self.verify_tape_after_crash()
        except Unavailable as e:
            raise Fatal("%s: verification read never succeeded: %s" % (self.name, e))

    def verify_tape_after_crash(self):
        t = time.monotonic()
        self.checked(lambda: self.s.mode_select_block(0), "MODE SELECT")
        deadline = time.monotonic() + self.a.read_retry_secs
        if self.rewriting:
            # A rewrite from BOP with no filemark acknowledged yet: the old
            # generation is not owed any more; the new first file may be there.
            r = self.run(S.cdb_rewind(), timeout=300)
            rr = self.read_retry(deadline)
            if rr.good and rr.data == self.record(self.gen, 0, 0, len(rr.data)):
                self.verify_from(0, deadline)
            else:
                self.st["rewrites_interrupted"] += 1
                log("%s: interrupted rewrite of generation %d: the tape reads %s%s; rewriting again"
                    % (self.name, self.gen, rr.describe(), self.header_of(rr.data)))
                r = self.run(S.cdb_rewind(), timeout=300)
                if not r.good:
                    raise Fatal("REWIND: " + r.describe())
                self.pending = None
                return
        else:
            first = max(0, len(self.files) - self.a.tail_files)
            how = self.verify_from(first, deadline)
            if how == "eod" and self.pending is not None:
                self.st["inflight_files_not_committed"] += 1
        self.pending = None
        self.to_eod()
        self.st["verify_passes"] += 1
        log("verified %s after restart in %.1fs: generation %d, %d files acknowledged, the last %d read back"
            % (self.name, time.monotonic() - t, self.gen, len(self.files), min(len(self.files), self.a.tail_files)))

    def rotate(self):
        """Whole tape read back from BOP, then rewind and rewrite from BOP."""
        t = time.monotonic()
        deadline = time.monotonic() + self.a.read_retry_secs
        try:
            self.verify_from(0, deadline)
            self.st["full_reads"] += 1
            log("%s: generation %d read back whole (%d files, %.0f MiB) in %.1fs; rewriting from BOP"
                % (self.name, self.gen, len(self.files), self.gen_bytes / MiB, time.monotonic() - t))
        except Unavailable as e:
            log("%s: full read of generation %d refused (%s); rewriting anyway" % (self.name, self.gen, e))
        r = self.run(S.cdb_rewind(), timeout=300)
        if not r.good:
            raise Fatal("REWIND: " + r.describe())
        self.gen += 1
        self.files, self.gen_bytes, self.rewriting = [], 0, True
        self.journal.write("G %d\n" % self.gen)
        self.sync_journal()
        self.st["rewrites"] += 1

    def finish(self):
        # step() always ends on an acknowledged filemark; after a failed one
        # the thread stopped with Fatal.
        self.journal.close()
        log("stopped: generation %d, %d files acknowledged" % (self.gen, len(self.files)))

    def verify_journal(self):
        gen, files = None, []
        with open(self.journal_path) as f:
            for line in f:
                p = line.split()
                if p[0] == "G":
                    gen, files = int(p[1]), []
                elif p[0] == "F":
                    g, fno, n = int(p[1]), int(p[2]), int(p[3])
                    if g != gen or fno != len(files):
                        raise Fatal("journal: F %d %d out of order (generation %s, %d files)" % (g, fno, gen, len(files)))
                    files.append(n)
        t = time.monotonic()
        self.gen = gen
        self.files = [(n, sum(self.layout(gen, i))) for i, n in enumerate(files)]
        self.pending = None
        self.checked(lambda: self.s.mode_select_block(0), "MODE SELECT")
        deadline = time.monotonic() + self.a.read_retry_secs
        self.verify_from(0, deadline)
        self.to_eod()
        self.st["journal_files"] = len(files)
        log("verified %s from its journal in %.1fs: generation %d, %d files, %.0f MiB"
            % (self.name, time.monotonic() - t, gen, len(files), self.st["bytes_verified"] / MiB))


# ------------------------------------------------------------------ commands

def devices(a, R, stop, verify_only=False):
    devs = []
    for i, iqn in enumerate(x for x in a.volumes.split(",") if x):
        devs.append(Volume("vol%d" % (i + 1), a, iqn, i + 1, R, stop,
                           os.path.join(a.work, "vol%d.journal" % (i + 1)), verify_only))
    for i, iqn in enumerate(x for x in a.drives.split(",") if x):
        devs.append(TapeDev("tape%d" % (i + 1), a, iqn, i + 1, R, stop,
                            os.path.join(a.work, "tape%d.journal" % (i + 1)), verify_only))
    return devs


def write_stats(path, devs, extra=None):
    out = {"elapsed_s": round(time.monotonic() - T0, 1),
           "devices": {d.name: dict(d.st, failures=d.failures, iqn=d.iqn) for d in devs}}
    if extra:
        out.update(extra)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def cmd_run(a):
    R = pattern_source(a.seed)
    hard_stop = time.monotonic() + a.max_seconds

    def stop():
        return os.path.exists(a.stop_file) or time.monotonic() > hard_stop

    devs = devices(a, R, stop)
    threads = [threading.Thread(target=d.main, name=d.name, daemon=True) for d in devs]
    for t in threads:
        t.start()
    path = os.path.join(a.work, "load-stats.json")
    last_progress = time.monotonic()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=10.0 / len(threads))
        write_stats(path, devs)
        if time.monotonic() - last_progress >= 60:
            last_progress = time.monotonic()
            log("progress: " + "; ".join("%s w=%.0fMiB ack=%.0fMiB ver=%.0fMiB rec=%d%s" % (
                d.name, d.st["bytes_written"] / MiB, d.st["bytes_acked"] / MiB, d.st["bytes_verified"] / MiB,
                d.st["reconnects"], " FAILED" if d.failures else "") for d in devs))
        if time.monotonic() > hard_stop + a.reconnect_secs + 2 * a.read_retry_secs + 600:
            log("FAIL: threads did not stop in time")
            devs[0].failures.append("threads did not stop in time")
            break
    write_stats(path, devs)
    bad = [d for d in devs if d.failures or d.st["lost_blocks"]]
    log("run done: %s" % ("FAILED: " + ", ".join(d.name for d in bad) if bad else "no failure"))
    return 1 if bad else 0


def cmd_verify(a):
    R = pattern_source(a.seed)
    devs = devices(a, R, lambda: False, verify_only=True)

    def one(d):
        try:
            d.connect("verify")
            d.setup()
            d.verify_journal()
        except (Fatal, Unavailable) as e:
            d.fail(str(e))
        except Exception:
            d.fail("verify crashed: " + traceback.format_exc())

    threads = [threading.Thread(target=one, args=(d,), name=d.name + "-verify", daemon=True) for d in devs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=a.max_seconds)
    alive = [t.name for t in threads if t.is_alive()]
    write_stats(os.path.join(a.work, "verify.json"), devs, {"timed_out": alive})
    bad = [d for d in devs if d.failures or d.st["lost_blocks"]] + alive
    log("verify done: %s" % ("FAILED" if bad else "every acknowledged write read back"))
    return 1 if bad else 0


# ------------------------------------------------------------------ summary

def mib(n):
    return "%.1f MiB" % (n / MiB)


def num(x, fmt, div=1):
    try:
        return fmt % (float(x) / div)
    except (TypeError, ValueError):
        return "-"


def seg_last(rows, col, seg):
    """The last value of a per-process counter before each restart (the
    pid changes)."""
    out, last_pid, last = [], None, 0
    for v in rows:
        if v.get("pid") != last_pid:
            out.append(last)
            last_pid, last = v.get("pid"), 0
        try:
            last = float(v.get(col) or 0)
        except ValueError:
            pass
    out.append(last)
    return out


def read_events(work):
    ev = []
    with open(os.path.join(work, "events.log")) as f:
        for line in f:
            p = line.split(None, 2)
            if len(p) >= 2:
                ev.append((float(p[0]), p[1], p[2].strip() if len(p) > 2 else ""))
    return ev


LOG_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(\S+?):?\s(.*)$")


def parse_log(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LOG_RE.match(line.rstrip("\n"))
            if not m and line.startswith("sgw: "):
                out.append((None, "FATAL", "sgw", line.strip()))
                continue
            if not m:
                if "panicked" in line:
                    out.append((None, "PANIC", "", line.strip()))
                continue
            ts = datetime.datetime.strptime(m.group(1)[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f" if "." in m.group(1)
                                            else "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
            out.append((ts, m.group(2), m.group(3), m.group(4)))
    return out


def shape(msg):
    """A log message without its varying numbers and keys, for grouping."""
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg)
    msg = re.sub(r'\\?"[^"\\]*/chunks/[^"\\]*\\?"', "KEY", msg)
    msg = re.sub(r"\b[0-9a-f]{16,}\b", "#", msg)
    msg = re.sub(r"\d+(\.\d+)?", "N", msg)
    return msg[:220]


def cmd_summary(a):
    w = a.work
    rows = []
    with open(os.path.join(w, "samples.csv")) as f:
        head = f.readline().strip().split(",")
        for line in f:
            v = dict(zip(head, line.strip().split(",")))
            rows.append(v)
    ev = read_events(w)
    t0 = next(t for t, k, _ in ev if k == "t0")
    stats = json.load(open(os.path.join(w, "load-stats.json"))) if os.path.exists(os.path.join(w, "load-stats.json")) else {}
    verify = json.load(open(os.path.join(w, "verify.json"))) if os.path.exists(os.path.join(w, "verify.json")) else {}
    out = []
    fails_early = []
    P = out.append
    P("=" * 78)
    P("soak summary: duration %ds, SIGKILL every %ds, S3 outage %ds from t=%ds" % (a.duration, a.kill_every, a.outage, a.outage_at))
    P("=" * 78)
    kills = [(t - t0, x) for t, k, x in ev if k == "kill"]
    readies = [(t - t0, x) for t, k, x in ev if k == "ready"]
    P("restarts: %d SIGKILL+restart (the last one before the final check, when the run got there)" % len(kills))
    for tk, xk in kills:
        nxt = [(tr, xr) for tr, xr in readies if tr >= tk]
        if nxt:
            P("  t=%6.1fs SIGKILL %s -> ready again at t=%6.1fs (%.1fs) %s" % (tk, xk, nxt[0][0], nxt[0][0] - tk, nxt[0][1]))
        else:
            P("  t=%6.1fs SIGKILL %s -> the restart DID NOT COME UP (see the end of sgw.log)" % (tk, xk))
            fails_early.append("the restart after the SIGKILL at t=%.0fs did not come up" % tk)
    clean = [x for t, k, x in ev if k == "stopped"]
    if clean:
        P("final SIGTERM: %s" % clean[-1])
    lost_total = 0
    fails = list(fails_early)
    P("")
    P("load (during the run, %s):" % ("from load-stats.json" if stats else "NO load-stats.json"))
    for name, d in sorted(stats.get("devices", {}).items()):
        lost_total += d.get("lost_blocks", 0)
        fails += ["%s: %s" % (name, x) for x in d.get("failures", [])]
        if name.startswith("vol"):
            P("  %-5s written %s (%d writes), acknowledged %s (%d writes, %d syncs), read %s, verified %s;"
              % (name, mib(d.get("bytes_written", 0)), d.get("writes", 0), mib(d.get("bytes_acked", 0)),
                 d.get("writes_acked", 0), d.get("syncs", 0), mib(d.get("bytes_read", 0)), mib(d.get("bytes_verified", 0))))
            P("        %d crash verifications, lost blocks %d (acknowledged writes %d), read mismatches %d; "
              "legal: %d blocks kept a later unacked write, %d torn unacked, %d unacked writes replayed; "
              "read errors %d, write errors %d, sync errors %d, reconnects %d"
              % (d.get("verify_passes", 0), d.get("lost_blocks", 0), d.get("lost_writes", 0),
                 d.get("read_mismatches", 0), d.get("unacked_blocks_survived", 0), d.get("torn_unacked_blocks", 0),
                 d.get("writes_replayed", 0),
                 d.get("read_errors", 0), d.get("write_errors", 0), d.get("sync_errors", 0), d.get("reconnects", 0)))
        else:
            P("  %-5s written %s, acknowledged %s (%d files), verified %s;"
              % (name, mib(d.get("bytes_written", 0)), mib(d.get("bytes_acked", 0)), d.get("files_acked", 0),
                 mib(d.get("bytes_verified", 0))))
            P("        %d crash verifications, %d whole-tape reads then rewrites from BOP (%d interrupted), "
              "in-flight file found whole %d / not committed %d, files read back %d, read errors %d, reconnects %d"
              % (d.get("verify_passes", 0), d.get("rewrites", 0), d.get("rewrites_interrupted", 0),
                 d.get("inflight_files_found_whole", 0), d.get("inflight_files_not_committed", 0),
                 d.get("files_read_back", 0), d.get("read_errors", 0), d.get("reconnects", 0)))
    P("")
    P("final check (fresh process, journals only, after a last SIGKILL and restart):")
    if not verify:
        P("  NOT RUN")
        fails.append("final verification did not run")
    for name, d in sorted(verify.get("devices", {}).items()):
        lost_total += d.get("lost_blocks", 0)
        fails += ["verify %s: %s" % (name, x) for x in d.get("failures", [])]
        if name.startswith("vol"):
            P("  %-5s verified %s (%d journalled writes, %d blocks hold data), lost blocks %d (writes %d)"
              % (name, mib(d.get("bytes_verified", 0)), d.get("journal_writes", 0), d.get("blocks_with_data", 0),
                 d.get("lost_blocks", 0), d.get("lost_writes", 0)))
        else:
            P("  %-5s verified %s (%d journalled files of the last generation)%s"
              % (name, mib(d.get("bytes_verified", 0)), d.get("journal_files", 0), " FAILED" if d.get("failures") else ""))
    if verify.get("timed_out"):
        fails.append("verify timed out: %s" % verify["timed_out"])
    lost_writes = sum(d.get("lost_writes", 0) for d in list(stats.get("devices", {}).values()) + list(verify.get("devices", {}).values()))
    P("LOST ACKNOWLEDGED WRITES: %d (blocks %d)" % (lost_writes, lost_total))

    # RSS and fds per segment.
    P("")
    P("daemon RSS and open fds (samples every 10 s, %s/samples.csv):" % w)
    segs = collections.OrderedDict()
    after = []
    for v in rows:
        if not v.get("rss_kib"):
            continue
        t = float(v["elapsed_s"])
        item = (t, int(v["rss_kib"]), int(v["fds"]), int(v.get("threads") or 0))
        if t >= a.duration:
            after.append(item)
        else:
            segs.setdefault(int(t // a.kill_every), []).append(item)
    P("  %-16s %8s %10s %10s %10s %6s %6s %8s" % ("segment", "samples", "RSS first", "RSS max", "RSS last", "fds max",
                                                  "fds last", "thr max"))
    peaks = {}
    for k, items in segs.items():
        peaks[k] = (max(i[1] for i in items), max(i[2] for i in items))
        P("  %4d-%4ds        %8d %8.1fMi %8.1fMi %8.1fMi %6d %6d %8d" % (
            k * a.kill_every, (k + 1) * a.kill_every, len(items), items[0][1] / 1024, peaks[k][0] / 1024,
            items[-1][1] / 1024, peaks[k][1], items[-1][2], max(i[3] for i in items)))
    if after:
        P("  after the load (final restart, verification): RSS max %.1f MiB, fds max %d"
          % (max(i[1] for i in after) / 1024, max(i[2] for i in after)))
    verdict = "n/a (fewer than 3 segments)"
    flat = True
    # A last segment with fewer than half its samples (a run cut short) is
    # not compared.
    ks = [k for k in sorted(peaks) if len(segs[k]) >= a.kill_every / 20]
    if len(ks) >= 3:
        ref, last = ks[1], ks[-1]
        rss_ok = peaks[last][0] <= 1.25 * peaks[ref][0]
        fds_ok = peaks[last][1] <= max(1.25 * peaks[ref][1], peaks[ref][1] + 8)
        # Growth within one process life: the last third of each segment
        # against its middle third.
        grow = []
        for k in (ks[1:] if a.kill_every >= 180 else []):
            items = segs[k]
            lo, hi = k * a.kill_every + a.kill_every / 3, k * a.kill_every + 2 * a.kill_every / 3
            mid = [i for i in items if lo <= i[0] < hi]
            end = [i for i in items if i[0] >= hi]
            if mid and end and max(i[1] for i in end) > 1.25 * max(i[1] for i in mid):
                grow.append("%d-%ds RSS %.1f -> %.1f MiB" % (k * a.kill_every, (k + 1) * a.kill_every,
                                                              max(i[1] for i in mid) / 1024, max(i[1] for i in end) / 1024))
            if mid and end and max(i[2] for i in end) > max(1.25 * max(i[2] for i in mid), max(i[2] for i in mid) + 8):
                grow.append("%d-%ds fds %d -> %d" % (k * a.kill_every, (k + 1) * a.kill_every,
                                                     max(i[2] for i in mid), max(i[2] for i in end)))
        flat = rss_ok and fds_ok and not grow
        verdict = "%s: last segment's peak RSS %.1f MiB vs segment 2's %.1f MiB (x%.2f, limit x1.25) %s; " \
                  "peak fds %d vs %d (limit x1.25 or +8) %s; in-segment growth (last third vs middle third, " \
                  "limit x1.25, segments of 180 s or more): %s" % (
                      "FLAT" if flat else "NOT FLAT", peaks[last][0] / 1024, peaks[ref][0] / 1024,
                      peaks[last][0] / peaks[ref][0], "ok" if rss_ok else "EXCEEDED", peaks[last][1], peaks[ref][1],
                      "ok" if fds_ok else "EXCEEDED", ", ".join(grow) or "none")
    P("  verdict (segment 1 is warm-up): " + verdict)

    # The outage.
    P("")
    ob = [t for t, k, _ in ev if k == "outage_begin"]
    oe = [t for t, k, _ in ev if k == "outage_end"]
    if ob and oe:
        b, e = ob[0], oe[0]
        P("S3 outage: rclone killed at t=%.1fs, back at t=%.1fs (%.1fs)" % (b - t0, e - t0, e - b))
        win = [v for v in rows if v.get("dirty_pct") and b - t0 - 20 <= float(v["elapsed_s"]) <= e - t0 + 180]
        if win:
            P("  gauges around it (counters count from the daemon's start):")
            P("    %7s %7s %7s %8s %7s %8s %9s %9s" % ("t", "dirty%", "buffer%", "uploads", "errors", "retries",
                                                     "up MiB", "down MiB"))
            for v in win:
                P("    %6.0fs %7s %7s %8s %7s %8s %9s %9s" % (
                    float(v["elapsed_s"]), num(v["dirty_pct"], "%.1f"), num(v["upload_buffer_pct"], "%.1f"),
                    "ok" if v["uploads_health"] == "1" else "DEGRADED" if v["uploads_health"] == "0" else "?",
                    v["cloud_errors"], v.get("cloud_retries", ""), num(v["uploaded_bytes"], "%.0f", MiB),
                    num(v.get("downloaded_bytes", ""), "%.0f", MiB)))
        entries = parse_log(os.path.join(w, "sgw.log"))
        inw = [x for x in entries if x[0] is not None and b - 5 <= x[0] <= e + 180 and x[1] in ("WARN", "ERROR")]
        groups = collections.OrderedDict()
        for ts, lvl, tgt, msg in inw:
            key = (lvl, tgt, shape(msg))
            g = groups.setdefault(key, [ts, ts, 0, msg])
            g[1] = ts
            g[2] += 1
        P("  gateway WARN/ERROR lines from the outage to 180 s after it: %d, %d kinds" % (len(inw), len(groups)))
        for (lvl, tgt, _), (f1, f2, n, msg) in groups.items():
            P("    %dx %s %s t=%.1f..%.1fs: %s" % (n, lvl, tgt, f1 - t0, f2 - t0, msg[:300]))
        rec = [x for x in entries if x[0] is not None and x[0] >= e and x[1] == "INFO"
               and re.search(r"(?i)upload.*(resum|recover)|recover.*upload|back", x[3])]
        if rec:
            P("  first recovery line: t=%.1fs %s %s" % (rec[0][0] - t0, rec[0][2], rec[0][3][:200]))
        # The gauges tell when uploads drained again.
        back = [v for v in rows if v.get("uploads_health") == "1" and float(v["elapsed_s"]) >= e - t0]
        if back:
            P("  sgw_health{component=\"uploads\"} = 1 again at t=%ss" % back[0]["elapsed_s"])
    else:
        P("S3 outage: none happened")

    bk = [(float(v["elapsed_s"]), float(v["bucket_mib"])) for v in rows if v.get("bucket_mib")]
    fa = [float(v["fs_avail_mib"]) for v in rows if v.get("fs_avail_mib")]
    if bk:
        P("")
        P("bucket (rclone's directory): %.1f GiB at t=%.0fs, %.1f GiB at t=%.0fs; least free space on its "
          "filesystem %.1f GiB" % (bk[0][1] / 1024, bk[0][0], bk[-1][1] / 1024, bk[-1][0], min(fa) / 1024 if fa else -1))
    ages = [float(v["max_rp_age_s"]) for v in rows if v.get("max_rp_age_s") not in (None, "", "0")]
    rps = [float(v["recovery_points"]) for v in rows if v.get("recovery_points") not in (None, "")]
    P("")
    P("recovery points: %s scheduled ones counted by the daemons (sum of the per-process counters' last values "
      "before each restart: %d); largest age seen %s"
      % ("some" if any(rps) else "NO", sum(seg_last(rows, "recovery_points", a.kill_every)),
         "%.0fs" % max(ages) if ages else "- (no volume had one)"))

    entries = parse_log(os.path.join(w, "sgw.log"))
    lv = collections.Counter(x[1] for x in entries)
    P("")
    P("gateway log over the whole run: %s" % ", ".join("%s %d" % kv for kv in sorted(lv.items())))
    groups = collections.Counter((x[1], x[2], shape(x[3])) for x in entries
                                 if x[1] in ("WARN", "ERROR", "PANIC", "FATAL"))
    for (lvl, tgt, msg), n in groups.most_common(25):
        P("    %5dx %s %s: %s" % (n, lvl, tgt, msg[:200]))
    P("")
    if fails:
        P("FAILURES (%d):" % len(fails))
        for x in fails[:40]:
            P("  " + x[:600])
    ok = not fails and lost_total == 0 and lost_writes == 0 and bool(verify)
    P("RESULT: %s; memory/fds %s" % ("PASS (0 lost acknowledged writes, every check passed)" if ok else "FAIL",
                                      "flat" if flat else "NOT FLAT"))
    text = "\n".join(out)
    print(text)
    with open(os.path.join(w, "summary.txt"), "w") as f:
        f.write(text + "\n")
    return 0 if ok and flat else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["run", "verify", "summary"])
    p.add_argument("--portal")
    p.add_argument("--volumes", default="")
    p.add_argument("--drives", default="")
    p.add_argument("--work", required=True)
    p.add_argument("--stop-file")
    p.add_argument("--seed", default="soak")
    p.add_argument("--max-seconds", type=float, default=4000)
    p.add_argument("--vol-mbps", type=float, default=12, help="per volume, reads and writes")
    p.add_argument("--write-fraction", type=float, default=0.6)
    p.add_argument("--sync-interval", type=float, default=1.0)
    p.add_argument("--tape-mbps", type=float, default=4, help="per drive, writes")
    p.add_argument("--tape-rotate-mib", type=float, default=1024)
    p.add_argument("--tail-files", type=int, default=3)
    p.add_argument("--cmd-timeout", type=int, default=300)
    p.add_argument("--reconnect-secs", type=int, default=300)
    p.add_argument("--read-retry-secs", type=int, default=300)
    p.add_argument("--duration", type=int)
    p.add_argument("--kill-every", type=int)
    p.add_argument("--outage-at", type=int)
    p.add_argument("--outage", type=int)
    a = p.parse_args()
    return {"run": cmd_run, "verify": cmd_verify, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
