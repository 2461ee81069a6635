//! Fixed-layout data the drive returns: its mode pages, VPD additions,
//! READ BLOCK LIMITS, REPORT DENSITY SUPPORT and READ POSITION, laid out as
//! SSC-3 and IBM's LTO SCSI reference describe them for an LTO-5 drive.

use bytes::{BufMut, Bytes, BytesMut};
use iscsi_target::scsi::spc::{DeviceIdentity, ModePage};

/// LTO-5 density code, the only density our virtual media have.
pub(super) const LTO5_DENSITY: u8 = 0x58;
/// MODE SELECT density codes meaning "keep the current density".
pub(super) const DENSITY_DEFAULT: u8 = 0x00;
pub(super) const DENSITY_NO_CHANGE: u8 = 0x7F;
/// The largest block: the 24-bit transfer length of READ(6)/WRITE(6).
pub(super) const MAX_BLOCK_LEN: u32 = 0xFF_FFFF;

/// The identity of an IBM ULT3580-TD5 (LTO-5) with this serial number and
/// NAA extension.
pub fn lto5_identity(serial: impl Into<String>, naa_id: u64) -> DeviceIdentity {
    DeviceIdentity {
        vendor: "IBM".into(),
        product: "ULT3580-TD5".into(),
        revision: "D2AD".into(),
        serial: serial.into(),
        naa_id,
        write_protected: false,
        removable: true,
    }
}

/// DCE (byte 2 of the data compression page): compression enabled.
pub(super) const DCE: u8 = 0x80;

/// The drive's mode pages; the SCSI core adds the control page (0Ah).
pub(super) fn mode_pages() -> Vec<ModePage> {
    // 01h read-write error recovery: nothing to recover on a virtual tape.
    let rw_recovery =
        ModePage::new(vec![0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // 0Fh data compression: DCE changeable (on by default), DCC, DDE;
    // algorithm 01h for compression and decompression as IBM LTO reports.
    let mut compression = vec![0u8; 16];
    compression[..4].copy_from_slice(&[0x0F, 0x0E, DCE | 0x40, 0x80]);
    compression[7] = 0x01;
    compression[11] = 0x01;
    let mut compression_mask = vec![0u8; 16];
    compression_mask[..3].copy_from_slice(&[0x0F, 0x0E, DCE]);
    // 10h device configuration: LOIS (logical object identifiers
    // supported), EEG and SEW (early warning reported, buffered data written
    // at early warning), select data compression algorithm 01h.
    let mut config = vec![0u8; 16];
    config[..2].copy_from_slice(&[0x10, 0x0E]);
    config[8] = 0x40;
    config[10] = 0x18;
    config[14] = 0x01;
    let mut config_mask = vec![0u8; 16];
    config_mask[..2].copy_from_slice(&[0x10, 0x0E]);
    // 11h medium partition: one partition, none can be added; format and
    // partition recognition; the single partition's size is not reported.
    let partition = vec![0x11, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00];
    let partition_mask = vec![0x11, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    // 1Ch informational exceptions: DEXCPT set (TapeAlert is read from its
    // log page), MRIE 3 as IBM ships it; DEXCPT changeable.
    let iec = vec![0x1C, 0x0A, 0x08, 0x03, 0, 0, 0, 0, 0, 0, 0, 0];
    let iec_mask = vec![0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    vec![
        rw_recovery,
        ModePage::new(compression, compression_mask),
        ModePage::new(config, config_mask),
        ModePage::new(partition, partition_mask),
        ModePage::new(iec, iec_mask),
    ]
}

/// VPD B0h (sequential-access device capabilities) body: WORM supported.
pub(super) fn device_capabilities() -> BytesMut {
    BytesMut::from(&[0x01, 0x00][..])
}

/// The T10 vendor identification designator LTO drives put first in VPD
/// 83h: vendor, product and serial number, ASCII.
pub(super) fn t10_vendor_designator(identity: &DeviceIdentity) -> Vec<u8> {
    let mut id = Vec::new();
    id.extend(padded(&identity.vendor, 8));
    id.extend(padded(&identity.product, 16));
    id.extend(identity.serial.bytes().filter(u8::is_ascii_graphic).take(255 - 24));
    let mut d = vec![0x02, 0x01, 0x00, id.len() as u8];
    d.extend(id);
    d
}

fn padded(s: &str, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().filter(|c| c.is_ascii_graphic() || *c == b' ').take(len).collect();
    v.resize(len, b' ');
    v
}

/// Puts `designator` first in a VPD 83h page (header included).
pub(super) fn with_designator_first(page: &[u8], designator: &[u8]) -> Bytes {
    let Some((header, body)) = page.split_first_chunk::<4>() else { return Bytes::copy_from_slice(page) };
    let len = (body.len() + designator.len()).min(u16::MAX as usize) as u16;
    let mut b = BytesMut::with_capacity(page.len() + designator.len());
    b.put_slice(&header[..2]);
    b.put_u16(len);
    b.put_slice(designator);
    b.put_slice(body);
    b.freeze()
}

/// READ BLOCK LIMITS: granularity 0, 1 byte to 16 MiB - 1; with MLOI the
/// largest logical object identifier instead.
pub(super) fn block_limits(mloi: bool, max_object: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(20);
    if mloi {
        b.put_bytes(0, 12);
        b.put_u64(max_object);
    } else {
        b.put_u8(0);
        b.put_uint(MAX_BLOCK_LEN as u64, 3);
        b.put_u16(1);
    }
    b.freeze()
}

/// One REPORT DENSITY SUPPORT descriptor.
struct Density {
    code: u8,
    writable: bool,
    default: bool,
    bits_per_mm: u32,
    tracks: u16,
    /// Native capacity in units of 10^6 bytes.
    capacity_mb: u32,
    name: &'static str,
    description: &'static str,
}

/// What an LTO-5 drive reads and writes: LTO-5 (default) and LTO-4, and
/// reads LTO-3.
const DENSITIES: [Density; 3] = [
    Density {
        code: 0x58,
        writable: true,
        default: true,
        bits_per_mm: 15142,
        tracks: 1280,
        capacity_mb: 1_500_000,
        name: "U-516",
        description: "Ultrium 5/16T",
    },
    Density {
        code: 0x46,
        writable: true,
        default: false,
        bits_per_mm: 13250,
        tracks: 896,
        capacity_mb: 800_000,
        name: "U-416",
        description: "Ultrium 4/16T",
    },
    Density {
        code: 0x44,
        writable: false,
        default: false,
        bits_per_mm: 9638,
        tracks: 704,
        capacity_mb: 400_000,
        name: "U-316",
        description: "Ultrium 3/16T",
    },
];

/// REPORT DENSITY SUPPORT: every density the drive supports, or with
/// `media_only` those of the loaded medium (LTO-5).
pub(super) fn density_support(media_only: bool) -> Bytes {
    let mut body = BytesMut::new();
    for d in DENSITIES.iter().filter(|d| !media_only || d.code == LTO5_DENSITY) {
        body.put_u8(d.code); // primary
        body.put_u8(d.code); // secondary
                             // WRTOK, DUP 0, DEFLT, DLV (the descriptor length below is valid).
        body.put_u8((d.writable as u8) << 7 | (d.default as u8) << 5 | 0x01);
        body.put_u16(0x2F); // bytes after this field
        body.put_uint(d.bits_per_mm as u64, 3);
        body.put_u16(127); // media width, 0.1 mm: half inch
        body.put_u16(d.tracks);
        body.put_u32(d.capacity_mb);
        body.put_slice(&padded("LTO-CVE", 8));
        body.put_slice(&padded(d.name, 8));
        body.put_slice(&padded(d.description, 20));
    }
    let mut b = BytesMut::with_capacity(4 + body.len());
    b.put_u16(body.len() as u16 + 2);
    b.put_u16(0);
    b.put_slice(&body);
    b.freeze()
}

/// Where the drive is, for READ POSITION.
#[derive(Debug, Clone, Copy)]
pub(super) struct Position {
    pub object: u64,
    /// Filemarks before the position (the logical file identifier).
    pub file: u64,
    /// Past early warning.
    pub past_early_warning: bool,
}

impl Position {
    fn flags(&self) -> u8 {
        ((self.object == 0) as u8) << 7 | (self.past_early_warning as u8) << 6
    }

    /// Short form (00h/01h): 20 bytes. BPU (LOLU) stays clear: the
    /// position is always known; PERR if it does not fit in 32 bits.
    pub fn short_form(&self) -> Bytes {
        let fits = u32::try_from(self.object).ok();
        let mut b = BytesMut::with_capacity(20);
        b.put_u8(self.flags() | if fits.is_none() { 0x02 } else { 0 });
        b.put_u8(0); // partition
        b.put_u16(0);
        b.put_u32(fits.unwrap_or(0)); // first logical object location
        b.put_u32(fits.unwrap_or(0)); // last: nothing is buffered
        b.put_u8(0);
        b.put_uint(0, 3); // objects in the buffer
        b.put_u32(0); // bytes in the buffer
        b.freeze()
    }

    /// Long form (06h): 32 bytes with the file number.
    pub fn long_form(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32);
        b.put_u8(self.flags());
        b.put_bytes(0, 3);
        b.put_u32(0); // partition
        b.put_u64(self.object);
        b.put_u64(self.file);
        b.put_u64(0); // logical set identifier: no setmarks
        b.freeze()
    }

    /// Extended form (08h): 32 bytes, 64-bit locations.
    pub fn extended_form(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32);
        b.put_u8(self.flags());
        b.put_u8(0); // partition
        b.put_u16(0x1C); // additional length
        b.put_u8(0);
        b.put_uint(0, 3); // objects in the buffer
        b.put_u64(self.object);
        b.put_u64(self.object);
        b.put_u64(0); // bytes in the buffer
        b.freeze()
    }
}
