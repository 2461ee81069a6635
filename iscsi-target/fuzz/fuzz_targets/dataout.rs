//! A write command's data-out: `server::dataout::WriteCollector` fed
//! Data-Out PDUs, well-formed and not, by a model initiator.
//!
//! Input: a 12-byte header (flags, FirstBurstLength, MaxBurstLength,
//! MaxRecvDataSegmentLength, MaxOutstandingR2T, the transfer length and
//! the immediate data length), then up to 64 five-byte actions: ask for
//! R2Ts, send (part of) the unsolicited burst or an R2T's burst, or send a
//! Data-Out with arbitrary fields. Data bytes are a function of their
//! buffer offset, so misplaced data shows.
//!
//! Checks: no byte is accepted twice, the collected data is what was sent
//! where it was sent, R2Ts stay within the transfer and the limits, and
//! after the actions a correct initiator can always finish the transfer.

#![no_main]

use std::collections::BTreeMap;

use bytes::Bytes;
use iscsi_target::pdu::{DataOut, RESERVED_TAG};
use iscsi_target::server::dataout::{TransferLimits, WriteCollector};
use libfuzzer_sys::fuzz_target;

fn pattern(offset: u32) -> u8 {
    (offset ^ offset >> 8 ^ offset >> 16) as u8
}

fn payload(offset: u32, len: u32) -> Bytes {
    (offset..offset + len).map(pattern).collect()
}

/// What the model initiator knows of one burst.
#[derive(Debug, Clone, Copy)]
struct Burst {
    next: u32,
    end: u32,
    data_sn: u32,
}

struct Harness {
    c: WriteCollector,
    limits: TransferLimits,
    total: u32,
    covered: Vec<bool>,
    unsolicited: Option<Burst>,
    r2ts: BTreeMap<u32, Burst>,
    next_ttt: u32,
    /// A Data-Out was refused: the command has failed and takes no more.
    failed: bool,
}

impl Harness {
    fn ask_r2ts(&mut self) {
        let next = &mut self.next_ttt;
        let issued = self.c.r2ts(|| {
            *next = next.wrapping_add(1) & 0x7fff_ffff;
            *next
        });
        for r in issued {
            assert_ne!(r.ttt, RESERVED_TAG);
            assert!(r.desired_len > 0 && r.desired_len <= self.limits.max_burst_length, "{r:?}");
            let end = r.buffer_offset.checked_add(r.desired_len).expect("R2T overflows");
            assert!(end <= self.total, "R2T {r:?} beyond the transfer of {}", self.total);
            assert!(
                (r.buffer_offset..end).all(|o| !self.covered[o as usize]),
                "R2T {r:?} asks again for data already received"
            );
            assert!(self.r2ts.insert(r.ttt, Burst { next: r.buffer_offset, end, data_sn: 0 }).is_none());
        }
        assert!(self.r2ts.len() as u32 <= self.limits.max_outstanding_r2t, "too many R2Ts outstanding");
    }

    /// Sends one Data-Out and updates the model if it is accepted.
    fn send(&mut self, ttt: u32, data_sn: u32, offset: u32, len: u32, final_: bool) {
        if self.failed {
            return;
        }
        let d = DataOut {
            final_,
            lun: 0,
            itt: 1,
            ttt,
            exp_stat_sn: 0,
            data_sn,
            buffer_offset: offset,
            data: payload(offset, len),
        };
        if self.c.on_data_out(&d).is_err() {
            self.failed = true;
            return;
        }
        let end = offset + len;
        assert!(end <= self.total, "accepted data past the transfer");
        for o in offset..end {
            assert!(!std::mem::replace(&mut self.covered[o as usize], true), "byte {o} accepted twice");
        }
        let burst = if ttt == RESERVED_TAG { self.unsolicited.as_mut() } else { self.r2ts.get_mut(&ttt) };
        let burst = burst.expect("accepted data for a burst that is not open");
        assert_eq!((burst.next, burst.data_sn), (offset, data_sn), "accepted out of sequence");
        burst.next = end;
        burst.data_sn += 1;
        if end == burst.end || final_ {
            if ttt == RESERVED_TAG {
                self.unsolicited = None;
            } else {
                self.r2ts.remove(&ttt);
            }
        }
    }

    /// Sends what is left of a burst, in PDUs no larger than allowed.
    fn finish_burst(&mut self, ttt: u32, b: Burst) {
        let mut at = b.next;
        let mut sn = b.data_sn;
        while at < b.end && !self.failed {
            let len = (b.end - at).min(self.limits.max_recv_data_segment_length);
            self.send(ttt, sn, at, len, at + len == b.end);
            at += len;
            sn += 1;
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> u32 {
    u16::from_be_bytes([b[i], b[i + 1]]) as u32
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 12 {
        return;
    }
    let (head, actions) = input.split_at(12);
    // Limits as negotiation can leave them (FirstBurstLength at most
    // MaxBurstLength, everything at least 512, MaxOutstandingR2T >= 1),
    // scaled down so one run stays cheap.
    let max_burst = 512 + u16_at(head, 3);
    let limits = TransferLimits {
        initial_r2t: head[0] & 1 != 0,
        first_burst_length: (512 + u16_at(head, 1)).min(max_burst),
        max_burst_length: max_burst,
        max_outstanding_r2t: 1 + (head[0] >> 1 & 3) as u32,
        max_recv_data_segment_length: 512 + u16_at(head, 5) % 16384,
    };
    let total = u32::from_be_bytes([0, head[7] & 1, head[8], head[9]]);
    let imm_len = u16_at(head, 10).min(total).min(limits.max_recv_data_segment_length);
    // Checksums for a unit that asks for them, in 512-byte granules.
    let granule = (head[0] & 8 != 0).then_some(512u32);
    let c = match WriteCollector::new(limits, total, payload(0, imm_len), granule) {
        Ok(c) => c,
        Err(_) => {
            assert!(imm_len > limits.first_burst_length.min(total));
            return;
        }
    };
    let unsolicited_end = if limits.initial_r2t { imm_len } else { limits.first_burst_length.min(total) };
    let mut h = Harness {
        c,
        limits,
        total,
        covered: (0..total).map(|o| o < imm_len).collect(),
        unsolicited: (unsolicited_end > imm_len).then_some(Burst { next: imm_len, end: unsolicited_end, data_sn: 0 }),
        r2ts: BTreeMap::new(),
        next_ttt: 0,
        failed: false,
    };

    for a in actions.chunks_exact(5).take(64) {
        let len = u16_at(a, 1) % (limits.max_recv_data_segment_length + 1);
        match a[0] & 3 {
            0 => h.ask_r2ts(),
            1 => {
                if let Some(b) = h.unsolicited {
                    let len = len.min(b.end - b.next);
                    h.send(RESERVED_TAG, b.data_sn, b.next, len, a[0] & 4 != 0 || b.next + len == b.end);
                }
            }
            2 => {
                if let Some((&ttt, &b)) = h.r2ts.iter().nth(a[3] as usize % h.r2ts.len().max(1)) {
                    let len = len.min(b.end - b.next);
                    h.send(ttt, b.data_sn, b.next, len, b.next + len == b.end);
                }
            }
            _ => {
                // Arbitrary fields: the tag of an open burst or any tag, any
                // DataSN, an offset near the transfer.
                let ttt = match a[3] & 3 {
                    0 => RESERVED_TAG,
                    1 => h.r2ts.keys().next().copied().unwrap_or(1),
                    _ => a[4] as u32,
                };
                let offset = (a[4] as u32 * 512).min(total);
                h.send(ttt, a[3] as u32 >> 2, offset, len, a[0] & 4 != 0);
            }
        }
    }
    if h.failed {
        return;
    }

    // A correct initiator finishes the transfer from here.
    if let Some(b) = h.unsolicited {
        h.finish_burst(RESERVED_TAG, b);
    }
    for _ in 0..=total / 512 + 1 {
        if h.failed || h.c.is_complete() {
            break;
        }
        h.ask_r2ts();
        let open: Vec<(u32, Burst)> = h.r2ts.iter().map(|(&t, &b)| (t, b)).collect();
        for (ttt, b) in open {
            h.finish_burst(ttt, b);
        }
    }
    assert!(!h.failed, "a correct Data-Out was refused");
    let missing = h.covered.iter().filter(|&&c| !c).count();
    assert!(h.c.is_complete(), "the transfer cannot be completed: {missing} of {total} bytes never asked for");
    assert!(h.covered.iter().all(|&c| c), "complete with bytes missing");
    let collected = h.c.into_data();
    let data = collected.data;
    assert_eq!(data.len(), total as usize);
    assert!(data.iter().enumerate().all(|(o, &b)| b == pattern(o as u32)), "data out of place");
    // Data in order keeps its checksums, and they are right.
    if let (Some(g), Some(sums)) = (granule, collected.checksums) {
        assert_eq!(sums.crcs.len(), (total / g) as usize);
        for (i, crc) in sums.crcs.iter().enumerate() {
            let at = i * g as usize;
            assert_eq!(*crc, crc32c::crc32c(&data[at..at + g as usize]), "checksum of granule {i}");
        }
    }
});
