//! LOG SENSE pages: supported pages, write and read error counters,
//! sequential-access device, data compression, TapeAlert and IBM's tape
//! capacity page. Counters describe the tape in the drive and restart at
//! every load, as on LTO drives.

use bytes::{BufMut, Bytes, BytesMut};
use iscsi_target::scsi::Sense;

const SUPPORTED_PAGES: [u8; 7] = [0x00, 0x02, 0x03, 0x0C, 0x1B, 0x2E, 0x31];
const MIB: u64 = 1 << 20;

/// Control byte of a counter parameter: DS and TSD set (the drive keeps and
/// saves it itself), bounded data counter format.
const COUNTER: u8 = 0x60;
/// Control byte of a TapeAlert flag or a plain value.
const VALUE: u8 = 0x00;

/// Per-tape activity counters.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub write_errors: u64,
    pub read_errors: u64,
}

/// TapeAlert flags (SSC-3 Annex A) the drive raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum TapeAlert {
    HardError = 0x03,
    ReadFailure = 0x05,
    WriteFailure = 0x06,
    WriteProtect = 0x09,
    NoRemoval = 0x0A,
    WormOverwriteAttempted = 0x3C,
}

/// The 64 TapeAlert flags; reading the page clears them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TapeAlerts(u64);

impl TapeAlerts {
    pub fn raise(&mut self, flag: TapeAlert) {
        self.0 |= 1 << (flag as u8 - 1);
    }

    fn take(&mut self) -> u64 {
        std::mem::take(&mut self.0)
    }
}

/// The loaded tape's space, in bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Space {
    pub capacity: u64,
    pub early_warning: u64,
    pub used: u64,
    pub position: u64,
}

/// What the log pages report.
pub(super) struct LogSource<'a> {
    pub counters: &'a Counters,
    pub alerts: &'a mut TapeAlerts,
    pub space: Option<Space>,
    pub compression: bool,
}

/// One parameter: code, control byte, value bytes.
struct Param {
    code: u16,
    control: u8,
    value: Vec<u8>,
}

fn counter(code: u16, v: u64) -> Param {
    Param { code, control: COUNTER, value: v.to_be_bytes().to_vec() }
}

fn value32(code: u16, v: u64) -> Param {
    Param { code, control: VALUE, value: (v.min(u32::MAX as u64) as u32).to_be_bytes().to_vec() }
}

/// LOG SENSE data for `page` from parameter `pointer` on.
pub(super) fn log_page(page: u8, subpage: u8, pointer: u16, src: LogSource<'_>) -> Result<Bytes, Sense> {
    if subpage != 0 {
        return Err(Sense::invalid_cdb_field(3, None));
    }
    let params = match page {
        0x00 => return Ok(page_bytes(0x00, &SUPPORTED_PAGES)),
        0x02 => error_counters(src.counters.bytes_written, src.counters.write_errors),
        0x03 => error_counters(src.counters.bytes_read, src.counters.read_errors),
        0x0C => sequential_access(&src),
        0x1B => data_compression(&src),
        0x2E => {
            let flags = src.alerts.take();
            (1..=64u16).map(|f| Param { code: f, control: VALUE, value: vec![(flags >> (f - 1) & 1) as u8] }).collect()
        }
        0x31 => tape_capacity(src.space),
        _ => return Err(Sense::invalid_cdb_field(2, Some(5))),
    };
    if params.last().is_some_and(|p| pointer > p.code) {
        return Err(Sense::invalid_cdb_field(5, None));
    }
    let mut body = Vec::new();
    for p in params.iter().filter(|p| p.code >= pointer) {
        body.extend_from_slice(&p.code.to_be_bytes());
        body.push(p.control);
        body.push(p.value.len() as u8);
        body.extend_from_slice(&p.value);
    }
    Ok(page_bytes(page, &body))
}

fn page_bytes(page: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + body.len());
    b.put_u8(page);
    b.put_u8(0);
    b.put_u16(body.len() as u16);
    b.put_slice(body);
    b.freeze()
}

/// Write (02h) and read (03h) error counter pages: nothing is ever
/// corrected on a virtual tape; bytes processed and the store's failures.
fn error_counters(bytes: u64, uncorrected: u64) -> Vec<Param> {
    let mut v: Vec<Param> = (0..=4).map(|c| counter(c, 0)).collect();
    v.push(counter(5, bytes));
    v.push(counter(6, uncorrected));
    v
}

/// Sequential-access device page (0Ch): bytes in and out (no compression
/// at the drive: the gateway compresses below it), capacities in MiB, and
/// cleaning never required.
fn sequential_access(src: &LogSource<'_>) -> Vec<Param> {
    let c = src.counters;
    let s = src.space.unwrap_or(Space { capacity: 0, early_warning: 0, used: 0, position: 0 });
    vec![
        counter(0x0000, c.bytes_written),
        counter(0x0001, c.bytes_written),
        counter(0x0002, c.bytes_read),
        counter(0x0003, c.bytes_read),
        counter(0x0004, s.used / MIB),
        counter(0x0005, s.early_warning / MIB),
        counter(0x0006, s.capacity.saturating_sub(s.early_warning) / MIB),
        counter(0x0007, s.position / MIB),
        counter(0x0100, 0),
    ]
}

/// Data compression page (1Bh, SSC-4): ratios ×100 and the byte counts as
/// MiB plus a remainder, with the compression-enabled flag.
fn data_compression(src: &LogSource<'_>) -> Vec<Param> {
    let c = src.counters;
    let ratio = |code| Param { code, control: VALUE, value: 100u16.to_be_bytes().to_vec() };
    vec![
        ratio(0x0000),
        ratio(0x0001),
        value32(0x0002, c.bytes_read / MIB),
        value32(0x0003, c.bytes_read % MIB),
        value32(0x0004, c.bytes_read / MIB),
        value32(0x0005, c.bytes_read % MIB),
        value32(0x0006, c.bytes_written / MIB),
        value32(0x0007, c.bytes_written % MIB),
        value32(0x0008, c.bytes_written / MIB),
        value32(0x0009, c.bytes_written % MIB),
        Param { code: 0x0100, control: VALUE, value: vec![src.compression as u8] },
    ]
}

/// IBM tape capacity page (31h): remaining and maximum MiB of the one
/// partition; the alternate partition's are zero.
fn tape_capacity(space: Option<Space>) -> Vec<Param> {
    let (remaining, maximum) = space.map_or((0, 0), |s| (s.capacity.saturating_sub(s.used) / MIB, s.capacity / MIB));
    vec![value32(1, remaining), value32(2, 0), value32(3, maximum), value32(4, 0)]
}
