//! Turning a SCSI command's outcome into PDUs (RFC 7143 §11.4, §11.7):
//! Data-In cut to the initiator's MaxRecvDataSegmentLength, F bits at burst
//! ends, the status folded into the last Data-In when there is no sense, and
//! residuals from the expected transfer length.

use bytes::{BufMut, Bytes, BytesMut};

use crate::pdu::{DataIn, Pdu, Residual, ScsiResponse as ScsiResponsePdu, RESERVED_TAG};
use crate::scsi::{ScsiResponse, ScsiStatus};

/// What the initiator asked for in its SCSI Command PDU.
#[derive(Debug, Clone, Copy)]
pub struct CommandShape {
    pub itt: u32,
    pub lun: u64,
    pub read: bool,
    pub write: bool,
    pub expected_len: u32,
}

/// Per-connection limits for Data-In.
#[derive(Debug, Clone, Copy)]
pub struct DataInLimits {
    pub max_pdu: u32,
    pub max_burst: u32,
}

/// Builds the PDUs answering one command. Sequence numbers (StatSN,
/// ExpCmdSN, MaxCmdSN) are filled in by the writer.
pub fn build(shape: CommandShape, resp: ScsiResponse, limits: DataInLimits) -> Vec<Pdu> {
    let mut out = Vec::new();
    let status = resp.status as u8;
    let mut residual = Residual::default();
    let mut data = Bytes::new();
    if shape.read {
        residual = Residual::of(shape.expected_len, resp.data_in.len() as u64);
        data = resp.data_in;
        data.truncate(shape.expected_len as usize);
    } else if shape.write {
        if let Some(wanted) = resp.data_out_len {
            residual = Residual::of(shape.expected_len, wanted);
        }
    } else if !resp.data_in.is_empty() {
        // Data-in for a command that declared no read: say so as overflow.
        residual = Residual::of(0, resp.data_in.len() as u64);
    }
    let fold_status = resp.sense.is_none() && status == ScsiStatus::Good as u8;
    let max_pdu = limits.max_pdu.max(512) as usize;
    let max_burst = limits.max_burst.max(limits.max_pdu).max(512) as usize;
    let mut offset = 0usize;
    let mut data_sn = 0u32;
    while offset < data.len() {
        let burst_end = (offset / max_burst + 1) * max_burst;
        let end = (offset + max_pdu).min(data.len()).min(burst_end);
        let last = end == data.len();
        let with_status = last && fold_status;
        out.push(Pdu::DataIn(DataIn {
            final_: last || end == burst_end,
            ack: false,
            residual: if with_status { residual.clone() } else { Residual::default() },
            status: with_status.then_some(status),
            lun: shape.lun,
            itt: shape.itt,
            ttt: RESERVED_TAG,
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            data_sn,
            buffer_offset: offset as u32,
            data: data.slice(offset..end),
        }));
        data_sn += 1;
        offset = end;
    }
    if data.is_empty() || !fold_status {
        let sense = match &resp.sense {
            Some(s) => {
                let fixed = s.to_fixed();
                let mut b = BytesMut::with_capacity(2 + fixed.len());
                b.put_u16(fixed.len() as u16);
                b.put_slice(&fixed);
                b.freeze()
            }
            None => Bytes::new(),
        };
        out.push(Pdu::ScsiResponse(ScsiResponsePdu {
            bidi_residual_flags: Residual::default(),
            residual,
            response: 0,
            status,
            itt: shape.itt,
            snack_tag: 0,
            stat_sn: 0,
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
            exp_data_sn: data_sn,
            data: sense,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::Sense;

    fn shape(read: bool, expected_len: u32) -> CommandShape {
        CommandShape { itt: 9, lun: 0, read, write: !read, expected_len }
    }

    const LIMITS: DataInLimits = DataInLimits { max_pdu: 8192, max_burst: 16384 };

    #[test]
    fn read_is_cut_with_status_in_last_pdu() {
        let pdus = build(shape(true, 20000), ScsiResponse::data(vec![1u8; 20000]), LIMITS);
        assert_eq!(pdus.len(), 3);
        let Pdu::DataIn(a) = &pdus[1] else { panic!() };
        assert!(a.final_ && a.status.is_none() && a.data.len() == 8192 && a.data_sn == 1);
        let Pdu::DataIn(last) = &pdus[2] else { panic!() };
        assert_eq!((last.buffer_offset, last.data.len(), last.status), (16384, 3616, Some(0)));
        assert!(last.final_);
    }

    #[test]
    fn short_read_underflows_and_long_read_overflows() {
        let pdus = build(shape(true, 1024), ScsiResponse::data(vec![0u8; 512]), LIMITS);
        let Pdu::DataIn(d) = &pdus[0] else { panic!() };
        assert_eq!(d.residual, Residual { overflow: false, underflow: true, count: 512 });
        let pdus = build(shape(true, 512), ScsiResponse::data(vec![0u8; 1024]), LIMITS);
        let Pdu::DataIn(d) = &pdus[0] else { panic!() };
        assert_eq!(d.data.len(), 512);
        assert_eq!(d.residual, Residual { overflow: true, underflow: false, count: 512 });
    }

    #[test]
    fn check_condition_goes_in_a_response_with_sense() {
        let pdus = build(shape(true, 512), ScsiResponse::check(Sense::LBA_OUT_OF_RANGE), LIMITS);
        assert_eq!(pdus.len(), 1);
        let Pdu::ScsiResponse(r) = &pdus[0] else { panic!() };
        assert_eq!(r.status, 2);
        assert_eq!(&r.data[..2], &[0, 18]);
        assert_eq!(r.data[2 + 12], 0x21);
        assert_eq!(r.residual, Residual { overflow: false, underflow: true, count: 512 });
    }

    #[test]
    fn write_residual_from_cdb_length() {
        let pdus = build(shape(false, 0), ScsiResponse::good().with_data_out_len(512), LIMITS);
        let Pdu::ScsiResponse(r) = &pdus[0] else { panic!() };
        assert_eq!(r.residual, Residual { overflow: true, underflow: false, count: 512 });
    }
}
