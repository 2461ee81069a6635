//! Typed PDUs to bytes. The data segment is not copied: an encoded PDU is a
//! header, the data as given, and a short tail (padding and data digest), so
//! the connection can write them with one vectored write.

use bytes::{BufMut, Bytes, BytesMut};

use super::bhs::{pad4, BHS_LEN};
use super::digest::{crc32c, data_crc, Digests};
use super::raw::{join, RawBhs};
use super::types::*;

/// A PDU ready for the wire.
#[derive(Debug, Clone)]
pub struct EncodedPdu {
    /// BHS, AHS and header digest.
    pub head: Bytes,
    /// The data segment.
    pub data: Bytes,
    /// Padding and data digest.
    pub tail: Bytes,
}

impl EncodedPdu {
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The PDU as one contiguous buffer (tests, fuzzing, small PDUs).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.len());
        b.put_slice(&self.head);
        b.put_slice(&self.data);
        b.put_slice(&self.tail);
        b.freeze()
    }
}

fn flags(bits: &[(bool, u8)]) -> u8 {
    bits.iter().fold(0, |acc, (on, mask)| if *on { acc | mask } else { acc })
}

fn residual_flags(r: &Residual) -> u8 {
    flags(&[(r.overflow, 0x04), (r.underflow, 0x02)])
}

fn login_b8(isid: &[u8; 6], tsih: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(isid);
    b[6..].copy_from_slice(&tsih.to_be_bytes());
    b
}

fn imm(op: u8, immediate: bool) -> u8 {
    op | if immediate { 0x40 } else { 0 }
}

impl Pdu {
    /// The raw header, the AHS bytes (SCSI Command only) and the data.
    fn raw(&self) -> (RawBhs, Vec<u8>, Bytes) {
        let mut r = RawBhs::default();
        let mut ahs = Vec::new();
        let data = match self {
            Pdu::NopOut(p) => {
                r.op = imm(opcode::NOP_OUT, p.immediate);
                r.b1 = 0x80;
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[1] = p.cmd_sn;
                r.w[2] = p.exp_stat_sn;
                p.data.clone()
            }
            Pdu::ScsiCommand(p) => {
                r.op = imm(opcode::SCSI_COMMAND, p.immediate);
                r.b1 = flags(&[(p.final_, 0x80), (p.read, 0x40), (p.write, 0x20)]) | (p.attr & 7);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.expected_data_len;
                r.w[1] = p.cmd_sn;
                r.w[2] = p.exp_stat_sn;
                let mut cdb = [0u8; 16];
                let n = p.cdb.len().min(16);
                cdb[..n].copy_from_slice(&p.cdb[..n]);
                for k in 0..4 {
                    r.w[3 + k] = u32::from_be_bytes([cdb[4 * k], cdb[4 * k + 1], cdb[4 * k + 2], cdb[4 * k + 3]]);
                }
                if p.cdb.len() > 16 {
                    let ext = &p.cdb[16..];
                    ahs.extend_from_slice(&((ext.len() + 1) as u16).to_be_bytes());
                    ahs.push(1);
                    ahs.push(0);
                    ahs.extend_from_slice(ext);
                    ahs.resize(pad4(ahs.len()), 0);
                }
                if let Some(len) = p.bidi_read_len {
                    ahs.extend_from_slice(&[0, 5, 2, 0]);
                    ahs.extend_from_slice(&len.to_be_bytes());
                }
                p.data.clone()
            }
            Pdu::TaskMgmtRequest(p) => {
                r.op = imm(opcode::TASK_MGMT_REQUEST, p.immediate);
                r.b1 = 0x80 | (p.function & 0x7f);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.referenced_tag;
                r.w[1] = p.cmd_sn;
                r.w[2] = p.exp_stat_sn;
                r.w[3] = p.ref_cmd_sn;
                r.w[4] = p.exp_data_sn;
                Bytes::new()
            }
            Pdu::LoginRequest(p) => {
                r.op = opcode::LOGIN_REQUEST | 0x40;
                r.b1 = flags(&[(p.transit, 0x80), (p.cont, 0x40)]) | (p.csg & 3) << 2 | (p.nsg & 3);
                r.b2 = p.version_max;
                r.b3 = p.version_min;
                r.b8 = login_b8(&p.isid, p.tsih);
                r.itt = p.itt;
                r.w[0] = join(p.cid, 0);
                r.w[1] = p.cmd_sn;
                r.w[2] = p.exp_stat_sn;
                p.data.clone()
            }
            Pdu::TextRequest(p) => {
                r.op = imm(opcode::TEXT_REQUEST, p.immediate);
                r.b1 = flags(&[(p.final_, 0x80), (p.cont, 0x40)]);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[1] = p.cmd_sn;
                r.w[2] = p.exp_stat_sn;
                p.data.clone()
            }
            Pdu::DataOut(p) => {
                r.op = opcode::DATA_OUT;
                r.b1 = flags(&[(p.final_, 0x80)]);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[2] = p.exp_stat_sn;
                r.w[4] = p.data_sn;
                r.w[5] = p.buffer_offset;
                p.data.clone()
            }
            Pdu::LogoutRequest(p) => {
                r.op = imm(opcode::LOGOUT_REQUEST, p.immediate);
                r.b1 = 0x80 | (p.reason & 0x7f);
                r.itt = p.itt;
                r.w[0] = join(p.cid, 0);
                r.w[1] = p.cmd_sn;
                r.w[2] = p.exp_stat_sn;
                Bytes::new()
            }
            Pdu::Snack(p) => {
                r.op = opcode::SNACK;
                r.b1 = 0x80 | (p.kind & 0x0f);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[2] = p.exp_stat_sn;
                r.w[5] = p.beg_run;
                r.w[6] = p.run_length;
                Bytes::new()
            }
            Pdu::NopIn(p) => {
                r.op = opcode::NOP_IN;
                r.b1 = 0x80;
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                p.data.clone()
            }
            Pdu::ScsiResponse(p) => {
                r.op = opcode::SCSI_RESPONSE;
                r.b1 = 0x80
                    | flags(&[(p.bidi_residual_flags.overflow, 0x10), (p.bidi_residual_flags.underflow, 0x08)])
                    | residual_flags(&p.residual);
                r.b2 = p.response;
                r.b3 = p.status;
                r.itt = p.itt;
                r.w[0] = p.snack_tag;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[4] = p.exp_data_sn;
                r.w[5] = p.bidi_residual_flags.count;
                r.w[6] = p.residual.count;
                p.data.clone()
            }
            Pdu::TaskMgmtResponse(p) => {
                r.op = opcode::TASK_MGMT_RESPONSE;
                r.b1 = 0x80;
                r.b2 = p.response;
                r.itt = p.itt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                Bytes::new()
            }
            Pdu::LoginResponse(p) => {
                r.op = opcode::LOGIN_RESPONSE;
                r.b1 = flags(&[(p.transit, 0x80), (p.cont, 0x40)]) | (p.csg & 3) << 2 | (p.nsg & 3);
                r.b2 = p.version_max;
                r.b3 = p.version_active;
                r.b8 = login_b8(&p.isid, p.tsih);
                r.itt = p.itt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[4] = join((p.status_class as u16) << 8 | p.status_detail as u16, 0);
                p.data.clone()
            }
            Pdu::TextResponse(p) => {
                r.op = opcode::TEXT_RESPONSE;
                r.b1 = flags(&[(p.final_, 0x80), (p.cont, 0x40)]);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                p.data.clone()
            }
            Pdu::DataIn(p) => {
                r.op = opcode::DATA_IN;
                r.b1 = flags(&[(p.final_, 0x80), (p.ack, 0x40), (p.status.is_some(), 0x01)])
                    | residual_flags(&p.residual);
                r.b3 = p.status.unwrap_or(0);
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[4] = p.data_sn;
                r.w[5] = p.buffer_offset;
                r.w[6] = p.residual.count;
                p.data.clone()
            }
            Pdu::LogoutResponse(p) => {
                r.op = opcode::LOGOUT_RESPONSE;
                r.b1 = 0x80;
                r.b2 = p.response;
                r.itt = p.itt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[5] = join(p.time2wait, p.time2retain);
                Bytes::new()
            }
            Pdu::R2t(p) => {
                r.op = opcode::R2T;
                r.b1 = 0x80;
                r.b8 = p.lun.to_be_bytes();
                r.itt = p.itt;
                r.w[0] = p.ttt;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[4] = p.r2t_sn;
                r.w[5] = p.buffer_offset;
                r.w[6] = p.desired_len;
                Bytes::new()
            }
            Pdu::AsyncMessage(p) => {
                r.op = opcode::ASYNC_MESSAGE;
                r.b1 = 0x80;
                r.b8 = p.lun.to_be_bytes();
                r.itt = RESERVED_TAG;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[4] = (p.event as u32) << 24 | (p.vendor_code as u32) << 16 | p.params[0] as u32;
                r.w[5] = join(p.params[1], p.params[2]);
                p.data.clone()
            }
            Pdu::Reject(p) => {
                r.op = opcode::REJECT;
                r.b1 = 0x80;
                r.b2 = p.reason;
                r.itt = RESERVED_TAG;
                r.w[1] = p.stat_sn;
                r.w[2] = p.exp_cmd_sn;
                r.w[3] = p.max_cmd_sn;
                r.w[4] = p.data_sn;
                p.data.clone()
            }
        };
        (r, ahs, data)
    }

    /// Encodes the PDU with the connection's digests.
    pub fn encode(&self, d: Digests) -> EncodedPdu {
        let (mut r, ahs, data) = self.raw();
        r.ahs_words = (ahs.len() / 4) as u8;
        r.data_len = data.len() as u32;
        let mut bhs = [0u8; BHS_LEN];
        r.write(&mut bhs);
        let mut head = BytesMut::with_capacity(BHS_LEN + ahs.len() + 4);
        head.put_slice(&bhs);
        head.put_slice(&ahs);
        if d.header {
            let crc = crc32c(&head);
            head.put_u32_le(crc);
        }
        let mut tail = BytesMut::new();
        if !data.is_empty() {
            tail.put_bytes(0, pad4(data.len()) - data.len());
            if d.data {
                tail.put_u32_le(data_crc(&data));
            }
        }
        EncodedPdu { head: head.freeze(), data, tail: tail.freeze() }
    }
}
