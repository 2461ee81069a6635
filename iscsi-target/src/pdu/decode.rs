//! Bytes to typed PDUs.

use bytes::Bytes;
use nom::number::complete::{be_u16, be_u32, be_u8};

use super::bhs::{pad4, Bhs, BHS_LEN};
use super::digest::{crc32c, Digests};
use super::raw::{halves, RawBhs};
use super::types::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("PDU truncated")]
    Truncated,
    #[error("header digest mismatch")]
    HeaderDigest,
    #[error("data digest mismatch")]
    DataDigest,
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

/// AHS types (RFC 7143 §11.2.2.1).
const AHS_EXTENDED_CDB: u8 = 1;
const AHS_BIDI_READ_LEN: u8 = 2;

/// The additional header segments a SCSI Command may carry.
#[derive(Default)]
struct Ahs {
    extended_cdb: Option<Bytes>,
    bidi_read_len: Option<u32>,
}

fn parse_ahs(mut i: &[u8]) -> Result<Ahs, DecodeError> {
    let mut ahs = Ahs::default();
    while !i.is_empty() {
        let (rest, (len, kind)) = (|i| -> nom::IResult<&[u8], (u16, u8)> {
            let (i, len) = be_u16(i)?;
            let (i, kind) = be_u8(i)?;
            let (i, _) = be_u8(i)?;
            Ok((i, (len, kind)))
        })(i)
        .map_err(|_: nom::Err<nom::error::Error<&[u8]>>| DecodeError::Truncated)?;
        // AHSLength counts the AHS-specific field, whose first byte is the
        // reserved byte read above; each AHS is padded to 4 bytes.
        let len = len as usize;
        let skip = pad4(3 + len).saturating_sub(4);
        if len == 0 || rest.len() < skip {
            return Err(DecodeError::InvalidField("AHS length"));
        }
        let body = &rest[..len - 1];
        match kind {
            AHS_EXTENDED_CDB => ahs.extended_cdb = Some(Bytes::copy_from_slice(body)),
            AHS_BIDI_READ_LEN => {
                let (_, v) = be_u32::<_, nom::error::Error<&[u8]>>(body)
                    .map_err(|_| DecodeError::InvalidField("bidirectional read length AHS"))?;
                ahs.bidi_read_len = Some(v);
            }
            _ => return Err(DecodeError::InvalidField("AHS type")),
        }
        i = &rest[skip..];
    }
    Ok(ahs)
}

impl Pdu {
    /// Decodes one PDU from its header part (BHS, AHS and header digest) and
    /// its data part (data segment, padding and data digest) as framed by
    /// [`Bhs`]. Digests are verified here.
    pub fn decode(header: &[u8], data_wire: Bytes, d: Digests) -> Result<Pdu, DecodeError> {
        let bhs = Bhs::parse(header)?;
        let hdr_end = BHS_LEN + bhs.ahs_len;
        if header.len() != BHS_LEN + bhs.header_rest_len(d) || data_wire.len() != bhs.data_wire_len(d) {
            return Err(DecodeError::Truncated);
        }
        if d.header {
            let want = u32::from_le_bytes([header[hdr_end], header[hdr_end + 1], header[hdr_end + 2], header[hdr_end + 3]]);
            if crc32c(&header[..hdr_end]) != want {
                return Err(DecodeError::HeaderDigest);
            }
        }
        let data = if bhs.data_len == 0 {
            Bytes::new()
        } else {
            if d.data {
                let p = pad4(bhs.data_len);
                let want = u32::from_le_bytes([data_wire[p], data_wire[p + 1], data_wire[p + 2], data_wire[p + 3]]);
                // The digest covers the padding as received.
                if crc32c(&data_wire[..p]) != want {
                    return Err(DecodeError::DataDigest);
                }
            }
            data_wire.slice(..bhs.data_len)
        };
        Pdu::from_parts(&header[..hdr_end], data)
    }

    /// Decodes a whole PDU from the front of `buf`, returning it and the
    /// bytes it took. Used by tests and fuzzing; the connection reads in two
    /// steps instead.
    pub fn decode_frame(buf: &[u8], d: Digests) -> Result<(Pdu, usize), DecodeError> {
        let bhs = Bhs::parse(buf)?;
        let hlen = BHS_LEN + bhs.header_rest_len(d);
        let total = hlen + bhs.data_wire_len(d);
        if buf.len() < total {
            return Err(DecodeError::Truncated);
        }
        let pdu = Pdu::decode(&buf[..hlen], Bytes::copy_from_slice(&buf[hlen..total]), d)?;
        Ok((pdu, total))
    }

    /// Builds a typed PDU from BHS+AHS (no digest) and the data segment.
    fn from_parts(header: &[u8], data: Bytes) -> Result<Pdu, DecodeError> {
        let (ahs_bytes, r) = RawBhs::parse(header).map_err(|_| DecodeError::Truncated)?;
        let immediate = r.op & 0x40 != 0;
        let lun = r.lun();
        let w = r.w;
        let op = r.op & 0x3f;
        if op != opcode::SCSI_COMMAND && !ahs_bytes.is_empty() {
            return Err(DecodeError::InvalidField("AHS on a PDU that takes none"));
        }
        let pdu = match op {
            opcode::NOP_OUT => Pdu::NopOut(NopOut {
                immediate,
                lun,
                itt: r.itt,
                ttt: w[0],
                cmd_sn: w[1],
                exp_stat_sn: w[2],
                data,
            }),
            opcode::SCSI_COMMAND => {
                let ahs = parse_ahs(ahs_bytes)?;
                let mut cdb = header[32..48].to_vec();
                if let Some(ext) = ahs.extended_cdb {
                    cdb.extend_from_slice(&ext);
                }
                Pdu::ScsiCommand(ScsiCommand {
                    immediate,
                    final_: r.flag(0x80),
                    read: r.flag(0x40),
                    write: r.flag(0x20),
                    attr: r.b1 & 0x07,
                    lun,
                    itt: r.itt,
                    expected_data_len: w[0],
                    cmd_sn: w[1],
                    exp_stat_sn: w[2],
                    cdb: Bytes::from(cdb),
                    bidi_read_len: ahs.bidi_read_len,
                    data,
                })
            }
            opcode::TASK_MGMT_REQUEST => Pdu::TaskMgmtRequest(TaskMgmtRequest {
                immediate,
                function: r.b1 & 0x7f,
                lun,
                itt: r.itt,
                referenced_tag: w[0],
                cmd_sn: w[1],
                exp_stat_sn: w[2],
                ref_cmd_sn: w[3],
                exp_data_sn: w[4],
            }),
            opcode::LOGIN_REQUEST => {
                let (isid, tsih) = isid_tsih(&r.b8);
                Pdu::LoginRequest(LoginRequest {
                    transit: r.flag(0x80),
                    cont: r.flag(0x40),
                    csg: (r.b1 >> 2) & 3,
                    nsg: r.b1 & 3,
                    version_max: r.b2,
                    version_min: r.b3,
                    isid,
                    tsih,
                    itt: r.itt,
                    cid: halves(w[0]).0,
                    cmd_sn: w[1],
                    exp_stat_sn: w[2],
                    data,
                })
            }
            opcode::TEXT_REQUEST => Pdu::TextRequest(TextRequest {
                immediate,
                final_: r.flag(0x80),
                cont: r.flag(0x40),
                lun,
                itt: r.itt,
                ttt: w[0],
                cmd_sn: w[1],
                exp_stat_sn: w[2],
                data,
            }),
            opcode::DATA_OUT => Pdu::DataOut(DataOut {
                final_: r.flag(0x80),
                lun,
                itt: r.itt,
                ttt: w[0],
                exp_stat_sn: w[2],
                data_sn: w[4],
                buffer_offset: w[5],
                data,
            }),
            opcode::LOGOUT_REQUEST => Pdu::LogoutRequest(LogoutRequest {
                immediate,
                reason: r.b1 & 0x7f,
                itt: r.itt,
                cid: halves(w[0]).0,
                cmd_sn: w[1],
                exp_stat_sn: w[2],
            }),
            opcode::SNACK => Pdu::Snack(Snack {
                kind: r.b1 & 0x0f,
                lun,
                itt: r.itt,
                ttt: w[0],
                exp_stat_sn: w[2],
                beg_run: w[5],
                run_length: w[6],
            }),
            opcode::NOP_IN => Pdu::NopIn(NopIn {
                lun,
                itt: r.itt,
                ttt: w[0],
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                data,
            }),
            opcode::SCSI_RESPONSE => Pdu::ScsiResponse(ScsiResponse {
                bidi_residual_flags: Residual { overflow: r.flag(0x10), underflow: r.flag(0x08), count: w[5] },
                residual: Residual { overflow: r.flag(0x04), underflow: r.flag(0x02), count: w[6] },
                response: r.b2,
                status: r.b3,
                itt: r.itt,
                snack_tag: w[0],
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                exp_data_sn: w[4],
                data,
            }),
            opcode::TASK_MGMT_RESPONSE => Pdu::TaskMgmtResponse(TaskMgmtResponse {
                response: r.b2,
                itt: r.itt,
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
            }),
            opcode::LOGIN_RESPONSE => {
                let (isid, tsih) = isid_tsih(&r.b8);
                let (class_detail, _) = halves(w[4]);
                Pdu::LoginResponse(LoginResponse {
                    transit: r.flag(0x80),
                    cont: r.flag(0x40),
                    csg: (r.b1 >> 2) & 3,
                    nsg: r.b1 & 3,
                    version_max: r.b2,
                    version_active: r.b3,
                    isid,
                    tsih,
                    itt: r.itt,
                    stat_sn: w[1],
                    exp_cmd_sn: w[2],
                    max_cmd_sn: w[3],
                    status_class: (class_detail >> 8) as u8,
                    status_detail: class_detail as u8,
                    data,
                })
            }
            opcode::TEXT_RESPONSE => Pdu::TextResponse(TextResponse {
                final_: r.flag(0x80),
                cont: r.flag(0x40),
                lun,
                itt: r.itt,
                ttt: w[0],
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                data,
            }),
            opcode::DATA_IN => Pdu::DataIn(DataIn {
                final_: r.flag(0x80),
                ack: r.flag(0x40),
                residual: Residual { overflow: r.flag(0x04), underflow: r.flag(0x02), count: w[6] },
                status: if r.flag(0x01) { Some(r.b3) } else { None },
                lun,
                itt: r.itt,
                ttt: w[0],
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                data_sn: w[4],
                buffer_offset: w[5],
                data,
            }),
            opcode::LOGOUT_RESPONSE => Pdu::LogoutResponse(LogoutResponse {
                response: r.b2,
                itt: r.itt,
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                time2wait: halves(w[5]).0,
                time2retain: halves(w[5]).1,
            }),
            opcode::R2T => Pdu::R2t(R2t {
                lun,
                itt: r.itt,
                ttt: w[0],
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                r2t_sn: w[4],
                buffer_offset: w[5],
                desired_len: w[6],
            }),
            opcode::ASYNC_MESSAGE => Pdu::AsyncMessage(AsyncMessage {
                lun,
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                event: (w[4] >> 24) as u8,
                vendor_code: (w[4] >> 16) as u8,
                params: [halves(w[4]).1, halves(w[5]).0, halves(w[5]).1],
                data,
            }),
            opcode::REJECT => Pdu::Reject(Reject {
                reason: r.b2,
                stat_sn: w[1],
                exp_cmd_sn: w[2],
                max_cmd_sn: w[3],
                data_sn: w[4],
                data,
            }),
            other => return Err(DecodeError::UnknownOpcode(other)),
        };
        Ok(pdu)
    }
}

fn isid_tsih(b8: &[u8; 8]) -> ([u8; 6], u16) {
    let mut isid = [0u8; 6];
    isid.copy_from_slice(&b8[..6]);
    (isid, u16::from_be_bytes([b8[6], b8[7]]))
}
