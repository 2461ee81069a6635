//! The changer's mode pages (SMC-3 7.3: element address assignment,
//! transport geometry, device capabilities) and log pages (supported
//! pages, TapeAlert).
//!
//! None of the mode pages has a changeable field: the layout is fixed by
//! configuration, so MODE SELECT may restate them but change nothing.

use bytes::{BufMut, Bytes, BytesMut};
use iscsi_target::scsi::spc::ModePage;
use iscsi_target::scsi::Sense;

use crate::layout::{ElementType, Layout};

/// Bits of the device capabilities page that name element types, as both
/// "may store media" flags and move/exchange destinations.
const DT: u8 = 0x08;
const IE: u8 = 0x04;
const ST: u8 = 0x02;

/// A page whose only changeable bytes are its code and length.
fn fixed_page(current: Vec<u8>) -> ModePage {
    let mut mask = vec![0u8; current.len()];
    mask[..2].copy_from_slice(&current[..2]);
    ModePage::new(current, mask)
}

/// Element address assignment page (1Dh): first address and count of each
/// element type, the page mtx and the Linux `ch` driver learn the layout
/// from.
fn element_address_assignment(layout: &Layout) -> ModePage {
    let mut p = vec![0x1D, 0x12];
    for ty in [ElementType::MediumTransport, ElementType::Storage, ElementType::ImportExport, ElementType::DataTransfer]
    {
        let r = layout.range(ty);
        p.extend_from_slice(&r.first.to_be_bytes());
        p.extend_from_slice(&r.count.to_be_bytes());
    }
    p.extend_from_slice(&[0, 0]);
    fixed_page(p)
}

/// Transport geometry parameters page (1Eh): one transport that cannot
/// rotate media, member 0 of its set.
fn transport_geometry() -> ModePage {
    fixed_page(vec![0x1E, 0x02, 0x00, 0x00])
}

/// Device capabilities page (1Fh): storage, import/export and data
/// transfer elements hold media; MOVE MEDIUM between any two of them;
/// EXCHANGE MEDIUM between storage and import/export elements only. The
/// medium transport never holds a tape, so it is neither a source nor a
/// destination.
fn device_capabilities() -> ModePage {
    let mut p = vec![0u8; 20];
    p[0] = 0x1F;
    p[1] = 0x12;
    p[2] = DT | IE | ST;
    // Bytes 4-7: MOVE MEDIUM from MT, ST, I/E, DT to ...
    p[5] = DT | IE | ST;
    p[6] = DT | IE | ST;
    p[7] = DT | IE | ST;
    // Bytes 12-15: EXCHANGE MEDIUM from MT, ST, I/E, DT with ...
    p[13] = IE | ST;
    p[14] = IE | ST;
    fixed_page(p)
}

/// The mode pages the changer hands to its SPC core.
pub fn changer_mode_pages(layout: &Layout) -> Vec<ModePage> {
    vec![element_address_assignment(layout), transport_geometry(), device_capabilities()]
}

/// Log pages the changer has.
const SUPPORTED_PAGES: u8 = 0x00;
const TAPE_ALERT: u8 = 0x2E;
/// TapeAlert flags 0001h-0040h.
const TAPE_ALERT_FLAGS: u16 = 0x40;
/// Parameter control of a TapeAlert flag: DU and DS set, as libraries
/// report them (the flags are neither accumulated nor saved).
const TAPE_ALERT_CONTROL: u8 = 0xC0;

/// LOG SENSE data for `page` from parameter `pointer` on. A virtual
/// library raises no TapeAlert: every flag is zero.
pub fn log_page(page: u8, subpage: u8, pointer: u16) -> Result<Bytes, Sense> {
    if subpage != 0 {
        return Err(Sense::invalid_cdb_field(3, None));
    }
    let mut params = BytesMut::new();
    match page {
        SUPPORTED_PAGES => {
            if pointer != 0 {
                return Err(Sense::invalid_cdb_field(5, None));
            }
            params.put_slice(&[SUPPORTED_PAGES, TAPE_ALERT]);
        }
        TAPE_ALERT => {
            if pointer > TAPE_ALERT_FLAGS {
                return Err(Sense::invalid_cdb_field(5, None));
            }
            for flag in pointer.max(1)..=TAPE_ALERT_FLAGS {
                params.put_u16(flag);
                params.put_slice(&[TAPE_ALERT_CONTROL, 1, 0]);
            }
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(5))),
    }
    let mut b = BytesMut::with_capacity(4 + params.len());
    b.put_u8(page);
    b.put_u8(0);
    b.put_u16(params.len() as u16);
    b.put_slice(&params);
    Ok(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ElementCounts;
    use crate::personality::Personality;

    #[test]
    fn element_address_assignment_bytes() {
        let layout =
            Layout::new(Personality::StkL700, ElementCounts { drives: 4, storage: 678, import_export: 20 }).unwrap();
        let pages = changer_mode_pages(&layout);
        assert_eq!(
            pages[0].current,
            vec![0x1D, 0x12, 0, 1, 0, 1, 0x03, 0xE8, 0x02, 0xA6, 0, 10, 0, 20, 0x01, 0xF4, 0, 4, 0, 0]
        );
        assert_eq!(pages[0].changeable, [&[0x1D, 0x12][..], &[0; 18]].concat());
        assert_eq!(pages[1].current, vec![0x1E, 0x02, 0, 0]);
        let caps = &pages[2].current;
        assert_eq!(caps.len(), 20);
        assert_eq!(&caps[..8], &[0x1F, 0x12, 0x0E, 0, 0, 0x0E, 0x0E, 0x0E]);
        assert_eq!(&caps[12..16], &[0, 0x06, 0x06, 0]);
    }

    #[test]
    fn log_pages() {
        assert_eq!(&log_page(0x00, 0, 0).unwrap()[..], &[0x00, 0, 0, 2, 0x00, 0x2E]);
        let ta = log_page(0x2E, 0, 0).unwrap();
        assert_eq!(ta.len(), 4 + 64 * 5);
        assert_eq!(&ta[..4], &[0x2E, 0, 0x01, 0x40]);
        assert_eq!(&ta[4..9], &[0, 1, 0xC0, 1, 0]);
        assert_eq!(&ta[ta.len() - 5..], &[0, 0x40, 0xC0, 1, 0]);
        let from_last = log_page(0x2E, 0, 0x40).unwrap();
        assert_eq!(&from_last[..], &[0x2E, 0, 0, 5, 0, 0x40, 0xC0, 1, 0]);
        assert_eq!(log_page(0x2E, 0, 0x41), Err(Sense::invalid_cdb_field(5, None)));
        assert_eq!(log_page(0x0D, 0, 0), Err(Sense::invalid_cdb_field(2, Some(5))));
        assert_eq!(log_page(0x2E, 1, 0), Err(Sense::invalid_cdb_field(3, None)));
    }
}
