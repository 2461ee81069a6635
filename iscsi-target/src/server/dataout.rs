//! Collecting a write command's data-out (RFC 7143 §4.2.4.2, §11.7): the
//! immediate data, the unsolicited burst, and the solicited bursts that our
//! R2Ts ask for. Pure state: the connection feeds Data-Out PDUs in and sends
//! the R2Ts this hands back.

use bytes::{Bytes, BytesMut};
use crc_fast::CrcAlgorithm;

use crate::pdu::{DataOut, RESERVED_TAG};
use crate::scsi::DataOutChecksums;

/// The negotiated limits that shape a transfer.
#[derive(Debug, Clone, Copy)]
pub struct TransferLimits {
    pub initial_r2t: bool,
    pub first_burst_length: u32,
    pub max_burst_length: u32,
    pub max_outstanding_r2t: u32,
    /// What we declared: the largest data segment we accept.
    pub max_recv_data_segment_length: u32,
}

/// An R2T to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2tRequest {
    pub ttt: u32,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataOutError {
    #[error("unsolicited data not allowed or beyond the first burst")]
    UnsolicitedNotAllowed,
    #[error("Data-Out for an unknown target transfer tag")]
    UnknownTtt,
    #[error("DataSN {got} where {want} was expected")]
    DataSn { got: u32, want: u32 },
    #[error("buffer offset {got} where {want} was expected")]
    Offset { got: u32, want: u32 },
    #[error("Data-Out overruns its burst")]
    Overrun,
    #[error("immediate data longer than the first burst or the transfer")]
    ImmediateTooLong,
}

#[derive(Debug)]
struct Burst {
    ttt: u32,
    /// Next expected offset and the burst's end.
    next: u32,
    end: u32,
    next_data_sn: u32,
}

/// One write command's data-out in progress.
#[derive(Debug)]
pub struct WriteCollector {
    limits: TransferLimits,
    total: u32,
    /// The data so far, grown in offset order: data that arrives in order
    /// (always, when DataPDUInOrder and DataSequenceInOrder are Yes) is
    /// appended, so the buffer is never zeroed first. Data beyond the end
    /// zero-fills the gap it leaves, which the data due there overwrites.
    buf: BytesMut,
    /// Immediate data that covered the whole transfer: kept without a copy.
    whole: Option<Bytes>,
    /// Checksums of each whole granule received so far, for a unit that
    /// asked for them: computed just after the data is copied in, while it
    /// is still in the CPU's caches. Dropped if data arrives out of order.
    checksums: Option<DataOutChecksums>,
    received: u32,
    unsolicited: Option<Burst>,
    solicited: Vec<Burst>,
    /// Where the next R2T starts.
    next_r2t_offset: u32,
    next_r2t_sn: u32,
}

impl WriteCollector {
    /// Starts collecting `total` bytes (the expected data transfer length)
    /// given the command's immediate data; with `checksum_granule`, also
    /// the CRC-32C of every granule.
    pub fn new(
        limits: TransferLimits,
        total: u32,
        immediate: Bytes,
        checksum_granule: Option<u32>,
    ) -> Result<Self, DataOutError> {
        let first_burst = limits.first_burst_length.min(total);
        let imm_len = immediate.len() as u32;
        if imm_len > first_burst {
            return Err(DataOutError::ImmediateTooLong);
        }
        let unsolicited_end = if limits.initial_r2t { imm_len } else { first_burst };
        let mut c = WriteCollector {
            limits,
            total,
            buf: BytesMut::new(),
            whole: None,
            checksums: checksum_granule
                .filter(|g| *g > 0)
                .map(|granule| DataOutChecksums { granule, crcs: Vec::with_capacity((total / granule) as usize) }),
            received: imm_len,
            unsolicited: (unsolicited_end > imm_len).then_some(Burst {
                ttt: RESERVED_TAG,
                next: imm_len,
                end: unsolicited_end,
                next_data_sn: 0,
            }),
            solicited: Vec::new(),
            next_r2t_offset: unsolicited_end,
            next_r2t_sn: 0,
        };
        if imm_len == total {
            if let Some(sums) = c.checksums.as_mut() {
                checksum_granules(sums, &immediate);
            }
            c.whole = Some(immediate);
        } else {
            c.buf = BytesMut::with_capacity(total as usize);
            c.place(0, &immediate);
        }
        Ok(c)
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.total
    }

    /// The collected data-out and its checksums, once complete.
    pub fn into_data(self) -> Collected {
        let data = match self.whole {
            Some(b) => b,
            None => self.buf.freeze(),
        };
        Collected { data, checksums: self.checksums }
    }

    /// R2Ts to send now, keeping at most MaxOutstandingR2T outstanding.
    /// `next_ttt` hands out target transfer tags.
    pub fn r2ts(&mut self, mut next_ttt: impl FnMut() -> u32) -> Vec<R2tRequest> {
        let mut out = Vec::new();
        while self.next_r2t_offset < self.total && (self.solicited.len() as u32) < self.limits.max_outstanding_r2t {
            let len = (self.total - self.next_r2t_offset).min(self.limits.max_burst_length);
            let ttt = next_ttt();
            let r = R2tRequest {
                ttt,
                r2t_sn: self.next_r2t_sn,
                buffer_offset: self.next_r2t_offset,
                desired_len: len,
            };
            self.solicited.push(Burst { ttt, next: r.buffer_offset, end: r.buffer_offset + len, next_data_sn: 0 });
            self.next_r2t_offset += len;
            self.next_r2t_sn += 1;
            out.push(r);
        }
        out
    }

    /// Puts validated data at `at`: appended when it comes in order, else
    /// past a zero-filled gap or over one.
    fn place(&mut self, at: usize, data: &[u8]) {
        if at != self.buf.len() {
            self.checksums = None;
        }
        if at > self.buf.len() {
            self.buf.resize(at, 0);
        }
        let over = (self.buf.len() - at).min(data.len());
        self.buf[at..at + over].copy_from_slice(&data[..over]);
        self.buf.extend_from_slice(&data[over..]);
        if let Some(sums) = self.checksums.as_mut() {
            checksum_granules(sums, &self.buf);
        }
    }

    /// Takes one Data-Out PDU for this command.
    pub fn on_data_out(&mut self, d: &DataOut) -> Result<(), DataOutError> {
        let len = d.data.len() as u32;
        if len > self.limits.max_recv_data_segment_length {
            return Err(DataOutError::Overrun);
        }
        let burst_idx = if d.ttt == RESERVED_TAG {
            None
        } else {
            Some(self.solicited.iter().position(|b| b.ttt == d.ttt).ok_or(DataOutError::UnknownTtt)?)
        };
        let burst = match burst_idx {
            None => self.unsolicited.as_mut().ok_or(DataOutError::UnsolicitedNotAllowed)?,
            Some(i) => &mut self.solicited[i],
        };
        if d.data_sn != burst.next_data_sn {
            return Err(DataOutError::DataSn { got: d.data_sn, want: burst.next_data_sn });
        }
        if d.buffer_offset != burst.next {
            return Err(DataOutError::Offset { got: d.buffer_offset, want: burst.next });
        }
        let end = d.buffer_offset.checked_add(len).ok_or(DataOutError::Overrun)?;
        if end > burst.end {
            return Err(DataOutError::Overrun);
        }
        let done = end == burst.end;
        if done != d.final_ {
            // The F bit must mark exactly the end of a burst: an unsolicited
            // burst ended early would leave a gap that no R2T asks for.
            return Err(DataOutError::Overrun);
        }
        burst.next = end;
        burst.next_data_sn += 1;
        self.place(d.buffer_offset as usize, &d.data);
        self.received += len;
        if done {
            match burst_idx {
                None => self.unsolicited = None,
                Some(i) => {
                    self.solicited.remove(i);
                }
            }
        }
        Ok(())
    }
}

/// A command's data-out as collected.
#[derive(Debug)]
pub struct Collected {
    pub data: Bytes,
    pub checksums: Option<DataOutChecksums>,
}

/// Extends `sums` over the whole granules of `data` (the buffer from its
/// start) that it does not cover yet.
fn checksum_granules(sums: &mut DataOutChecksums, data: &[u8]) {
    let g = sums.granule as usize;
    let mut from = sums.crcs.len() * g;
    while let Some(granule) = data.get(from..from + g) {
        // CRC-32C fits in 32 bits; the crate returns every width as a u64.
        sums.crcs.push(crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, granule) as u32);
        from += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(initial_r2t: bool) -> TransferLimits {
        TransferLimits {
            initial_r2t,
            first_burst_length: 8192,
            max_burst_length: 16384,
            max_outstanding_r2t: 2,
            max_recv_data_segment_length: 8192,
        }
    }

    fn dout(ttt: u32, data_sn: u32, offset: u32, len: usize, final_: bool) -> DataOut {
        DataOut {
            final_,
            lun: 0,
            itt: 1,
            ttt,
            exp_stat_sn: 0,
            data_sn,
            buffer_offset: offset,
            data: Bytes::from(vec![(offset / 512) as u8; len]),
        }
    }

    #[test]
    fn immediate_covers_everything_without_a_copy() {
        let imm = Bytes::from(vec![7u8; 4096]);
        let c = WriteCollector::new(limits(false), 4096, imm.clone(), None).unwrap();
        assert!(c.is_complete());
        assert_eq!(c.into_data().data.as_ptr(), imm.as_ptr());
    }

    #[test]
    fn unsolicited_then_solicited() {
        let mut c = WriteCollector::new(limits(false), 40960, Bytes::from(vec![0u8; 4096]), None).unwrap();
        c.on_data_out(&dout(RESERVED_TAG, 0, 4096, 4096, true)).unwrap();
        let mut t = 100;
        let r = c.r2ts(|| {
            t += 1;
            t
        });
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].buffer_offset, r[0].desired_len), (8192, 16384));
        assert_eq!((r[1].buffer_offset, r[1].desired_len), (24576, 16384));
        c.on_data_out(&dout(101, 0, 8192, 8192, false)).unwrap();
        c.on_data_out(&dout(101, 1, 16384, 8192, true)).unwrap();
        c.on_data_out(&dout(102, 0, 24576, 8192, false)).unwrap();
        assert!(!c.is_complete());
        c.on_data_out(&dout(102, 1, 32768, 8192, true)).unwrap();
        assert!(c.is_complete());
        let data = c.into_data().data;
        assert_eq!(data.len(), 40960);
        assert_eq!(data[8192], 16);
    }

    /// Bursts answered out of order (an initiator may, when it negotiates
    /// DataSequenceInOrder=No) still land at their offsets, the gap the
    /// later burst left filled by the earlier one.
    /// 32 KiB in two solicited bursts, each sent in two PDUs, the second
    /// burst's first PDU before the first burst's.
    fn bursts_out_of_order(checksum_granule: Option<u32>) -> Collected {
        let mut c = WriteCollector::new(limits(true), 32768, Bytes::new(), checksum_granule).unwrap();
        let mut t = 0;
        let r: Vec<u32> = c
            .r2ts(|| {
                t += 1;
                t
            })
            .iter()
            .map(|r| r.ttt)
            .collect();
        assert_eq!(r.len(), 2);
        c.on_data_out(&dout(r[1], 0, 16384, 8192, false)).unwrap();
        c.on_data_out(&dout(r[0], 0, 0, 8192, false)).unwrap();
        c.on_data_out(&dout(r[1], 1, 24576, 8192, true)).unwrap();
        c.on_data_out(&dout(r[0], 1, 8192, 8192, true)).unwrap();
        assert!(c.is_complete());
        c.into_data()
    }

    #[test]
    fn bursts_out_of_order_land_at_their_offsets() {
        let data = bursts_out_of_order(None).data;
        let want: Vec<u8> = (0..32768u32).map(|i| (i / 8192 * 16) as u8).collect();
        assert_eq!(&data[..], &want[..]);
    }

    fn expected_crcs(data: &[u8], granule: usize) -> Vec<u32> {
        data.chunks_exact(granule).map(crc32c::crc32c).collect()
    }

    /// Checksums come out for the whole granules of the data, whether it
    /// came as immediate data alone or across PDUs that split granules;
    /// data out of order drops them (the unit computes its own).
    #[test]
    fn checksums_cover_whole_granules_of_data_in_order() {
        let imm = Bytes::from((0..4096u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        let c = WriteCollector::new(limits(false), 4096, imm.clone(), Some(1024)).unwrap();
        let got = c.into_data();
        assert_eq!(got.checksums.unwrap().crcs, expected_crcs(&imm, 1024));

        // 3000 bytes of immediate data, then PDUs of 3000 and 2192 bytes:
        // granules of 1024 straddle every PDU boundary.
        let mut c = WriteCollector::new(limits(false), 8192, Bytes::from(vec![1u8; 3000]), Some(1024)).unwrap();
        let mut d = dout(RESERVED_TAG, 0, 3000, 3000, false);
        d.data = Bytes::from(vec![2u8; 3000]);
        c.on_data_out(&d).unwrap();
        let mut d = dout(RESERVED_TAG, 1, 6000, 2192, true);
        d.data = Bytes::from(vec![3u8; 2192]);
        c.on_data_out(&d).unwrap();
        let got = c.into_data();
        assert_eq!(got.checksums.unwrap().crcs, expected_crcs(&got.data, 1024));

        assert!(bursts_out_of_order(Some(4096)).checksums.is_none());
    }

    #[test]
    fn bad_datasn_offset_ttt_and_unsolicited_are_errors() {
        let mut c = WriteCollector::new(limits(true), 8192, Bytes::new(), None).unwrap();
        assert_eq!(c.on_data_out(&dout(RESERVED_TAG, 0, 0, 512, false)), Err(DataOutError::UnsolicitedNotAllowed));
        let r = c.r2ts(|| 5);
        assert_eq!(r.len(), 1);
        assert_eq!(c.on_data_out(&dout(6, 0, 0, 512, false)), Err(DataOutError::UnknownTtt));
        assert_eq!(c.on_data_out(&dout(5, 1, 0, 512, false)), Err(DataOutError::DataSn { got: 1, want: 0 }));
        assert_eq!(c.on_data_out(&dout(5, 0, 512, 512, false)), Err(DataOutError::Offset { got: 512, want: 0 }));
        assert_eq!(c.on_data_out(&dout(5, 0, 0, 8192, false)), Err(DataOutError::Overrun));
        c.on_data_out(&dout(5, 0, 0, 8192, true)).unwrap();
        assert!(c.is_complete());
    }

    #[test]
    fn unsolicited_burst_must_end_exactly_at_the_first_burst() {
        // Found by the dataout fuzzer: an F bit before FirstBurstLength used
        // to close the unsolicited burst and leave bytes no R2T asked for.
        let mut c = WriteCollector::new(limits(false), 40960, Bytes::from(vec![0u8; 3]), None).unwrap();
        assert_eq!(c.on_data_out(&dout(RESERVED_TAG, 0, 3, 3039, true)), Err(DataOutError::Overrun));
        let mut c = WriteCollector::new(limits(false), 40960, Bytes::new(), None).unwrap();
        assert_eq!(c.on_data_out(&dout(RESERVED_TAG, 0, 0, 8192, false)), Err(DataOutError::Overrun));
    }

    #[test]
    fn immediate_longer_than_first_burst_is_refused() {
        let e = WriteCollector::new(limits(false), 65536, Bytes::from(vec![0u8; 9000]), None).unwrap_err();
        assert_eq!(e, DataOutError::ImmediateTooLong);
    }
}
