//! Changer behaviour without a socket: commands go through
//! [`LogicalUnit::execute`] against in-memory drives and tape store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use iscsi_target::scsi::sense::FieldPointer;
use iscsi_target::scsi::{ScsiStatus, SenseKey};

use super::*;
use crate::format::TapeIndex;
use crate::layout::ElementCounts;
use crate::library::MailSlotState;
use crate::media::{DriveIdentifier, LoadedMedium, TapeStream};
use crate::personality::Personality;

// ---- Test doubles ----

/// A drive that holds a barcode; `prevent` stands for the drive's own
/// PREVENT MEDIUM REMOVAL.
struct FakeDrive {
    serial: String,
    inside: Mutex<Option<String>>,
    prevent: AtomicBool,
    refuse_loads: AtomicBool,
}

impl FakeDrive {
    fn new(serial: &str) -> Arc<FakeDrive> {
        Arc::new(FakeDrive {
            serial: serial.into(),
            inside: Mutex::new(None),
            prevent: AtomicBool::new(false),
            refuse_loads: AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl DataTransferElement for FakeDrive {
    async fn load(&self, medium: LoadedMedium) -> Result<(), Sense> {
        // Let concurrent commands interleave here if they can.
        tokio::task::yield_now().await;
        if self.refuse_loads.load(Ordering::SeqCst) {
            return Err(Sense::INTERNAL_TARGET_FAILURE);
        }
        let mut inside = self.inside.lock().unwrap();
        assert!(inside.is_none(), "load into a full drive");
        *inside = Some(medium.barcode);
        Ok(())
    }
    async fn unload(&self) -> Result<String, Sense> {
        if self.prevent.load(Ordering::SeqCst) {
            return Err(Sense::MEDIUM_REMOVAL_PREVENTED);
        }
        self.inside.lock().unwrap().take().ok_or(Sense::MEDIUM_NOT_PRESENT)
    }
    fn loaded(&self) -> Option<String> {
        self.inside.lock().unwrap().clone()
    }
    fn device_identifier(&self) -> DriveIdentifier {
        DriveIdentifier { vendor: "IBM".into(), product: "ULT3580-TD5".into(), serial: self.serial.clone() }
    }
}

struct NullStream;

#[async_trait]
impl TapeStream for NullStream {
    async fn write_at(&self, _offset: u64, _data: Bytes) -> Result<(), TapeStoreError> {
        Ok(())
    }
    async fn read_at(&self, _offset: u64, len: usize) -> Result<Bytes, TapeStoreError> {
        Ok(Bytes::from(vec![0; len]))
    }
    async fn commit(&self, _index: &TapeIndex) -> Result<(), TapeStoreError> {
        Ok(())
    }
    async fn discard_from(&self, _offset: u64) -> Result<(), TapeStoreError> {
        Ok(())
    }
}

/// The gateway's side, recording every call.
#[derive(Default)]
struct FakeLibrary {
    opened: Mutex<Vec<String>>,
    released: Mutex<Vec<String>>,
    exported: Mutex<Vec<String>>,
    /// Every saved map, as JSON (what the gateway would write).
    saved: Mutex<Vec<String>>,
    fail_open: AtomicBool,
    fail_save: AtomicBool,
}

impl FakeLibrary {
    fn last_saved(&self) -> ElementMap {
        let saved = self.saved.lock().unwrap();
        serde_json::from_str(saved.last().expect("nothing saved")).unwrap()
    }
    fn saves(&self) -> usize {
        self.saved.lock().unwrap().len()
    }
}

#[async_trait]
impl MediaLibrary for FakeLibrary {
    async fn open(&self, barcode: &str) -> Result<LoadedMedium, TapeStoreError> {
        if self.fail_open.load(Ordering::SeqCst) {
            return Err(TapeStoreError::Unavailable("offline".into()));
        }
        self.opened.lock().unwrap().push(barcode.into());
        Ok(LoadedMedium {
            barcode: barcode.into(),
            capacity: 1 << 30,
            write_protected: false,
            worm: false,
            index: TapeIndex::default(),
            stream: Arc::new(NullStream),
        })
    }
    async fn release(&self, barcode: &str) -> Result<(), TapeStoreError> {
        self.released.lock().unwrap().push(barcode.into());
        Ok(())
    }
    async fn save_elements(&self, state: &ElementMap) -> Result<(), TapeStoreError> {
        if self.fail_save.load(Ordering::SeqCst) {
            return Err(TapeStoreError::Io("disk full".into()));
        }
        self.saved.lock().unwrap().push(serde_json::to_string(state).unwrap());
        Ok(())
    }
    async fn exported(&self, barcode: &str) {
        self.exported.lock().unwrap().push(barcode.into());
    }
}

// ---- Rig ----

fn nexus(id: u64) -> Arc<ItNexus> {
    Arc::new(ItNexus::without_transport(id, "iqn.test:changer"))
}

/// STK plan with a small library: transport 1, mail slots 10-11, drives
/// 500-501, storage slots 1000-1003.
fn small_layout() -> Layout {
    Layout::new(Personality::StkL700, ElementCounts { drives: 2, storage: 4, import_export: 2 }).unwrap()
}

struct Rig {
    changer: MediaChanger,
    drives: Vec<Arc<FakeDrive>>,
    media: Arc<FakeLibrary>,
    n1: Arc<ItNexus>,
}

impl Rig {
    async fn with(layout: Layout, map: ElementMap) -> Rig {
        let personality = layout.personality();
        // Serials of two lengths, so that DVCID padding shows.
        let serial = |i: u16| if i.is_multiple_of(2) { format!("SN{i:04}") } else { format!("SN{i:02}") };
        let drives: Vec<Arc<FakeDrive>> = (0..layout.counts().drives).map(|i| FakeDrive::new(&serial(i))).collect();
        Rig::with_drives(layout, map, drives, personality).await
    }

    async fn with_drives(layout: Layout, map: ElementMap, drives: Vec<Arc<FakeDrive>>, p: Personality) -> Rig {
        let media = Arc::new(FakeLibrary::default());
        let dyn_drives = drives.iter().map(|d| d.clone() as Arc<dyn DataTransferElement>).collect();
        let identity = p.identity("CHG0001".into(), 0x1234, "0100".into());
        let changer = MediaChanger::new(identity, layout, dyn_drives, media.clone(), map).await.unwrap();
        let rig = Rig { changer, drives, media, n1: nexus(1) };
        rig.clear_power_on(&rig.n1).await;
        rig
    }

    /// The small library with A1 in slot 1000 and B2 in slot 1001, both
    /// imported through mail slot 10.
    async fn stocked() -> Rig {
        let layout = small_layout();
        let mut map = ElementMap::new();
        for (barcode, slot) in [("A1", 1000), ("B2", 1001)] {
            let at = map.insert_import(&layout, barcode).unwrap();
            map.move_medium(&layout, at, slot).unwrap();
        }
        Rig::with(layout, map).await
    }

    async fn clear_power_on(&self, n: &Arc<ItNexus>) {
        let r = self.exec_as(n, &[0x00, 0, 0, 0, 0, 0]).await;
        assert_eq!(r.sense, Some(Sense::POWER_ON_RESET));
    }

    async fn exec_as(&self, n: &Arc<ItNexus>, cdb: &[u8]) -> ScsiResponse {
        let req = ScsiRequest { nexus: n.clone(), lun: 0, cdb: Bytes::copy_from_slice(cdb), data_out: Bytes::new(), data_out_checksums: None };
        self.changer.execute(req).await
    }

    async fn exec(&self, cdb: &[u8]) -> ScsiResponse {
        self.exec_as(&self.n1, cdb).await
    }

    async fn exec_out(&self, cdb: &[u8], data_out: &[u8]) -> ScsiResponse {
        let req = ScsiRequest {
            nexus: self.n1.clone(),
            lun: 0,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data_out),
            data_out_checksums: None,
        };
        self.changer.execute(req).await
    }

    async fn good(&self, cdb: &[u8]) -> Bytes {
        let r = self.exec(cdb).await;
        assert_eq!(r.status, ScsiStatus::Good, "{cdb:02x?}: {:?}", r.sense);
        r.data_in
    }

    async fn move_medium(&self, source: u16, destination: u16) -> ScsiResponse {
        self.exec(&move_cdb(1, source, destination)).await
    }
}

fn move_cdb(transport: u16, source: u16, destination: u16) -> [u8; 12] {
    let [t0, t1] = transport.to_be_bytes();
    let [s0, s1] = source.to_be_bytes();
    let [d0, d1] = destination.to_be_bytes();
    [0xA5, 0, t0, t1, s0, s1, d0, d1, 0, 0, 0, 0]
}

fn exchange_cdb(source: u16, first: u16, second: u16) -> [u8; 12] {
    let [s0, s1] = source.to_be_bytes();
    let [f0, f1] = first.to_be_bytes();
    let [e0, e1] = second.to_be_bytes();
    [0xA6, 0, 0, 0, s0, s1, f0, f1, e0, e1, 0, 0]
}

/// READ ELEMENT STATUS: type, VOLTAG, DVCID, start, count, allocation.
fn res_cdb(ty: u8, voltag: bool, dvcid: bool, start: u16, count: u16, alloc: u32) -> [u8; 12] {
    let [s0, s1] = start.to_be_bytes();
    let [c0, c1] = count.to_be_bytes();
    let [_, a0, a1, a2] = alloc.to_be_bytes();
    [0xB8, (voltag as u8) << 4 | ty, s0, s1, c0, c1, dvcid as u8, a0, a1, a2, 0, 0]
}

fn check(r: &ScsiResponse, key: SenseKey, asc: u8, ascq: u8) {
    assert_eq!(r.status, ScsiStatus::CheckCondition, "{r:?}");
    let s = r.sense.as_ref().unwrap();
    assert_eq!((s.key, s.asc, s.ascq), (key, asc, ascq), "{s:?}");
}

fn pointer(r: &ScsiResponse) -> Option<FieldPointer> {
    r.sense.as_ref().and_then(|s| s.field)
}

fn cdb_byte(byte: u16) -> Option<FieldPointer> {
    Some(FieldPointer { in_cdb: true, byte, bit: None })
}

/// A 36-byte primary volume tag.
fn tag(barcode: &str) -> Vec<u8> {
    let mut t = barcode.as_bytes().to_vec();
    t.resize(32, b' ');
    t.extend_from_slice(&[0; 4]);
    t
}

// ---- Identity and pages ----

#[tokio::test]
async fn inquiry_reports_a_medium_changer_in_each_personality() {
    for (p, vendor, product) in [
        (Personality::AwsGatewayVtl, b"AWS     ", b"Gateway-VTL     "),
        (Personality::StkL700, b"STK     ", b"L700            "),
    ] {
        let layout = Layout::new(p, ElementCounts { drives: 1, storage: 2, import_export: 1 }).unwrap();
        let rig = Rig::with(layout, ElementMap::new()).await;
        let d = rig.good(&[0x12, 0, 0, 0, 96, 0]).await;
        assert_eq!(d[0], 0x08, "peripheral device type: medium changer");
        assert_eq!(&d[8..16], vendor);
        assert_eq!(&d[16..32], product);
        assert_eq!(&d[32..36], b"0100");
        assert!(d[58..74].chunks(2).any(|v| v == [0x04, 0x80]), "SMC-3 version descriptor");
        let serial = rig.good(&[0x12, 1, 0x80, 0, 64, 0]).await;
        assert_eq!(&serial[..], &[&[0x08, 0x80, 0, 7][..], b"CHG0001"].concat());
        let ids = rig.good(&[0x12, 1, 0x83, 0, 255, 0]).await;
        assert_eq!(&ids[..2], &[0x08, 0x83]);
        assert_eq!(&ids[4..8], &[0x01, 0x03, 0x00, 16], "NAA designator first");
        let pages = rig.good(&[0x12, 1, 0x00, 0, 64, 0]).await;
        assert_eq!(&pages[..], &[0x08, 0, 0, 3, 0x00, 0x80, 0x83]);
    }
}

#[tokio::test]
async fn mode_sense_reports_the_element_pages() {
    let rig = Rig::stocked().await;
    // As mtx asks: MODE SENSE(6), DBD, page 1Dh, 136 bytes.
    let d = rig.good(&[0x1A, 0x08, 0x1D, 0, 136, 0]).await;
    assert_eq!(&d[..4], &[3 + 20, 0, 0, 0]);
    let page = &d[4 + d[3] as usize..];
    assert_eq!(page, &[0x1D, 0x12, 0, 1, 0, 1, 0x03, 0xE8, 0, 4, 0, 10, 0, 2, 0x01, 0xF4, 0, 2, 0, 0]);
    let geometry = rig.good(&[0x1A, 0x08, 0x1E, 0, 255, 0]).await;
    assert_eq!(&geometry[4..], &[0x1E, 0x02, 0, 0]);
    let caps = rig.good(&[0x5A, 0x08, 0x1F, 0, 0, 0, 0, 0, 255, 0]).await;
    assert_eq!(&caps[..8], &[0, 6 + 20, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&caps[8..16], &[0x1F, 0x12, 0x0E, 0, 0, 0x0E, 0x0E, 0x0E]);
    let all = rig.good(&[0x1A, 0x08, 0x3F, 0, 255, 0]).await;
    let mut codes = Vec::new();
    let mut at = 4;
    while at < all.len() {
        codes.push(all[at] & 0x3F);
        at += all[at + 1] as usize + 2;
    }
    assert_eq!(codes, vec![0x0A, 0x1D, 0x1E, 0x1F]);
    let unknown = rig.exec(&[0x1A, 0x08, 0x1C, 0, 255, 0]).await;
    check(&unknown, SenseKey::IllegalRequest, 0x24, 0x00);
}

#[tokio::test]
async fn mode_select_may_restate_the_layout_but_not_change_it() {
    let rig = Rig::stocked().await;
    let sensed = rig.good(&[0x1A, 0x08, 0x1D, 0, 255, 0]).await;
    let mut list = vec![0, 0, 0, 0];
    list.extend_from_slice(&sensed[4..]);
    let r = rig.exec_out(&[0x15, 0x10, 0, 0, list.len() as u8, 0], &list).await;
    assert_eq!(r.status, ScsiStatus::Good, "{:?}", r.sense);
    list[4 + 9] = 5; // storage count
    let r = rig.exec_out(&[0x15, 0x10, 0, 0, list.len() as u8, 0], &list).await;
    check(&r, SenseKey::IllegalRequest, 0x26, 0x00);
    assert_eq!(pointer(&r), Some(FieldPointer { in_cdb: false, byte: 13, bit: None }));
}

#[tokio::test]
async fn log_sense_supported_pages_and_tape_alert() {
    let rig = Rig::stocked().await;
    assert_eq!(&rig.good(&[0x4D, 0, 0x40, 0, 0, 0, 0, 0, 255, 0]).await[..], &[0, 0, 0, 2, 0x00, 0x2E]);
    let ta = rig.good(&[0x4D, 0, 0x6E, 0, 0, 0, 0, 0x04, 0, 0]).await;
    assert_eq!(&ta[..4], &[0x2E, 0, 0x01, 0x40]);
    assert!(ta[4..].chunks(5).all(|p| p[2..] == [0xC0, 1, 0]), "every flag clear");
    let short = rig.good(&[0x4D, 0, 0x6E, 0, 0, 0, 0, 0, 8, 0]).await;
    assert_eq!(short.len(), 8, "allocation length");
    check(&rig.exec(&[0x4D, 0, 0x6D, 0, 0, 0, 0, 0, 8, 0]).await, SenseKey::IllegalRequest, 0x24, 0x00);
}

#[tokio::test]
async fn report_supported_operation_codes_comes_from_the_table() {
    let rig = Rig::stocked().await;
    let one = rig.good(&[0xA3, 0x0C, 0x01, 0xB8, 0, 0, 0, 0, 0, 64, 0, 0]).await;
    assert_eq!(&one[..4], &[0, 0x03, 0, 12]);
    assert_eq!(&one[4..16], &[0xB8, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0xFF, 0xFF, 0xFF, 0, 0]);
    let all = rig.good(&[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]).await;
    let opcodes: Vec<u8> = all[4..].chunks(8).map(|d| d[0]).collect();
    for op in [0x07, 0x1E, 0x2B, 0x37, 0x4D, 0xA5, 0xA6, 0xB8, 0x12, 0x5E] {
        assert!(opcodes.contains(&op), "{op:02x} missing");
    }
    check(&rig.exec(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]).await, SenseKey::IllegalRequest, 0x20, 0x00);
}

// ---- READ ELEMENT STATUS layouts ----

#[tokio::test]
async fn storage_elements_with_volume_tags_byte_by_byte() {
    let rig = Rig::stocked().await;
    let d = rig.good(&res_cdb(2, true, false, 0, 0xFFFF, 0xFFFF)).await;
    let desc_len = 12 + 36 + 4;
    let body = 8 + 4 * desc_len;
    assert_eq!(&d[..8], &[0x03, 0xE8, 0, 4, 0, 0, 0, body as u8]);
    assert_eq!(&d[8..16], &[0x02, 0x80, 0, desc_len as u8, 0, 0, 0, (4 * desc_len) as u8]);
    let full: Vec<u8> = [&[0x03, 0xE8, 0x09, 0, 0, 0, 0, 0, 0, 0x81, 0, 10][..], &tag("A1"), &[0; 4]].concat();
    assert_eq!(&d[16..16 + desc_len], &full[..]);
    let empty: Vec<u8> = [&[0x03, 0xEA, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], &[0; 36], &[0; 4]].concat();
    assert_eq!(&d[16 + 2 * desc_len..16 + 3 * desc_len], &empty[..]);
    assert_eq!(d.len(), 8 + body);
}

#[tokio::test]
async fn storage_elements_without_volume_tags() {
    let rig = Rig::stocked().await;
    let d = rig.good(&res_cdb(2, false, true, 1001, 2, 0xFFFF)).await;
    assert_eq!(&d[..8], &[0x03, 0xE9, 0, 2, 0, 0, 0, 8 + 32]);
    assert_eq!(&d[8..16], &[0x02, 0x00, 0, 16, 0, 0, 0, 32], "DVCID adds nothing outside drives");
    assert_eq!(&d[16..32], &[0x03, 0xE9, 0x09, 0, 0, 0, 0, 0, 0, 0x81, 0, 10, 0, 0, 0, 0]);
    assert_eq!(&d[32..48], &[0x03, 0xEA, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn medium_transport_element() {
    let rig = Rig::stocked().await;
    let d = rig.good(&res_cdb(1, true, false, 0, 1, 0xFFFF)).await;
    assert_eq!(&d[..8], &[0, 1, 0, 1, 0, 0, 0, 8 + 52]);
    assert_eq!(&d[8..16], &[0x01, 0x80, 0, 52, 0, 0, 0, 52]);
    assert_eq!(&d[16..], &[&[0, 1][..], &[0; 50]].concat()[..]);
}

#[tokio::test]
async fn import_export_elements_report_how_their_tape_got_there() {
    let rig = Rig::stocked().await;
    rig.changer.import_tape("NEW1").await.unwrap();
    rig.exec(&[0x00, 0, 0, 0, 0, 0]).await; // the import's unit attention
    assert_eq!(rig.move_medium(1001, 11).await.status, ScsiStatus::Good);
    let d = rig.good(&res_cdb(3, true, false, 0, 10, 0xFFFF)).await;
    assert_eq!(&d[..8], &[0, 10, 0, 2, 0, 0, 0, 8 + 2 * 52]);
    assert_eq!(&d[8..12], &[0x03, 0x80, 0, 52]);
    // INENAB, EXENAB, ACCESS, IMPEXP (placed by the operator), FULL; no source.
    let imported: Vec<u8> = [&[0, 10, 0x3B, 0, 0, 0, 0, 0, 0, 0x01, 0, 0][..], &tag("NEW1"), &[0; 4]].concat();
    assert_eq!(&d[16..68], &imported[..]);
    // Exported: no ACCESS (the gateway is taking it), not IMPEXP, source 1001.
    let exported: Vec<u8> = [&[0, 11, 0x31, 0, 0, 0, 0, 0, 0, 0x81, 0x03, 0xE9][..], &tag("B2"), &[0; 4]].concat();
    assert_eq!(&d[68..120], &exported[..]);
    rig.changer.remove_exported("B2").await.unwrap();
    rig.exec(&[0x00, 0, 0, 0, 0, 0]).await;
    let d = rig.good(&res_cdb(3, false, false, 11, 1, 0xFFFF)).await;
    assert_eq!(&d[16..], &[0, 11, 0x38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "empty, open to both sides");
}

#[tokio::test]
async fn data_transfer_elements_with_device_identifiers() {
    let rig = Rig::stocked().await;
    assert_eq!(rig.move_medium(1000, 501).await.status, ScsiStatus::Good);
    // Drive serials are "SN0000" and "SN01": padded to one length.
    let d = rig.good(&res_cdb(4, false, true, 0, 10, 0xFFFF)).await;
    let id_len = 24 + 6;
    let desc_len = 12 + 4 + id_len;
    assert_eq!(&d[..8], &[0x01, 0xF4, 0, 2, 0, 0, 0, (8 + 2 * desc_len) as u8]);
    assert_eq!(&d[8..16], &[0x04, 0x00, 0, desc_len as u8, 0, 0, 0, (2 * desc_len) as u8]);
    let first = &d[16..16 + desc_len];
    assert_eq!(&first[..12], &[0x01, 0xF4, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&first[12..16], &[2, 1, 0, id_len as u8], "ASCII, T10 vendor ID");
    assert_eq!(&first[16..], b"IBM     ULT3580-TD5     SN0000");
    let second = &d[16 + desc_len..];
    assert_eq!(&second[..12], &[0x01, 0xF5, 0x09, 0, 0, 0, 0, 0, 0, 0x81, 0x03, 0xE8]);
    assert_eq!(&second[16..], b"IBM     ULT3580-TD5     SN01  ");
    // With volume tags as well: the tag sits before the identifier.
    let d = rig.good(&res_cdb(4, true, true, 501, 1, 0xFFFF)).await;
    assert_eq!(&d[8..12], &[0x04, 0x80, 0, (desc_len + 36) as u8]);
    assert_eq!(&d[16 + 12..16 + 48], &tag("A1")[..]);
    assert_eq!(&d[16 + 48..16 + 52], &[2, 1, 0, id_len as u8]);
    // Without DVCID: four zero bytes in place of the identifier.
    let d = rig.good(&res_cdb(4, false, false, 500, 1, 0xFFFF)).await;
    assert_eq!(&d[8..12], &[0x04, 0x00, 0, 16]);
    assert_eq!(d.len(), 8 + 8 + 16);
}

#[tokio::test]
async fn all_element_types_in_address_order_one_page_per_type() {
    let rig = Rig::stocked().await;
    let d = rig.good(&res_cdb(0, false, false, 0, 0xFFFF, 0xFFFF)).await;
    assert_eq!(&d[..4], &[0, 1, 0, 9], "first address 1, nine elements");
    let mut at = 8;
    let mut pages = Vec::new();
    while at < d.len() {
        let len = u32::from_be_bytes([0, d[at + 5], d[at + 6], d[at + 7]]) as usize;
        let desc_len = u16::from_be_bytes([d[at + 2], d[at + 3]]) as usize;
        let addresses: Vec<u16> =
            d[at + 8..at + 8 + len].chunks(desc_len).map(|e| u16::from_be_bytes([e[0], e[1]])).collect();
        pages.push((d[at], addresses));
        at += 8 + len;
    }
    assert_eq!(pages, vec![(1, vec![1]), (3, vec![10, 11]), (4, vec![500, 501]), (2, vec![1000, 1001, 1002, 1003])]);
    assert_eq!(u32::from_be_bytes([0, d[5], d[6], d[7]]) as usize, d.len() - 8);
    // From the middle, at most three.
    let d = rig.good(&res_cdb(0, false, false, 11, 3, 0xFFFF)).await;
    assert_eq!(&d[..4], &[0, 11, 0, 3]);
    assert_eq!(&d[8..9], &[3]);
    assert_eq!(d[8 + 8 + 16], 4, "second page: data transfer");
}

#[tokio::test]
async fn start_past_the_last_element_is_an_invalid_element_address() {
    let rig = Rig::stocked().await;
    let r = rig.exec(&res_cdb(2, false, false, 1004, 1, 0xFFFF)).await;
    check(&r, SenseKey::IllegalRequest, 0x21, 0x01);
    assert_eq!(pointer(&r), cdb_byte(2));
    // A start below the first storage element reports from it.
    let d = rig.good(&res_cdb(2, false, false, 0, 1, 0xFFFF)).await;
    assert_eq!(&d[..4], &[0x03, 0xE8, 0, 1]);
    // NUMBER OF ELEMENTS zero: no descriptors.
    let d = rig.good(&res_cdb(2, false, false, 0, 0, 0xFFFF)).await;
    assert_eq!(&d[..], &[0; 8]);
    let r = rig.exec(&res_cdb(5, false, false, 0, 1, 0xFFFF)).await;
    check(&r, SenseKey::IllegalRequest, 0x24, 0x00);
    assert_eq!(pointer(&r), Some(FieldPointer { in_cdb: true, byte: 1, bit: Some(3) }));
}

#[tokio::test]
async fn allocation_length_keeps_whole_descriptors_and_full_counts() {
    let rig = Rig::stocked().await;
    let header_only = rig.good(&res_cdb(2, true, false, 0, 0xFFFF, 8)).await;
    assert_eq!(&header_only[..], &[0x03, 0xE8, 0, 4, 0, 0, 0, 8 + 4 * 52], "counts describe the whole report");
    let one_and_a_bit = rig.good(&res_cdb(2, true, false, 0, 0xFFFF, 8 + 8 + 52 + 30)).await;
    assert_eq!(one_and_a_bit.len(), 8 + 8 + 52, "only whole descriptors");
    assert_eq!(&one_and_a_bit[..8], &header_only[..]);
    let less_than_a_descriptor = rig.good(&res_cdb(2, true, false, 0, 0xFFFF, 8 + 8 + 51)).await;
    assert_eq!(less_than_a_descriptor.len(), 8);
    let partial_header = rig.good(&res_cdb(2, true, false, 0, 0xFFFF, 5)).await;
    assert_eq!(&partial_header[..], &header_only[..5]);
    assert!(rig.good(&res_cdb(2, true, false, 0, 0xFFFF, 0)).await.is_empty());
    // Across pages: the second page's header goes only with a descriptor.
    let d = rig.good(&res_cdb(0, false, false, 0, 0xFFFF, 8 + 8 + 16 + 8 + 15)).await;
    assert_eq!(d.len(), 8 + 8 + 16);
}

// ---- MOVE MEDIUM ----

#[tokio::test]
async fn load_and_unload_a_drive() {
    let rig = Rig::stocked().await;
    assert_eq!(rig.move_medium(1000, 500).await.status, ScsiStatus::Good);
    assert_eq!(rig.drives[0].loaded(), Some("A1".into()));
    assert_eq!(*rig.media.opened.lock().unwrap(), vec!["A1".to_string()]);
    let map = rig.changer.elements().await;
    assert_eq!(map.locate("A1"), Some(500));
    assert_eq!(map.get(500).and_then(|c| c.source), Some(1000));
    assert_eq!(rig.media.last_saved(), map, "saved after the move");

    // mtx unload: back to the source slot.
    assert_eq!(rig.move_medium(500, 1000).await.status, ScsiStatus::Good);
    assert_eq!(rig.drives[0].loaded(), None);
    assert_eq!(*rig.media.released.lock().unwrap(), vec!["A1".to_string()]);
    assert_eq!(rig.media.last_saved().locate("A1"), Some(1000));
    assert!(rig.media.exported.lock().unwrap().is_empty());

    // Drive to drive.
    rig.move_medium(1001, 500).await;
    assert_eq!(rig.move_medium(500, 501).await.status, ScsiStatus::Good);
    assert_eq!((rig.drives[0].loaded(), rig.drives[1].loaded()), (None, Some("B2".into())));
}

#[tokio::test]
async fn move_medium_errors_carry_smc_sense() {
    let rig = Rig::stocked().await;
    let saves = rig.media.saves();
    check(&rig.move_medium(1002, 500).await, SenseKey::IllegalRequest, 0x3B, 0x0E);
    check(&rig.move_medium(1000, 1001).await, SenseKey::IllegalRequest, 0x3B, 0x0D);
    for (cdb, byte) in [(move_cdb(1, 999, 500), 4), (move_cdb(1, 1000, 502), 6), (move_cdb(7, 1000, 500), 2)] {
        let r = rig.exec(&cdb).await;
        check(&r, SenseKey::IllegalRequest, 0x21, 0x01);
        assert_eq!(pointer(&r), cdb_byte(byte));
    }
    let mut invert = move_cdb(1, 1000, 500);
    invert[10] = 1;
    let r = rig.exec(&invert).await;
    check(&r, SenseKey::IllegalRequest, 0x24, 0x00);
    assert_eq!(pointer(&r), Some(FieldPointer { in_cdb: true, byte: 10, bit: Some(0) }));
    assert_eq!(rig.media.saves(), saves, "nothing changed, nothing saved");
    // Transport 0 is the default transport; a tape onto itself is a no-op.
    assert_eq!(rig.exec(&move_cdb(0, 1000, 1000)).await.status, ScsiStatus::Good);
    assert_eq!(rig.exec(&move_cdb(0, 1000, 1002)).await.status, ScsiStatus::Good);
    assert_eq!(rig.changer.elements().await.locate("A1"), Some(1002));
}

#[tokio::test]
async fn a_drive_that_prevents_removal_keeps_its_tape() {
    let rig = Rig::stocked().await;
    rig.move_medium(1000, 500).await;
    rig.drives[0].prevent.store(true, Ordering::SeqCst);
    let r = rig.move_medium(500, 1000).await;
    check(&r, SenseKey::IllegalRequest, 0x53, 0x02);
    assert_eq!(rig.changer.elements().await.locate("A1"), Some(500));
    assert!(rig.media.released.lock().unwrap().is_empty());
}

#[tokio::test]
async fn failed_loads_leave_the_tape_where_it_was() {
    let rig = Rig::stocked().await;
    rig.media.fail_open.store(true, Ordering::SeqCst);
    check(&rig.move_medium(1000, 500).await, SenseKey::MediumError, 0x53, 0x00);
    assert_eq!(rig.changer.elements().await.locate("A1"), Some(1000));
    rig.media.fail_open.store(false, Ordering::SeqCst);

    rig.drives[0].refuse_loads.store(true, Ordering::SeqCst);
    check(&rig.move_medium(1000, 500).await, SenseKey::HardwareError, 0x44, 0x00);
    assert_eq!(*rig.media.released.lock().unwrap(), vec!["A1".to_string()], "opened, then given back");
    assert_eq!(rig.changer.elements().await.locate("A1"), Some(1000));

    // Drive to drive whose load fails: the tape goes back to its drive.
    rig.move_medium(1001, 501).await;
    check(&rig.move_medium(501, 500).await, SenseKey::HardwareError, 0x44, 0x00);
    assert_eq!(rig.drives[1].loaded(), Some("B2".into()));
    assert_eq!(rig.changer.elements().await.locate("B2"), Some(501));
}

#[tokio::test]
async fn a_failed_save_does_not_undo_a_move() {
    let rig = Rig::stocked().await;
    rig.media.fail_save.store(true, Ordering::SeqCst);
    assert_eq!(rig.move_medium(1000, 500).await.status, ScsiStatus::Good);
    assert_eq!(rig.changer.elements().await.locate("A1"), Some(500));
    assert!(matches!(rig.changer.import_tape("N9").await, Err(LibraryError::Save(_))));
    assert_eq!(rig.changer.elements().await.locate("N9"), None, "a gateway change that cannot be saved is undone");
}

#[tokio::test]
async fn concurrent_moves_run_one_at_a_time() {
    let rig = Rig::stocked().await;
    let n2 = nexus(2);
    rig.clear_power_on(&n2).await;
    let (first, second) = (move_cdb(1, 1000, 500), move_cdb(1, 1001, 500));
    let (a, b) = tokio::join!(rig.exec(&first), rig.exec_as(&n2, &second));
    let mut statuses = [a.status, b.status];
    statuses.sort_by_key(|s| *s as u8);
    assert_eq!(statuses, [ScsiStatus::Good, ScsiStatus::CheckCondition]);
    let loser = if a.status == ScsiStatus::Good { b } else { a };
    check(&loser, SenseKey::IllegalRequest, 0x3B, 0x0D);
    assert_eq!(rig.media.opened.lock().unwrap().len(), 1);
}

// ---- Export, import, removal ----

#[tokio::test]
async fn moving_into_a_mail_slot_exports_the_tape() {
    let rig = Rig::stocked().await;
    rig.move_medium(1000, 500).await;
    assert_eq!(rig.move_medium(500, 11).await.status, ScsiStatus::Good);
    assert_eq!(*rig.media.exported.lock().unwrap(), vec!["A1".to_string()]);
    assert_eq!(*rig.media.released.lock().unwrap(), vec!["A1".to_string()], "unloaded before export");
    let saved = rig.media.last_saved();
    assert_eq!(saved.get(11).and_then(|c| c.mail), Some(MailSlotState::Exported));
    assert_eq!(saved.awaiting_removal().collect::<Vec<_>>(), vec![(11, "A1")]);
    // The application cannot take it back: the slot is open to the gateway.
    check(&rig.move_medium(11, 1000).await, SenseKey::NotReady, 0x3A, 0x02);

    let n2 = nexus(2);
    rig.clear_power_on(&n2).await;
    assert_eq!(rig.changer.remove_exported("A1").await.unwrap(), 11);
    for n in [&rig.n1, &n2] {
        let r = rig.exec_as(n, &[0x00, 0, 0, 0, 0, 0]).await;
        check(&r, SenseKey::UnitAttention, 0x28, 0x01);
        assert_eq!(rig.exec_as(n, &[0x00, 0, 0, 0, 0, 0]).await.status, ScsiStatus::Good);
    }
    assert_eq!(rig.media.last_saved().locate("A1"), None);
    assert!(matches!(
        rig.changer.remove_exported("B2").await,
        Err(LibraryError::Element(ElementError::NotInImportExport { .. }))
    ));
}

#[tokio::test]
async fn exchange_medium_between_slots_and_its_limits() {
    let rig = Rig::stocked().await;
    assert_eq!(rig.exec(&exchange_cdb(1000, 1001, 1000)).await.status, ScsiStatus::Good);
    let map = rig.changer.elements().await;
    assert_eq!((map.locate("A1"), map.locate("B2")), (Some(1001), Some(1000)));
    assert_eq!(rig.media.last_saved(), map);
    let r = rig.exec(&exchange_cdb(1000, 500, 1000)).await;
    check(&r, SenseKey::IllegalRequest, 0x21, 0x01);
    assert_eq!(pointer(&r), cdb_byte(6));
    let r = rig.exec(&exchange_cdb(1000, 1001, 999)).await;
    assert_eq!(pointer(&r), cdb_byte(8));
    check(&rig.exec(&exchange_cdb(1000, 1002, 1003)).await, SenseKey::IllegalRequest, 0x3B, 0x0E);
    // Rotating a tape into a mail slot exports it.
    assert_eq!(rig.exec(&exchange_cdb(1000, 1001, 10)).await.status, ScsiStatus::Good);
    assert_eq!(*rig.media.exported.lock().unwrap(), vec!["A1".to_string()]);
}

#[tokio::test]
async fn gateway_import_announces_itself_to_every_session() {
    let rig = Rig::stocked().await;
    let n2 = nexus(2);
    rig.clear_power_on(&n2).await;
    assert_eq!(rig.changer.import_tape("NEW1").await.unwrap(), 10);
    assert_eq!(rig.changer.import_tape("NEW2").await.unwrap(), 11);
    assert!(matches!(
        rig.changer.import_tape("NEW3").await,
        Err(LibraryError::Element(ElementError::NoFreeImportExport))
    ));
    assert!(matches!(
        rig.changer.import_tape("A1").await,
        Err(LibraryError::Element(ElementError::DuplicateBarcode(_)))
    ));
    // INQUIRY does not consume the unit attention; READ ELEMENT STATUS does.
    assert_eq!(rig.exec_as(&n2, &[0x12, 0, 0, 0, 96, 0]).await.status, ScsiStatus::Good);
    let r = rig.exec_as(&n2, &res_cdb(3, true, false, 0, 2, 0xFFFF)).await;
    check(&r, SenseKey::UnitAttention, 0x28, 0x01);
    assert_eq!(rig.exec_as(&n2, &res_cdb(3, true, false, 0, 2, 0xFFFF)).await.status, ScsiStatus::Good);
    let saved = rig.media.last_saved();
    assert_eq!(saved.get(10).map(|c| c.barcode.as_str()), Some("NEW1"));
    // REQUEST SENSE hands the unit attention over as data.
    let sense = rig.good(&[0x03, 0, 0, 0, 18, 0]).await;
    assert_eq!((sense[2], sense[12], sense[13]), (0x06, 0x28, 0x01));
    // The application imports it.
    assert_eq!(rig.move_medium(10, 1002).await.status, ScsiStatus::Good);
    assert_eq!(rig.changer.elements().await.get(1002).map(|c| (c.source, c.mail)), Some((Some(10), None)));
}

#[tokio::test]
async fn prevent_medium_removal_locks_the_mail_slots() {
    let rig = Rig::stocked().await;
    assert!(rig.good(&[0x1E, 0, 0, 0, 1, 0]).await.is_empty());
    assert!(rig.changer.removal_prevented());
    assert!(matches!(rig.changer.import_tape("NEW1").await, Err(LibraryError::RemovalPrevented)));
    // The application's own moves still run.
    assert_eq!(rig.move_medium(1000, 11).await.status, ScsiStatus::Good);
    assert!(matches!(rig.changer.remove_exported("A1").await, Err(LibraryError::RemovalPrevented)));
    rig.good(&[0x1E, 0, 0, 0, 0, 0]).await;
    assert!(!rig.changer.removal_prevented());
    assert_eq!(rig.changer.remove_exported("A1").await.unwrap(), 11);

    // Two sessions: removal stays prevented until both allow it, or go.
    let n2 = nexus(2);
    rig.clear_power_on(&n2).await;
    rig.exec(&[0x00, 0, 0, 0, 0, 0]).await; // the removal's unit attention
    rig.good(&[0x1E, 0, 0, 0, 1, 0]).await;
    rig.exec_as(&n2, &[0x00, 0, 0, 0, 0, 0]).await;
    assert_eq!(rig.exec_as(&n2, &[0x1E, 0, 0, 0, 1, 0]).await.status, ScsiStatus::Good);
    rig.good(&[0x1E, 0, 0, 0, 0, 0]).await;
    assert!(rig.changer.removal_prevented());
    rig.changer.nexus_lost(&n2);
    assert!(!rig.changer.removal_prevented());
    rig.good(&[0x1E, 0, 0, 0, 1, 0]).await;
    rig.changer.reset(ResetKind::LogicalUnit, &rig.n1);
    assert!(!rig.changer.removal_prevented());
    check(&rig.exec(&[0x1E, 0, 0, 0, 3, 0]).await, SenseKey::UnitAttention, 0x29, 0x03);
    check(&rig.exec(&[0x1E, 0, 0, 0, 3, 0]).await, SenseKey::IllegalRequest, 0x24, 0x00);
}

// ---- Other commands ----

#[tokio::test]
async fn initialize_and_position_commands() {
    let rig = Rig::stocked().await;
    rig.good(&[0x07, 0, 0, 0, 0, 0]).await;
    rig.good(&[0x37, 0x01, 0x03, 0xE8, 0, 0, 0, 4, 0, 0]).await;
    rig.good(&[0x37, 0x02, 0xFF, 0xFF, 0, 0, 0, 4, 0, 0]).await;
    let r = rig.exec(&[0x37, 0x01, 0xFF, 0xFF, 0, 0, 0, 4, 0, 0]).await;
    check(&r, SenseKey::IllegalRequest, 0x21, 0x01);
    assert_eq!(pointer(&r), cdb_byte(2));
    rig.good(&[0x2B, 0, 0, 1, 0x01, 0xF4, 0, 0, 0, 0]).await;
    let r = rig.exec(&[0x2B, 0, 0, 1, 0x01, 0xF3, 0, 0, 0, 0]).await;
    assert_eq!(pointer(&r), cdb_byte(4));
    let r = rig.exec(&[0x2B, 0, 0, 2, 0x01, 0xF4, 0, 0, 0, 0]).await;
    assert_eq!(pointer(&r), cdb_byte(2));
}

#[tokio::test]
async fn reservations_fence_other_sessions() {
    let rig = Rig::stocked().await;
    let n2 = nexus(2);
    rig.clear_power_on(&n2).await;
    rig.good(&[0x16, 0, 0, 0, 0, 0]).await;
    assert_eq!(rig.exec_as(&n2, &move_cdb(1, 1000, 500)).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(rig.exec_as(&n2, &res_cdb(2, false, false, 0, 1, 255)).await.status, ScsiStatus::ReservationConflict);
    assert_eq!(rig.exec_as(&n2, &[0x12, 0, 0, 0, 96, 0]).await.status, ScsiStatus::Good);
    assert_eq!(rig.move_medium(1000, 500).await.status, ScsiStatus::Good);
    rig.good(&[0x17, 0, 0, 0, 0, 0]).await;
    assert_eq!(rig.exec_as(&n2, &move_cdb(1, 500, 1000)).await.status, ScsiStatus::Good);
}

// ---- Construction and persistence ----

#[tokio::test]
async fn a_saved_map_restores_the_library_and_reloads_drives() {
    let rig = Rig::stocked().await;
    rig.move_medium(1000, 501).await;
    rig.changer.import_tape("NEW1").await.unwrap();
    rig.move_medium(1001, 11).await;
    let json = rig.media.saved.lock().unwrap().last().cloned().unwrap();
    let restored: ElementMap = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, rig.changer.elements().await);

    let again = Rig::with(small_layout(), restored.clone()).await;
    assert_eq!(again.changer.elements().await, restored);
    assert_eq!(again.drives[1].loaded(), Some("A1".into()), "the tape is back in its drive");
    assert_eq!(*again.media.opened.lock().unwrap(), vec!["A1".to_string()]);
    assert_eq!(again.media.saves(), 0, "nothing changed");
}

#[tokio::test]
async fn a_tape_that_cannot_be_reloaded_goes_home() {
    let layout = small_layout();
    let mut map = ElementMap::new();
    let at = map.insert_import(&layout, "A1").unwrap();
    map.move_medium(&layout, at, 1002).unwrap();
    map.move_medium(&layout, 1002, 500).unwrap();
    let drives = vec![FakeDrive::new("D0"), FakeDrive::new("D1")];
    drives[0].refuse_loads.store(true, Ordering::SeqCst);
    let rig = Rig::with_drives(layout, map, drives, Personality::StkL700).await;
    assert_eq!(rig.changer.elements().await.locate("A1"), Some(1002));
    assert_eq!(rig.media.last_saved().locate("A1"), Some(1002));
}

#[tokio::test]
async fn construction_checks_drives_and_map() {
    let media: Arc<dyn MediaLibrary> = Arc::new(FakeLibrary::default());
    let identity = Personality::StkL700.identity("S".into(), 1, "0100".into());
    let one_drive: Vec<Arc<dyn DataTransferElement>> = vec![FakeDrive::new("D0")];
    let r = MediaChanger::new(identity.clone(), small_layout(), one_drive, media.clone(), ElementMap::new()).await;
    assert!(matches!(r, Err(LibraryError::DriveCount { layout: 2, given: 1 })));
    let bad: ElementMap = serde_json::from_str(r#"{"occupied":{"2000":{"barcode":"X"}}}"#).unwrap();
    let drives: Vec<Arc<dyn DataTransferElement>> = vec![FakeDrive::new("D0"), FakeDrive::new("D1")];
    let r = MediaChanger::new(identity, small_layout(), drives, media, bad).await;
    assert!(matches!(r, Err(LibraryError::Element(ElementError::UnknownElement { address: 2000, .. }))));
}

#[tokio::test]
async fn aws_defaults_make_a_full_size_library() {
    let p = Personality::AwsGatewayVtl;
    let rig = Rig::with(Layout::new(p, p.default_counts()).unwrap(), ElementMap::new()).await;
    let d = rig.good(&[0x1A, 0x08, 0x1D, 0, 255, 0]).await;
    assert_eq!(&d[4..], &[0x1D, 0x12, 0, 1, 0, 1, 0x10, 0, 0x06, 0x40, 0x40, 0, 0x06, 0x40, 0x01, 0, 0, 10, 0, 0]);
    // The whole library with volume tags, as mtx status asks for it.
    let d = rig.good(&res_cdb(0, true, false, 0, 0xFFFF, 0xFF_FFFF)).await;
    assert_eq!(&d[2..4], &(1 + 10 + 3200u16).to_be_bytes());
    assert_eq!(d.len(), 8 + 4 * 8 + 3211 * 52);
}

// ---- Robustness ----

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
    #[test]
    fn no_cdb_panics(
        op in proptest::sample::select(vec![0x00u8, 0x03, 0x07, 0x12, 0x15, 0x1A, 0x1E, 0x2B, 0x37, 0x4D, 0x5A, 0xA3, 0xA5, 0xA6, 0xB8, 0xFF]),
        rest in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let rig = Rig::stocked().await;
            let mut cdb = vec![op];
            cdb.extend_from_slice(&rest);
            let r = rig.exec(&cdb).await;
            assert_eq!(r.sense.is_some(), r.status == ScsiStatus::CheckCondition);
            rig.changer.elements().await.validate(rig.changer.layout()).unwrap();
        });
    }
}
