//! READ ELEMENT STATUS data (SMC-3 6.12.2-6.12.8): an 8-byte header, then
//! one element status page per run of elements of one type, each page an
//! 8-byte header and fixed-length element descriptors.
//!
//! The header's NUMBER OF ELEMENTS AVAILABLE and BYTE COUNT OF REPORT
//! AVAILABLE describe the whole report whatever the allocation length, so
//! that an initiator can ask with 8 bytes first and then for the right
//! size (mtx does: it retries with the byte count). The data is cut after
//! the last descriptor that fits whole.

use bytes::{BufMut, Bytes, BytesMut};
use iscsi_target::scsi::Sense;

use crate::layout::{ElementType, Layout};
use crate::library::{Cartridge, ElementMap, MailSlotState};
use crate::media::DriveIdentifier;
use crate::smc_cdb::StatusRequest;
use crate::smc_sense::invalid_element_address_at;

const HEADER_LEN: usize = 8;
/// Element address, flags, sense, source: the part every descriptor has.
const BASE_DESCRIPTOR_LEN: usize = 12;
/// PRIMARY VOLUME TAG INFORMATION: 32-byte tag, 2 reserved, 2-byte volume
/// sequence number.
const VOLUME_TAG_LEN: usize = 36;
const VOLUME_TAG_ID_LEN: usize = 32;
/// CODE SET, IDENTIFIER TYPE, reserved, IDENTIFIER LENGTH.
const IDENTIFIER_HEADER_LEN: usize = 4;
/// DVCID identifier: T10 vendor ID designator, vendor (8) + product (16)
/// + serial number, in ASCII (SPC-4 designator type 1, code set 2).
const CODE_SET_ASCII: u8 = 2;
const DESIGNATOR_T10_VENDOR_ID: u8 = 1;
const MAX_SERIAL_LEN: usize = 32;

// Element descriptor byte 2.
const FULL: u8 = 0x01;
const IMPEXP: u8 = 0x02;
const ACCESS: u8 = 0x08;
const EXENAB: u8 = 0x10;
const INENAB: u8 = 0x20;
// Byte 9.
const SVALID: u8 = 0x80;
const MEDIUM_TYPE_DATA: u8 = 0x01;
// Element status page byte 1.
const PVOLTAG: u8 = 0x80;

/// Builds the READ ELEMENT STATUS parameter data for `req`. `drives` are
/// the drives' identifiers in data transfer element order.
pub fn element_status(
    layout: &Layout,
    map: &ElementMap,
    drives: &[DriveIdentifier],
    req: &StatusRequest,
) -> Result<Bytes, Sense> {
    let mut elements = layout.elements_from(req.start, req.element_type).peekable();
    if elements.peek().is_none() {
        return Err(invalid_element_address_at(2));
    }
    let elements: Vec<(u16, ElementType)> = elements.take(usize::from(req.count)).collect();
    let identifiers = req.dvcid.then(|| drive_identifiers(drives));
    let mut pages = BytesMut::new();
    // Offsets (from the start of the data) where a descriptor ends: the
    // places the data may be cut.
    let mut ends = Vec::with_capacity(elements.len());
    for run in elements.chunk_by(|a, b| a.1 == b.1) {
        let ty = run[0].1;
        let ids = identifiers.as_ref().filter(|_| ty == ElementType::DataTransfer);
        let id_len = ids.map_or(0, |(len, _)| *len);
        let descriptor_len =
            BASE_DESCRIPTOR_LEN + if req.voltag { VOLUME_TAG_LEN } else { 0 } + IDENTIFIER_HEADER_LEN + id_len;
        pages.put_u8(ty.code());
        pages.put_u8(if req.voltag { PVOLTAG } else { 0 });
        pages.put_u16(descriptor_len as u16);
        pages.put_u8(0);
        pages.put_uint((descriptor_len * run.len()) as u64, 3);
        for &(address, _) in run {
            let identifier =
                ids.and_then(|(_, all)| layout.drive_index(address).and_then(|i| all.get(i))).map(Vec::as_slice);
            put_descriptor(&mut pages, address, ty, map.get(address), req.voltag, identifier, id_len);
            ends.push(HEADER_LEN + pages.len());
        }
    }
    let mut b = BytesMut::with_capacity(HEADER_LEN + pages.len());
    b.put_u16(elements.first().map_or(0, |e| e.0));
    b.put_u16(elements.len() as u16);
    b.put_u8(0);
    b.put_uint(pages.len() as u64, 3);
    b.put_slice(&pages);
    let alloc = req.alloc as usize;
    let cut = if alloc < HEADER_LEN {
        alloc
    } else {
        ends.iter().copied().take_while(|&end| end <= alloc).last().unwrap_or(HEADER_LEN)
    };
    b.truncate(cut);
    Ok(b.freeze())
}

/// Every drive's DVCID identifier, space-padded to one length (a page's
/// descriptors all have the same length), and that length.
fn drive_identifiers(drives: &[DriveIdentifier]) -> (usize, Vec<Vec<u8>>) {
    let serial_len = drives.iter().map(|d| ascii(&d.serial).len().min(MAX_SERIAL_LEN)).max().unwrap_or(0);
    let ids = drives
        .iter()
        .map(|d| {
            let mut id = Vec::with_capacity(24 + serial_len);
            put_padded(&mut id, &d.vendor, 8);
            put_padded(&mut id, &d.product, 16);
            put_padded(&mut id, &d.serial, serial_len);
            id
        })
        .collect();
    (24 + serial_len, ids)
}

fn ascii(s: &str) -> Vec<u8> {
    s.bytes().filter(|c| c.is_ascii_graphic() || *c == b' ').collect()
}

/// ASCII, space padded or truncated to `len`.
fn put_padded(out: &mut Vec<u8>, s: &str, len: usize) {
    let mut bytes = ascii(s);
    bytes.resize(len, b' ');
    out.extend_from_slice(&bytes);
}

fn flags(ty: ElementType, tape: Option<&Cartridge>) -> u8 {
    let full = if tape.is_some() { FULL } else { 0 };
    match ty {
        // The transport never holds a tape; ACCESS is reserved for it.
        ElementType::MediumTransport => 0,
        ElementType::Storage | ElementType::DataTransfer => ACCESS | full,
        ElementType::ImportExport => {
            let mail = tape.and_then(|t| t.mail);
            // An exported tape is the operator's (the gateway's) now.
            let access = if mail == Some(MailSlotState::Exported) { 0 } else { ACCESS };
            let impexp = if mail == Some(MailSlotState::Imported) { IMPEXP } else { 0 };
            INENAB | EXENAB | access | impexp | full
        }
    }
}

fn put_descriptor(
    b: &mut BytesMut,
    address: u16,
    ty: ElementType,
    tape: Option<&Cartridge>,
    voltag: bool,
    identifier: Option<&[u8]>,
    id_len: usize,
) {
    b.put_u16(address);
    b.put_u8(flags(ty, tape));
    b.put_u8(0);
    // ASC/ASCQ: no element is ever in an exception state.
    b.put_slice(&[0, 0]);
    // Bytes 6-8: the drive's SCSI bus address fields, which mean nothing
    // over iSCSI: not valid.
    b.put_slice(&[0, 0, 0]);
    let source = tape.and_then(|t| t.source);
    let medium = if tape.is_some() { MEDIUM_TYPE_DATA } else { 0 };
    b.put_u8(if source.is_some() { SVALID } else { 0 } | medium);
    b.put_u16(source.unwrap_or(0));
    if voltag {
        // An empty element has an all-zero tag; a barcode is space padded.
        match tape {
            Some(t) => {
                let mut tag = Vec::with_capacity(VOLUME_TAG_ID_LEN);
                put_padded(&mut tag, &t.barcode, VOLUME_TAG_ID_LEN);
                b.put_slice(&tag);
            }
            None => b.put_bytes(0, VOLUME_TAG_ID_LEN),
        }
        // Reserved, then volume sequence number 0.
        b.put_bytes(0, 4);
    }
    match identifier {
        Some(id) => {
            b.put_slice(&[CODE_SET_ASCII, DESIGNATOR_T10_VENDOR_ID, 0, id_len as u8]);
            b.put_slice(id);
        }
        // A data transfer element whose drive is missing from the list
        // (never, by construction) still fills its fixed length.
        None => {
            b.put_bytes(0, IDENTIFIER_HEADER_LEN);
            b.put_bytes(b' ', id_len);
        }
    }
}
