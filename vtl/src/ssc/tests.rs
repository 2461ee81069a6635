//! The drive without a socket: commands through `LogicalUnit::execute`
//! against tapes in memory and in a directory.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use iscsi_target::scsi::{ItNexus, LogicalUnit, ScsiRequest, ScsiResponse, ScsiStatus, SenseKey};

use super::*;
use crate::format::TapeIndex;
use crate::media::{LoadedMedium, TapeStream};
use crate::stream::{FileTapeStream, MemTapeStream};

fn nexus(id: u64) -> Arc<ItNexus> {
    Arc::new(ItNexus::without_transport(id, "iqn.test:drive"))
}

fn drive() -> Arc<TapeDrive> {
    TapeDrive::new(lto5_identity("1013000001", 0x1234), DriveConfig::default())
}

#[derive(Clone)]
struct TapeSpec {
    capacity: u64,
    write_protected: bool,
    worm: bool,
}

const DEFAULT_TAPE: TapeSpec = TapeSpec { capacity: 64 << 20, write_protected: false, worm: false };

fn medium(spec: &TapeSpec, stream: Arc<dyn TapeStream>, index: TapeIndex) -> LoadedMedium {
    LoadedMedium {
        barcode: "TAPE01L5".into(),
        capacity: spec.capacity,
        write_protected: spec.write_protected,
        worm: spec.worm,
        index,
        stream,
    }
}

/// A drive with a tape loaded and the unit attentions of nexus 1 cleared.
struct Rig {
    drive: Arc<TapeDrive>,
    stream: Arc<MemTapeStream>,
    n: Arc<ItNexus>,
}

impl Rig {
    async fn new() -> Rig {
        Rig::with(DEFAULT_TAPE, DriveConfig::default()).await
    }

    async fn with(spec: TapeSpec, config: DriveConfig) -> Rig {
        let drive = TapeDrive::new(lto5_identity("1013000001", 0x1234), config);
        let stream = Arc::new(MemTapeStream::new());
        drive.load(medium(&spec, stream.clone(), TapeIndex::new())).await.unwrap();
        let rig = Rig { drive, stream, n: nexus(1) };
        assert_eq!(rig.cmd(&[0, 0, 0, 0, 0, 0]).await.sense.unwrap(), Sense::POWER_ON_RESET);
        assert_eq!(rig.cmd(&[0, 0, 0, 0, 0, 0]).await.status, ScsiStatus::Good);
        rig
    }

    async fn cmd(&self, cdb: &[u8]) -> ScsiResponse {
        self.send(&self.n, cdb, &[]).await
    }

    async fn send(&self, n: &Arc<ItNexus>, cdb: &[u8], data: &[u8]) -> ScsiResponse {
        let req = ScsiRequest {
            nexus: n.clone(),
            lun: 0,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data),
            data_out_checksums: None,
        };
        self.drive.execute(req).await
    }

    async fn write(&self, data: &[u8]) -> ScsiResponse {
        self.send(&self.n, &write6(false, data.len() as u32), data).await
    }

    async fn good_write(&self, data: &[u8]) {
        assert_good(&self.write(data).await);
    }

    async fn read(&self, len: u32) -> ScsiResponse {
        self.cmd(&read6(false, false, len)).await
    }

    async fn filemarks(&self, n: u32) -> ScsiResponse {
        self.cmd(&[0x10, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 0]).await
    }

    async fn position(&self) -> u64 {
        let r = self.cmd(&[0x34, 0x06, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        assert_good(&r);
        u64::from_be_bytes(r.data_in[8..16].try_into().unwrap())
    }

    async fn file_number(&self) -> u64 {
        let r = self.cmd(&[0x34, 0x06, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        u64::from_be_bytes(r.data_in[16..24].try_into().unwrap())
    }

    async fn rewind(&self) {
        assert_good(&self.cmd(&[0x01, 0, 0, 0, 0, 0]).await);
    }

    async fn locate(&self, object: u32) -> ScsiResponse {
        let b = object.to_be_bytes();
        self.cmd(&[0x2B, 0, 0, b[0], b[1], b[2], b[3], 0, 0, 0]).await
    }

    async fn space(&self, code: u8, count: i32) -> ScsiResponse {
        let b = count.to_be_bytes();
        self.cmd(&[0x11, code, b[1], b[2], b[3], 0]).await
    }

    async fn mode_select_block_len(&self, len: u32) -> ScsiResponse {
        let b = len.to_be_bytes();
        let list = [0, 0, 0x10, 8, 0, 0, 0, 0, 0, b[1], b[2], b[3]];
        self.send(&self.n, &[0x15, 0x10, 0, 0, list.len() as u8, 0], &list).await
    }

    /// Records 0..n of `len` bytes, each filled with its number.
    async fn records(&self, n: u8, len: usize) {
        for i in 0..n {
            self.good_write(&vec![i; len]).await;
        }
    }
}

fn write6(fixed: bool, len: u32) -> [u8; 6] {
    [0x0A, fixed as u8, (len >> 16) as u8, (len >> 8) as u8, len as u8, 0]
}

fn read6(fixed: bool, sili: bool, len: u32) -> [u8; 6] {
    [0x08, fixed as u8 | (sili as u8) << 1, (len >> 16) as u8, (len >> 8) as u8, len as u8, 0]
}

#[track_caller]
fn assert_good(r: &ScsiResponse) {
    assert_eq!(r.status, ScsiStatus::Good, "sense: {:?}", r.sense);
}

/// Asserts CHECK CONDITION with this key/ASC/ASCQ and returns the sense.
#[track_caller]
fn sense(r: &ScsiResponse, key: SenseKey, asc: u8, ascq: u8) -> Sense {
    assert_eq!(r.status, ScsiStatus::CheckCondition);
    let s = r.sense.clone().unwrap();
    assert_eq!((s.key, s.asc, s.ascq), (key, asc, ascq), "{s:?}");
    s
}

// ---- Readiness, identity ----

#[tokio::test]
async fn empty_drive_is_not_ready_and_load_raises_one_unit_attention() {
    let d = drive();
    let rig = Rig { drive: d.clone(), stream: Arc::new(MemTapeStream::new()), n: nexus(1) };
    sense(&rig.cmd(&[0; 6]).await, SenseKey::UnitAttention, 0x29, 0x00);
    sense(&rig.cmd(&[0; 6]).await, SenseKey::NotReady, 0x3A, 0x00);
    sense(&rig.read(10).await, SenseKey::NotReady, 0x3A, 0x00);
    assert_eq!(d.loaded(), None);
    d.load(medium(&DEFAULT_TAPE, rig.stream.clone(), TapeIndex::new())).await.unwrap();
    assert_eq!(d.loaded().as_deref(), Some("TAPE01L5"));
    sense(&rig.cmd(&[0; 6]).await, SenseKey::UnitAttention, 0x28, 0x00);
    assert_good(&rig.cmd(&[0; 6]).await);
    // A second tape cannot go into a full drive.
    let again = d.load(medium(&DEFAULT_TAPE, rig.stream.clone(), TapeIndex::new())).await.unwrap_err();
    assert_eq!((again.asc, again.ascq), (0x3B, 0x0D));
}

#[tokio::test]
async fn inquiry_reports_an_ibm_lto5_drive() {
    let rig = Rig::new().await;
    let r = rig.cmd(&[0x12, 0, 0, 0, 96, 0]).await;
    assert_good(&r);
    let d = &r.data_in;
    assert_eq!((d[0], d[1] & 0x80), (0x01, 0x80), "sequential access, removable");
    assert_eq!(&d[8..16], b"IBM     ");
    assert_eq!(&d[16..32], b"ULT3580-TD5     ");
    assert!(d[58..74].chunks(2).any(|v| v == [0x04, 0x00]), "SSC-3 version descriptor");
    let serial = rig.cmd(&[0x12, 1, 0x80, 0, 64, 0]).await;
    assert_eq!(&serial.data_in[4..], b"1013000001");
    let vpd = rig.cmd(&[0x12, 1, 0x00, 0, 64, 0]).await;
    assert_eq!(&vpd.data_in[4..], &[0x00, 0x80, 0x83, 0xB0]);
    let id = rig.cmd(&[0x12, 1, 0x83, 1, 0, 0]).await;
    let page_len = u16::from_be_bytes([id.data_in[2], id.data_in[3]]) as usize;
    assert_eq!(page_len, id.data_in.len() - 4);
    assert_eq!(&id.data_in[4..8], &[0x02, 0x01, 0x00, 34]);
    assert_eq!(&id.data_in[8..42], b"IBM     ULT3580-TD5     1013000001");
    assert_eq!(id.data_in[42 + 1] & 0x0F, 0x03, "the NAA designator follows");
    let caps = rig.cmd(&[0x12, 1, 0xB0, 0, 64, 0]).await;
    assert_eq!(&caps.data_in[..], &[0x01, 0xB0, 0, 2, 0x01, 0]);
    let ident = rig.drive.device_identifier();
    assert_eq!((ident.vendor.as_str(), ident.product.as_str()), ("IBM", "ULT3580-TD5"));
}

// ---- Variable-length reads and writes ----

#[tokio::test]
async fn variable_records_read_back_with_residues() {
    let rig = Rig::new().await;
    rig.good_write(b"0123456789").await;
    rig.good_write(b"abc").await;
    rig.good_write(b"longer record").await;
    rig.rewind().await;
    let r = rig.read(10).await;
    assert_good(&r);
    assert_eq!(&r.data_in[..], b"0123456789");
    // Shorter record than asked: ILI, residue requested - actual.
    let r = rig.read(8).await;
    let s = sense(&r, SenseKey::NoSense, 0, 0);
    assert!(s.ili);
    assert_eq!(s.info, Some(5));
    assert_eq!(&r.data_in[..], b"abc");
    // Longer record than asked: ILI, negative residue, the rest skipped.
    let r = rig.read(6).await;
    let s = sense(&r, SenseKey::NoSense, 0, 0);
    assert!(s.ili);
    assert_eq!(s.info, Some((-7i32) as u32 as u64));
    assert_eq!(&r.data_in[..], b"longer");
    assert_eq!(s.to_fixed()[3..7], [0xFF, 0xFF, 0xFF, 0xF9]);
    assert_eq!(rig.position().await, 3);
}

#[tokio::test]
async fn sili_suppresses_only_short_records() {
    let rig = Rig::new().await;
    rig.good_write(b"abc").await;
    rig.good_write(b"abcdef").await;
    rig.rewind().await;
    let r = rig.cmd(&read6(false, true, 100)).await;
    assert_good(&r);
    assert_eq!(&r.data_in[..], b"abc");
    let r = rig.cmd(&read6(false, true, 2)).await;
    assert!(sense(&r, SenseKey::NoSense, 0, 0).ili);
}

#[tokio::test]
async fn filemark_and_end_of_data_on_read() {
    let rig = Rig::new().await;
    rig.records(2, 100).await;
    assert_good(&rig.filemarks(1).await);
    rig.rewind().await;
    for i in 0..2 {
        assert_eq!(rig.read(100).await.data_in[0], i);
    }
    let r = rig.read(100).await;
    let s = sense(&r, SenseKey::NoSense, 0x00, 0x01);
    assert!(s.filemark && !s.ili);
    assert_eq!(s.info, Some(100));
    assert!(r.data_in.is_empty());
    assert_eq!((rig.position().await, rig.file_number().await), (3, 1), "after the filemark");
    // End of data: BLANK CHECK, nothing returned, the whole request as
    // residue; the position stays.
    let r = rig.read(4096).await;
    let s = sense(&r, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(s.info, Some(4096));
    assert!(r.data_in.is_empty());
    assert_eq!(rig.position().await, 3);
    // A zero-length read does nothing.
    assert_good(&rig.read(0).await);
}

#[tokio::test]
async fn blank_tape_reads_blank_check() {
    let rig = Rig::new().await;
    let s = sense(&rig.read(512).await, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(s.info, Some(512));
}

// ---- Fixed-block mode ----

#[tokio::test]
async fn fixed_blocks_use_the_mode_block_length() {
    let rig = Rig::new().await;
    let e = rig.send(&rig.n, &write6(true, 1), &[0; 512]).await;
    assert_eq!(sense(&e, SenseKey::IllegalRequest, 0x24, 0).field.map(|f| f.byte), Some(1));
    assert_good(&rig.mode_select_block_len(512).await);
    let ms = rig.cmd(&[0x1A, 0, 0x3F, 0, 255, 0]).await;
    assert_eq!(ms.data_in[3], 8);
    assert_eq!(ms.data_in[4], 0x58, "LTO-5 density");
    assert_eq!(&ms.data_in[9..12], &[0, 2, 0]);
    // Page 0, as the Linux st driver asks: header and block descriptor only.
    let ms = rig.cmd(&[0x1A, 0, 0x00, 0, 12, 0]).await;
    assert_good(&ms);
    assert_eq!(ms.data_in.len(), 12);
    assert_eq!((ms.data_in[0], ms.data_in[3]), (11, 8));
    assert_eq!(&ms.data_in[9..12], &[0, 2, 0]);
    let data: Vec<u8> = (0..4 * 512).map(|i| (i / 512) as u8).collect();
    let w = rig.send(&rig.n, &write6(true, 4), &data).await;
    assert_good(&w);
    assert_eq!(w.data_out_len, Some(2048));
    assert_good(&rig.filemarks(1).await);
    rig.good_write(&[9; 100]).await; // variable record in fixed mode
    assert_eq!(rig.position().await, 6);
    rig.rewind().await;
    let r = rig.cmd(&read6(true, false, 3)).await;
    assert_good(&r);
    assert_eq!(&r.data_in[..], &data[..1536]);
    // Ask for 8 blocks: 1 left before the filemark.
    let r = rig.cmd(&read6(true, false, 8)).await;
    let s = sense(&r, SenseKey::NoSense, 0x00, 0x01);
    assert!(s.filemark);
    assert_eq!((s.info, r.data_in.len()), (Some(7), 512));
    // A 100-byte record in fixed mode: ILI, skipped, blocks not read.
    let r = rig.cmd(&read6(true, false, 2)).await;
    let s = sense(&r, SenseKey::NoSense, 0, 0);
    assert!(s.ili);
    assert_eq!((s.info, r.data_in.len()), (Some(2), 0));
    let r = rig.cmd(&read6(true, false, 2)).await;
    assert_eq!(sense(&r, SenseKey::BlankCheck, 0, 5).info, Some(2));
    // Back to variable mode.
    assert_good(&rig.mode_select_block_len(0).await);
    let e = rig.cmd(&read6(true, false, 1)).await;
    sense(&e, SenseKey::IllegalRequest, 0x24, 0);
}

#[tokio::test]
async fn fixed_with_sili_is_an_invalid_field() {
    let rig = Rig::new().await;
    let s = sense(&rig.cmd(&[0x08, 0x03, 0, 0, 1, 0]).await, SenseKey::IllegalRequest, 0x24, 0);
    assert_eq!(s.field.map(|f| (f.byte, f.bit)), Some((1, Some(1))));
}

// ---- Commits ----

#[tokio::test]
async fn index_commits_at_filemarks_and_flushes_not_per_record() {
    let rig = Rig::new().await;
    rig.records(10, 1000).await;
    assert_eq!(rig.stream.commit_count(), 0);
    assert_good(&rig.filemarks(0).await);
    assert_eq!(rig.stream.commit_count(), 1);
    assert_eq!(rig.stream.committed_index().object_count(), 10);
    rig.records(1, 1000).await;
    assert_good(&rig.filemarks(2).await);
    let idx = rig.stream.committed_index();
    assert_eq!((idx.object_count(), idx.filemark_count()), (13, 2));
    // Positioning after writes commits them.
    rig.records(1, 10).await;
    rig.rewind().await;
    assert_eq!(rig.stream.committed_index().object_count(), 14);
    let commits = rig.stream.commit_count();
    rig.rewind().await;
    assert_eq!(rig.stream.commit_count(), commits, "nothing new to commit");
}

// ---- SPACE, LOCATE, READ POSITION ----

/// Three files of two records each, then end of data: objects
/// r0 r1 F r2 r3 F r4 r5 F.
async fn three_files() -> Rig {
    let rig = Rig::new().await;
    for f in 0..3u8 {
        rig.records(2, 10 + f as usize).await;
        assert_good(&rig.filemarks(1).await);
    }
    rig.rewind().await;
    rig
}

#[tokio::test]
async fn mt_eod_counts_files_from_the_residue() {
    let rig = three_files().await;
    // Linux st `mt eod`: SPACE 0x7FFFFF filemarks, files = count - residue.
    let s = sense(&rig.space(1, 0x7F_FFFF).await, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(s.info, Some(0x7F_FFFF - 3));
    assert_eq!(rig.position().await, 9);
    // At end of data a read returns nothing.
    assert!(sense(&rig.read(10).await, SenseKey::BlankCheck, 0, 5).info == Some(10));
}

#[tokio::test]
async fn fsf_past_end_of_data_leaves_residue_and_position_at_eod() {
    let rig = three_files().await;
    let s = sense(&rig.space(1, 5).await, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(s.info, Some(2));
    assert_eq!(rig.position().await, 9);
    assert_eq!(rig.file_number().await, 3);
}

#[tokio::test]
async fn space_filemarks_both_ways() {
    let rig = three_files().await;
    assert_good(&rig.space(1, 2).await);
    assert_eq!((rig.position().await, rig.file_number().await), (6, 2));
    assert_eq!(rig.read(100).await.data_in[0], 0, "first record of file 2");
    // Back one filemark: on its BOP side (st's `mt bsf`).
    assert_good(&rig.space(1, -1).await);
    assert_eq!(rig.position().await, 5);
    // Back past BOP: EOM, 00/04, residue positive.
    let s = sense(&rig.space(1, -4).await, SenseKey::NoSense, 0x00, 0x04);
    assert!(s.eom);
    assert_eq!(s.info, Some(3));
    assert_eq!(rig.position().await, 0);
    assert_good(&rig.space(3, 0).await);
    assert_eq!(rig.position().await, 9);
    assert_good(&rig.space(1, 0).await);
    assert_eq!(rig.position().await, 9);
}

#[tokio::test]
async fn space_blocks_stops_at_filemarks_bop_and_eod() {
    let rig = three_files().await;
    assert_good(&rig.space(0, 1).await);
    assert_eq!(rig.position().await, 1);
    // Forward 3 blocks: one left, then the filemark.
    let s = sense(&rig.space(0, 3).await, SenseKey::NoSense, 0x00, 0x01);
    assert!(s.filemark);
    assert_eq!(s.info, Some(2));
    assert_eq!(rig.position().await, 3);
    // Backward 2 from object 3: the filemark at 2 is met at once.
    let s = sense(&rig.space(0, -2).await, SenseKey::NoSense, 0x00, 0x01);
    assert_eq!(s.info, Some(2));
    assert_eq!(rig.position().await, 2, "on the BOP side of the filemark");
    assert_good(&rig.space(0, -2).await);
    assert_eq!(rig.position().await, 0);
    let s = sense(&rig.space(0, -1).await, SenseKey::NoSense, 0x00, 0x04);
    assert!(s.eom);
    assert_eq!(s.info, Some(1));
    rig.locate(7).await;
    let s = sense(&rig.space(0, 5).await, SenseKey::NoSense, 0x00, 0x01);
    assert_eq!((s.info, rig.position().await), (Some(4), 9));
    let s = sense(&rig.space(0, 5).await, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(s.info, Some(5));
    // SPACE(16) with a 64-bit count.
    let mut cdb = [0u8; 16];
    cdb[0] = 0x91;
    cdb[1] = 0x01;
    cdb[4..12].copy_from_slice(&(-3i64).to_be_bytes());
    assert_good(&rig.cmd(&cdb).await);
    assert_eq!(rig.position().await, 2);
}

/// Bacula btape's append test through Linux st: files of 1, 2 and 3
/// records; reopen, rewind, `eod` (MTEOM: SPACE 0x7FFFFF filemarks, then
/// SPACE to end of data) must leave st at file 3; one record and a filemark
/// appended there; then a scan from BOT reads back 1, 2, 3 and 1 records
/// (variable reads longer than the records: ILI with the residue) and
/// meets end of data with no data.
#[tokio::test]
async fn btape_append_test_sequence() {
    let rig = Rig::new().await;
    for (file, n) in [1u8, 2, 3].into_iter().enumerate() {
        rig.records(n, 200 + file).await;
        assert_good(&rig.filemarks(1).await);
    }
    rig.rewind().await;
    let s = sense(&rig.space(1, 0x7F_FFFF).await, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(0x7F_FFFF - s.info.unwrap(), 3, "st counts 3 files");
    assert_good(&rig.space(3, 0).await);
    assert_eq!((rig.position().await, rig.file_number().await), (9, 3));
    rig.good_write(&[9; 203]).await;
    assert_good(&rig.filemarks(1).await);
    rig.rewind().await;

    let mut files = Vec::new();
    let mut records = 0;
    loop {
        let r = rig.read(256).await;
        let s = r.sense.clone().unwrap();
        if s.filemark {
            assert!(r.data_in.is_empty());
            files.push(records);
            records = 0;
            continue;
        }
        if s.key == SenseKey::BlankCheck {
            assert!(r.data_in.is_empty(), "nothing read at end of data");
            break;
        }
        assert!(s.ili, "{s:?}");
        let len = 200 + files.len();
        assert_eq!(s.info, Some(256 - len as u64));
        assert_eq!(r.data_in.len(), len);
        records += 1;
    }
    assert_eq!(files, [1, 2, 3, 1]);
    assert_eq!((rig.position().await, rig.file_number().await), (11, 4));
}

#[tokio::test]
async fn locate_and_read_position_forms() {
    let rig = three_files().await;
    let short = rig.cmd(&[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0]).await;
    assert_eq!(short.data_in.len(), 20);
    assert_eq!(short.data_in[0], 0x80, "BOP, position known (BPU clear)");
    assert_good(&rig.locate(4).await);
    for sa in [0u8, 1] {
        let short = rig.cmd(&[0x34, sa, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        assert_eq!(short.data_in[0] & 0x84, 0);
        assert_eq!(&short.data_in[4..12], &[0, 0, 0, 4, 0, 0, 0, 4]);
    }
    assert_eq!(rig.read(100).await.data_in[0], 1, "second record of file 1");
    assert_eq!(rig.file_number().await, 1);
    let ext = rig.cmd(&[0x34, 8, 0, 0, 0, 0, 0, 0, 32, 0]).await;
    assert_eq!(ext.data_in.len(), 32);
    assert_eq!(u16::from_be_bytes([ext.data_in[2], ext.data_in[3]]), 0x1C);
    assert_eq!(u64::from_be_bytes(ext.data_in[8..16].try_into().unwrap()), 5);
    let s = sense(&rig.locate(20).await, SenseKey::BlankCheck, 0x00, 0x05);
    assert_eq!(s.info, None);
    assert_eq!(rig.position().await, 9);
    // LOCATE(16) to a file and to end of data.
    let mut cdb = [0u8; 16];
    cdb[0] = 0x92;
    cdb[1] = 0x08;
    cdb[11] = 2;
    assert_good(&rig.cmd(&cdb).await);
    assert_eq!((rig.position().await, rig.file_number().await), (6, 2));
    cdb[1] = 0x18;
    assert_good(&rig.cmd(&cdb).await);
    assert_eq!(rig.position().await, 9);
    cdb[1] = 0x08;
    cdb[11] = 4;
    sense(&rig.cmd(&cdb).await, SenseKey::BlankCheck, 0, 5);
}

// ---- Overwrite, WORM, write protection ----

#[tokio::test]
async fn writing_in_the_middle_truncates() {
    let rig = three_files().await;
    rig.locate(3).await;
    rig.good_write(b"new").await;
    assert_eq!(rig.position().await, 4);
    let committed = rig.stream.committed_index();
    assert_eq!(committed.object_count(), 3, "the cut was committed before the write");
    assert_eq!(rig.stream.len(), 20 + 3);
    rig.rewind().await;
    sense(&rig.space(1, 2).await, SenseKey::BlankCheck, 0, 5);
    assert_eq!(rig.position().await, 4);
    rig.locate(3).await;
    assert_eq!(&rig.read(10).await.data_in[..], b"new");
}

#[tokio::test]
async fn erase_cuts_the_tape_at_the_position() {
    let rig = three_files().await;
    rig.locate(2).await;
    assert_good(&rig.cmd(&[0x19, 0x01, 0, 0, 0, 0]).await);
    assert_eq!(rig.stream.committed_index().object_count(), 2);
    rig.rewind().await;
    sense(&rig.space(1, 1).await, SenseKey::BlankCheck, 0, 5);
}

#[tokio::test]
async fn worm_refuses_overwrites_but_appends() {
    let spec = TapeSpec { worm: true, ..DEFAULT_TAPE };
    let rig = Rig::with(spec, DriveConfig::default()).await;
    rig.records(2, 10).await;
    assert_good(&rig.filemarks(2).await);
    rig.locate(1).await;
    sense(&rig.write(b"x").await, SenseKey::DataProtect, 0x30, 0x0C);
    sense(&rig.cmd(&[0x19, 0x01, 0, 0, 0, 0]).await, SenseKey::DataProtect, 0x30, 0x0C);
    sense(&rig.filemarks(1).await, SenseKey::DataProtect, 0x30, 0x0C);
    // Over the second of the closing filemarks (a filemark before it,
    // only filemarks after it): allowed, as LTO WORM allows.
    rig.locate(3).await;
    rig.good_write(b"appended").await;
    assert_eq!(rig.stream.committed_index().object_count(), 3);
    assert_good(&rig.filemarks(1).await);
    rig.good_write(b"at eod").await;
    // Just before the first closing filemark (a record before it): no.
    rig.locate(2).await;
    sense(&rig.write(b"x").await, SenseKey::DataProtect, 0x30, 0x0C);
    let alerts = rig.cmd(&[0x4D, 0, 0x2E, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(alerts.data_in[4 + 59 * 5 + 4], 1, "TapeAlert 3Ch");
}

#[tokio::test]
async fn write_protected_tape_refuses_every_change() {
    let spec = TapeSpec { write_protected: true, ..DEFAULT_TAPE };
    let rig = Rig::with(spec, DriveConfig::default()).await;
    sense(&rig.write(b"x").await, SenseKey::DataProtect, 0x27, 0x00);
    sense(&rig.filemarks(1).await, SenseKey::DataProtect, 0x27, 0x00);
    sense(&rig.cmd(&[0x19, 0x01, 0, 0, 0, 0]).await, SenseKey::DataProtect, 0x27, 0x00);
    let ms = rig.cmd(&[0x1A, 0x08, 0x3F, 0, 255, 0]).await;
    assert_eq!(ms.data_in[2] & 0x80, 0x80, "WP in the device-specific parameter");
    let alerts = rig.cmd(&[0x4D, 0, 0x2E, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(alerts.data_in[4 + 8 * 5 + 4], 1, "TapeAlert 09h");
    let again = rig.cmd(&[0x4D, 0, 0x2E, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert!(again.data_in[4..].chunks(5).all(|p| p[4] == 0), "reading the page cleared the flags");
}

// ---- End of tape ----

/// A 1 MiB tape with early warning 256 KiB before its end.
async fn small_tape() -> Rig {
    let config = DriveConfig { early_warning_percent: 0, early_warning_min_bytes: 256 << 10 };
    Rig::with(TapeSpec { capacity: 1 << 20, ..DEFAULT_TAPE }, config).await
}

#[tokio::test]
async fn early_warning_then_volume_overflow() {
    let rig = small_tape().await;
    let block = vec![7u8; 64 << 10];
    for _ in 0..12 {
        rig.good_write(&block).await;
    }
    // 13th record ends past 768 KiB: written, EOM reported.
    let s = sense(&rig.write(&block).await, SenseKey::NoSense, 0x00, 0x02);
    assert!(s.eom);
    assert_eq!(s.info, Some(0));
    assert_eq!(rig.position().await, 13);
    let short = rig.cmd(&[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0]).await;
    assert_eq!(short.data_in[0] & 0x40, 0x40, "EOP: past early warning");
    let s = sense(&rig.filemarks(1).await, SenseKey::NoSense, 0x00, 0x02);
    assert!(s.eom);
    for _ in 0..3 {
        assert!(sense(&rig.write(&block).await, SenseKey::NoSense, 0, 2).eom);
    }
    // 16 records = 1 MiB: the tape is full.
    let s = sense(&rig.write(&block).await, SenseKey::VolumeOverflow, 0x00, 0x02);
    assert!(s.eom);
    assert_eq!(s.info, Some(64 << 10));
    assert_eq!(rig.position().await, 17);
    let cap = rig.cmd(&[0x4D, 0, 0x31, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(&cap.data_in[4..12], &[0, 1, 0, 4, 0, 0, 0, 0], "nothing remains");
}

#[tokio::test]
async fn fixed_write_that_does_not_fit_reports_blocks_not_written() {
    let rig = small_tape().await;
    assert_good(&rig.mode_select_block_len(256 << 10).await);
    let data = vec![1u8; 6 * (256 << 10)];
    let s = sense(&rig.send(&rig.n, &write6(true, 6), &data).await, SenseKey::VolumeOverflow, 0, 2);
    assert_eq!(s.info, Some(2));
    assert_eq!(rig.position().await, 4);
}

// ---- LOAD UNLOAD, PREVENT ALLOW MEDIUM REMOVAL ----

#[tokio::test]
async fn unload_commits_and_leaves_the_tape_for_the_changer() {
    let rig = Rig::new().await;
    rig.records(3, 10).await;
    assert_good(&rig.cmd(&[0x1B, 0, 0, 0, 0, 0]).await);
    assert_eq!(rig.stream.committed_index().object_count(), 3);
    sense(&rig.cmd(&[0; 6]).await, SenseKey::NotReady, 0x3A, 0x00);
    assert_eq!(rig.drive.loaded().as_deref(), Some("TAPE01L5"));
    // LOAD threads it again, at BOP.
    assert_good(&rig.cmd(&[0x1B, 0, 0, 0, 1, 0]).await);
    assert_eq!(rig.position().await, 0);
    assert_good(&rig.cmd(&[0x1B, 0, 0, 0, 0, 0]).await);
    assert_eq!(rig.drive.unload().await.unwrap(), "TAPE01L5");
    assert_eq!(rig.drive.loaded(), None);
    sense(&rig.cmd(&[0x1B, 0, 0, 0, 1, 0]).await, SenseKey::NotReady, 0x3A, 0x00);
    assert!(rig.drive.unload().await.is_err());
}

#[tokio::test]
async fn prevent_medium_removal_blocks_unloads_until_allowed_or_nexus_lost() {
    let rig = Rig::new().await;
    assert_good(&rig.cmd(&[0x1E, 0, 0, 0, 1, 0]).await);
    sense(&rig.cmd(&[0x1B, 0, 0, 0, 0, 0]).await, SenseKey::IllegalRequest, 0x53, 0x02);
    assert_eq!(rig.drive.unload().await.unwrap_err(), Sense::MEDIUM_REMOVAL_PREVENTED);
    assert_good(&rig.cmd(&[0x1E, 0, 0, 0, 0, 0]).await);
    assert_good(&rig.cmd(&[0x1E, 0, 0, 0, 1, 0]).await);
    rig.drive.nexus_lost(&rig.n);
    assert_eq!(rig.drive.unload().await.unwrap(), "TAPE01L5");
    sense(&rig.cmd(&[0; 6]).await, SenseKey::UnitAttention, 0x29, 0x00);
    sense(&rig.cmd(&[0x1E, 0, 0, 0, 2, 0]).await, SenseKey::IllegalRequest, 0x24, 0x00);
}

// ---- Limits, densities, mode and log pages ----

#[tokio::test]
async fn block_limits_and_densities() {
    let rig = Rig::new().await;
    let r = rig.cmd(&[0x05, 0, 0, 0, 0, 0]).await;
    assert_eq!(&r.data_in[..], &[0, 0xFF, 0xFF, 0xFF, 0, 1]);
    let r = rig.cmd(&[0x05, 1, 0, 0, 0, 0]).await;
    assert_eq!(r.data_in.len(), 20);
    let all = rig.cmd(&[0x44, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(u16::from_be_bytes([all.data_in[0], all.data_in[1]]) as usize, all.data_in.len() - 2);
    let codes: Vec<u8> = all.data_in[4..].chunks(52).map(|d| d[0]).collect();
    assert_eq!(codes, [0x58, 0x46, 0x44]);
    assert_eq!(all.data_in[4 + 2] & 0xA0, 0xA0, "LTO-5: writable, default");
    assert_eq!(&all.data_in[4 + 24..4 + 29], b"U-516");
    let media = rig.cmd(&[0x44, 1, 0, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(media.data_in.len(), 4 + 52);
    let empty = Rig { drive: drive(), stream: rig.stream.clone(), n: nexus(9) };
    let media_cdb = [0x44, 1, 0, 0, 0, 0, 0, 1, 0, 0];
    sense(&empty.cmd(&media_cdb).await, SenseKey::UnitAttention, 0x29, 0);
    sense(&empty.cmd(&media_cdb).await, SenseKey::NotReady, 0x3A, 0);
}

#[tokio::test]
async fn mode_pages_of_a_tape_drive() {
    let rig = Rig::new().await;
    let ms = rig.cmd(&[0x5A, 0x08, 0x3F, 0, 0, 0, 0, 1, 0, 0]).await;
    assert_good(&ms);
    let mut codes = Vec::new();
    let mut at = 8;
    while at < ms.data_in.len() {
        codes.push(ms.data_in[at] & 0x3F);
        at += ms.data_in[at + 1] as usize + 2;
    }
    assert_eq!(codes, [0x01, 0x0A, 0x0F, 0x10, 0x11, 0x1C]);
    assert_eq!(ms.data_in[3] & 0x10, 0x10, "buffered mode");
    let compression = rig.cmd(&[0x1A, 0x08, 0x0F, 0, 255, 0]).await;
    assert_eq!(&compression.data_in[4..8], &[0x0F, 0x0E, 0xC0, 0x80]);
    // Turn compression off through MODE SELECT, as `mt compression 0` does.
    let mut list = vec![0, 0, 0x10, 0];
    list.extend_from_slice(&compression.data_in[4..20]);
    list[6] = 0x40;
    assert_good(&rig.send(&rig.n, &[0x15, 0x10, 0, 0, list.len() as u8, 0], &list).await);
    let log = rig.cmd(&[0x4D, 0, 0x1B, 0, 0, 0x01, 0x00, 0x10, 0, 0]).await;
    assert_eq!(&log.data_in[4..9], &[0x01, 0x00, 0x00, 1, 0]);
    // Densities other than LTO-5 cannot be selected; the block length
    // stays as it was when MODE SELECT fails.
    let bad = [0, 0, 0x10, 8, 0x46, 0, 0, 0, 0, 0, 2, 0];
    let r = rig.send(&rig.n, &[0x15, 0x10, 0, 0, 12, 0], &bad).await;
    sense(&r, SenseKey::IllegalRequest, 0x26, 0);
    let bad_page = [0, 0, 0x10, 8, 0x58, 0, 0, 0, 0, 0, 2, 0, 0x11, 0x08, 1, 0, 0, 0, 0, 0, 0, 0];
    let r = rig.send(&rig.n, &[0x15, 0x10, 0, 0, bad_page.len() as u8, 0], &bad_page).await;
    sense(&r, SenseKey::IllegalRequest, 0x26, 0);
    assert_eq!(rig.drive.block_len(), 0);
}

#[tokio::test]
async fn log_pages() {
    let rig = Rig::new().await;
    rig.records(2, 1000).await;
    rig.rewind().await;
    rig.read(1000).await;
    let supported = rig.cmd(&[0x4D, 0, 0x00, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(&supported.data_in[..], &[0, 0, 0, 7, 0x00, 0x02, 0x03, 0x0C, 0x1B, 0x2E, 0x31]);
    let seq = rig.cmd(&[0x4D, 0, 0x0C, 0, 0, 0, 0, 0x10, 0, 0]).await;
    let param = |i: usize| u64::from_be_bytes(seq.data_in[4 + i * 12 + 4..4 + i * 12 + 12].try_into().unwrap());
    assert_eq!((param(0), param(3)), (2000, 1000));
    let cap = rig.cmd(&[0x4D, 0, 0x31, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(u32::from_be_bytes(cap.data_in[24..28].try_into().unwrap()), 64, "maximum MiB");
    let alerts = rig.cmd(&[0x4D, 0, 0x2E, 0, 0, 0, 0, 0x10, 0, 0]).await;
    assert_eq!(alerts.data_in.len(), 4 + 64 * 5);
    assert!(alerts.data_in[4..].chunks(5).all(|p| p[4] == 0));
    // Parameter pointer past the last parameter, unknown page, subpage.
    let r = rig.cmd(&[0x4D, 0, 0x31, 0, 0, 0, 9, 0x10, 0, 0]).await;
    assert_eq!(sense(&r, SenseKey::IllegalRequest, 0x24, 0).field.map(|f| f.byte), Some(5));
    sense(&rig.cmd(&[0x4D, 0, 0x17, 0, 0, 0, 0, 0x10, 0, 0]).await, SenseKey::IllegalRequest, 0x24, 0);
    sense(&rig.cmd(&[0x4D, 0, 0x0C, 1, 0, 0, 0, 0x10, 0, 0]).await, SenseKey::IllegalRequest, 0x24, 0);
}

#[tokio::test]
async fn report_supported_opcodes_lists_the_tape_commands() {
    let rig = Rig::new().await;
    let r = rig.cmd(&[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]).await;
    assert_good(&r);
    let ops: Vec<u8> = r.data_in[4..].chunks(8).map(|d| d[0]).collect();
    for op in [0x01, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x19, 0x1B, 0x1E, 0x2B, 0x34, 0x44, 0x4D, 0x91, 0x92] {
        assert!(ops.contains(&op), "{op:#x} missing");
    }
    let one = rig.cmd(&[0xA3, 0x0C, 0x01, 0x08, 0, 0, 0, 0, 1, 0, 0, 0]).await;
    assert_eq!(&one.data_in[..4], &[0, 3, 0, 6]);
}

#[tokio::test]
async fn reservations_go_through_the_core() {
    let rig = Rig::new().await;
    let other = nexus(2);
    rig.send(&other, &[0; 6], &[]).await; // clears its power-on attention
    rig.send(&other, &[0; 6], &[]).await;
    assert_good(&rig.cmd(&[0x16, 0, 0, 0, 0, 0]).await);
    let r = rig.send(&other, &write6(false, 1), b"x").await;
    assert_eq!(r.status, ScsiStatus::ReservationConflict);
    let r = rig.send(&other, &[0x12, 0, 0, 0, 36, 0], &[]).await;
    assert_good(&r);
    assert_good(&rig.cmd(&[0x17, 0, 0, 0, 0, 0]).await);
    assert_good(&rig.send(&other, &write6(false, 1), b"x").await);
}

// ---- Store failures ----

/// A stream that fails every operation.
struct BrokenStream;

#[async_trait]
impl TapeStream for BrokenStream {
    async fn write_at(&self, _: u64, _: Bytes) -> Result<(), TapeStoreError> {
        Err(TapeStoreError::Io("disk gone".into()))
    }
    async fn read_at(&self, _: u64, _: usize) -> Result<Bytes, TapeStoreError> {
        Err(TapeStoreError::Corrupt("bad chunk".into()))
    }
    async fn commit(&self, _: &TapeIndex) -> Result<(), TapeStoreError> {
        Err(TapeStoreError::Unavailable("offline".into()))
    }
    async fn discard_from(&self, _: u64) -> Result<(), TapeStoreError> {
        Err(TapeStoreError::Io("disk gone".into()))
    }
}

#[tokio::test]
async fn store_errors_become_medium_and_hardware_errors() {
    let d = drive();
    let mut index = TapeIndex::new();
    index.append_records(10, 1).unwrap();
    d.load(medium(&DEFAULT_TAPE, Arc::new(BrokenStream), index)).await.unwrap();
    let rig = Rig { drive: d, stream: Arc::new(MemTapeStream::new()), n: nexus(1) };
    rig.cmd(&[0; 6]).await;
    rig.cmd(&[0; 6]).await;
    sense(&rig.read(10).await, SenseKey::MediumError, 0x11, 0x00);
    assert_eq!(rig.position().await, 0, "a failed read does not move");
    rig.locate(1).await;
    sense(&rig.write(b"abc").await, SenseKey::MediumError, 0x0C, 0x00);
    assert_eq!(rig.position().await, 1);
    sense(&rig.filemarks(1).await, SenseKey::HardwareError, 0x44, 0x00);
    let alerts = rig.cmd(&[0x4D, 0, 0x2E, 0, 0, 0, 0, 0x10, 0, 0]).await;
    let raised: Vec<usize> =
        alerts.data_in[4..].chunks(5).enumerate().filter(|(_, p)| p[4] == 1).map(|(i, _)| i + 1).collect();
    assert_eq!(raised, [3, 5, 6]);
}

// ---- Crash consistency with the file stream ----

#[tokio::test]
async fn file_tape_reopens_as_of_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (stream, index) = FileTapeStream::open(dir.path()).unwrap();
        let d = drive();
        d.load(medium(&DEFAULT_TAPE, Arc::new(stream), index)).await.unwrap();
        let rig = Rig { drive: d, stream: Arc::new(MemTapeStream::new()), n: nexus(1) };
        rig.cmd(&[0; 6]).await;
        rig.cmd(&[0; 6]).await;
        rig.records(3, 4096).await;
        assert_good(&rig.filemarks(1).await);
        // Written, never committed: a crash (the drive is dropped without
        // a flush or unload) loses it.
        rig.records(5, 4096).await;
    }
    let (stream, index) = FileTapeStream::open(dir.path()).unwrap();
    assert_eq!((index.object_count(), index.filemark_count(), index.data_end()), (4, 1, 3 * 4096));
    let d = drive();
    d.load(medium(&DEFAULT_TAPE, Arc::new(stream), index)).await.unwrap();
    let rig = Rig { drive: d, stream: Arc::new(MemTapeStream::new()), n: nexus(1) };
    rig.cmd(&[0; 6]).await;
    rig.cmd(&[0; 6]).await;
    for i in 0..3 {
        let r = rig.read(4096).await;
        assert_good(&r);
        assert!(r.data_in.iter().all(|&b| b == i));
    }
    assert!(sense(&rig.read(4096).await, SenseKey::NoSense, 0, 1).filemark);
    sense(&rig.read(4096).await, SenseKey::BlankCheck, 0, 5);
    // Appending after recovery and flushing through the drive.
    rig.records(1, 100).await;
    rig.drive.flush().await.unwrap();
    let (_, index) = FileTapeStream::open(dir.path()).unwrap();
    assert_eq!(index.object_count(), 5);
}

// ---- Robustness ----

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    #[test]
    fn random_commands_never_panic(cmds in proptest::collection::vec(
        (proptest::sample::select(cdb::TAPE_OPCODES.opcodes()),
         proptest::collection::vec(proptest::prelude::any::<u8>(), 5..16),
         proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
        1..12,
    )) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let rig = small_tape().await;
            rig.records(3, 100).await;
            for (op, mut rest, data) in cmds {
                // Keep transfers small so the test stays fast.
                if matches!(op, 0x08 | 0x0A) {
                    rest[1] = 0;
                }
                let mut cdb = vec![op];
                cdb.extend(rest);
                let r = rig.send(&rig.n, &cdb, &data).await;
                assert_eq!(r.status == ScsiStatus::CheckCondition, r.sense.is_some());
            }
        });
    }
}
