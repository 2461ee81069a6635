//! The SPC-4 core every device type embeds: identity and INQUIRY, REPORT
//! LUNS, REQUEST SENSE, the mode page framework, unit attentions per I_T
//! nexus, RESERVE/RELEASE and persistent reservations.
//!
//! A device type (disk, tape, changer) owns an [`SpcCore`], describes itself
//! through [`SpcDevice`], and routes [`SpcCommand`]s to
//! [`SpcCore::execute`]. Before running any command it asks
//! [`SpcCore::take_unit_attention`] for a pending unit attention and, once the
//! CDB is typed, [`SpcCore::reservation_conflict`] for its access class.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};

use super::cdb::{PageControl, SpcCommand};
use super::lu::{ItNexus, ResetKind, ScsiRequest, ScsiResponse, ScsiStatus};
use super::opcodes::{Access, Features, OpDesc, OpcodeTable};
use super::lu::UnitStateStore;
use super::pr::{PersistentReservations, PrError, PrUnitAttention, SavedReservations, ISCSI_PROTOCOL_ID};
use super::sense::Sense;

/// SCSI peripheral device types this project emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Disk = 0x00,
    Tape = 0x01,
    MediumChanger = 0x08,
}

/// Who a logical unit says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// T10 vendor identification, at most 8 ASCII characters ("SGW").
    pub vendor: String,
    /// Product identification, at most 16 ASCII characters.
    pub product: String,
    /// Product revision level, at most 4 ASCII characters.
    pub revision: String,
    /// Unit serial number (VPD page 0x80).
    pub serial: String,
    /// The 64-bit identifier that, under the project's company ID, forms the
    /// NAA-6 logical unit name (VPD page 0x83). The caller derives it so that
    /// it is stable and unique per logical unit.
    pub naa_id: u64,
    /// Hardware-style write protection: every write fails with DATA PROTECT.
    pub write_protected: bool,
    /// The medium can be removed (RMB in standard INQUIRY data).
    pub removable: bool,
}

/// IEEE company ID in our NAA designators. 0x000000 is not assigned to
/// anyone; change it here if the project registers an OUI.
const COMPANY_ID: u32 = 0x00_00_00;

impl DeviceIdentity {
    /// The 16-byte NAA IEEE Registered Extended designator (NAA 6): the
    /// company ID, a zero vendor-specific identifier and `naa_id` as the
    /// extension.
    pub fn naa6(&self) -> [u8; 16] {
        let mut d = [0u8; 16];
        let head: u64 = 0x6 << 60 | (COMPANY_ID as u64) << 36;
        d[..8].copy_from_slice(&head.to_be_bytes());
        d[8..].copy_from_slice(&self.naa_id.to_be_bytes());
        d
    }
}

/// A mode page as MODE SENSE returns it, with its changeable mask and
/// default values (SPC-4 7.5). Byte 0 is the page code, byte 1 the length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModePage {
    pub current: Vec<u8>,
    pub changeable: Vec<u8>,
    pub default: Vec<u8>,
}

impl ModePage {
    /// A page whose current value starts at its default.
    pub fn new(default: Vec<u8>, changeable: Vec<u8>) -> ModePage {
        ModePage { current: default.clone(), changeable, default }
    }

    pub fn code(&self) -> u8 {
        self.current.first().copied().unwrap_or(0) & 0x3F
    }

    pub fn bit(&self, byte: usize, mask: u8) -> bool {
        self.current.get(byte).is_some_and(|b| b & mask != 0)
    }
}

/// The control mode page (0x0A): SWP changeable, everything else fixed.
fn control_page() -> ModePage {
    // Byte 2: TST 000b, D_SENSE 0. Byte 3: QAM 0001b (unrestricted
    // reordering). Byte 4: SWP changeable. Bytes 8-9: busy timeout
    // unlimited.
    ModePage::new(
        vec![0x0A, 0x0A, 0x00, 0x10, 0x00, 0x00, 0, 0, 0xFF, 0xFF, 0, 0],
        vec![0x0A, 0x0A, 0x00, 0x00, SWP, 0x00, 0, 0, 0, 0, 0, 0],
    )
}

/// SWP, byte 4 of the control page.
const SWP: u8 = 0x08;

/// The block descriptor a device reports in MODE SENSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDescriptor {
    pub density: u8,
    pub blocks: u64,
    pub block_len: u32,
}

/// What a device type contributes to the SPC core's answers.
pub trait SpcDevice: Send + Sync {
    /// Version descriptors after SAM-5, SPC-4 and iSCSI (e.g. SBC-3 0x04C0).
    fn version_descriptors(&self) -> &'static [u16];
    /// Standard INQUIRY byte 5 bits the device sets (3PC for a copy manager).
    fn inquiry_byte5(&self) -> u8 {
        0
    }
    /// Device-specific VPD page codes, in ascending order.
    fn vpd_pages(&self) -> &'static [u8];
    /// A device-specific VPD page without its 4-byte header.
    fn vpd_page(&self, page: u8) -> Option<BytesMut>;
    /// The DEVICE-SPECIFIC PARAMETER of the mode parameter header, without
    /// the WP bit the core adds.
    fn mode_device_specific(&self) -> u8;
    /// The block descriptor MODE SENSE returns unless DBD is set.
    fn block_descriptor(&self) -> Option<BlockDescriptor>;
    /// Optional commands this unit has (they appear in its opcode table).
    fn features(&self) -> Features {
        Features::default()
    }
}

#[derive(Debug)]
struct NexusState {
    nexus: Arc<ItNexus>,
    unit_attentions: VecDeque<Sense>,
}

/// Mutable state, under one lock: critical sections are short and never
/// span I/O.
#[derive(Debug)]
struct CoreState {
    nexuses: HashMap<u64, NexusState>,
    /// RESERVE(6)/(10) holder, by nexus id.
    reserved_by: Option<u64>,
    /// Nexuses whose PREVENT MEDIUM REMOVAL is in force.
    preventing: HashSet<u64>,
    pr: PersistentReservations,
    pages: Vec<ModePage>,
}

/// Unit attentions queue at most this many deep per nexus (SAM-5 allows
/// dropping the rest).
const MAX_PENDING_UAS: usize = 16;

/// The shared SPC-4 machinery of one logical unit.
pub struct SpcCore {
    identity: DeviceIdentity,
    device_type: DeviceType,
    state: Mutex<CoreState>,
    /// Where persistent reservations under APTPL go; none: APTPL refused.
    store: Option<Arc<dyn UnitStateStore>>,
}

impl SpcCore {
    /// `device_pages` are the device type's mode pages; the core adds the
    /// control page.
    pub fn new(identity: DeviceIdentity, device_type: DeviceType, mut device_pages: Vec<ModePage>) -> SpcCore {
        device_pages.push(control_page());
        device_pages.sort_by_key(|p| p.code());
        SpcCore {
            identity,
            device_type,
            state: Mutex::new(CoreState {
                nexuses: HashMap::new(),
                reserved_by: None,
                preventing: HashSet::new(),
                pr: PersistentReservations::default(),
                pages: device_pages,
            }),
            store: None,
        }
    }

    /// Persistent reservations under APTPL go to `store`, and start from
    /// what it `saved`.
    pub fn persist_reservations(&mut self, store: Arc<dyn UnitStateStore>, saved: Option<SavedReservations>) {
        self.state.get_mut().unwrap_or_else(|e| e.into_inner()).pr = PersistentReservations::persistable(saved);
        self.store = Some(store);
    }

    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    fn lock(&self) -> MutexGuard<'_, CoreState> {
        // A panic elsewhere cannot leave this state half-updated in a way
        // that matters more than refusing service would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write protection: the identity's flag or the control page's SWP.
    pub fn write_protected(&self) -> bool {
        self.identity.write_protected || self.mode_bit(0x0A, 4, SWP)
    }

    /// Whether an application prevents medium removal through any nexus.
    pub fn removal_prevented(&self) -> bool {
        !self.lock().preventing.is_empty()
    }

    /// A bit of a current mode page value.
    pub fn mode_bit(&self, page: u8, byte: usize, mask: u8) -> bool {
        self.lock().pages.iter().find(|p| p.code() == page).is_some_and(|p| p.bit(byte, mask))
    }

    /// First step of every command: registers a new nexus (with a POWER ON
    /// RESET unit attention) and takes its oldest pending unit attention,
    /// which the command must then fail with. INQUIRY, REPORT LUNS and
    /// REQUEST SENSE neither report nor lose one (SAM-5 5.14); REQUEST SENSE
    /// returns it as data.
    pub fn take_unit_attention(&self, nexus: &Arc<ItNexus>, opcode: u8) -> Option<Sense> {
        let mut st = self.lock();
        let entry = st.nexuses.entry(nexus.id).or_insert_with(|| NexusState {
            nexus: nexus.clone(),
            unit_attentions: VecDeque::from([Sense::POWER_ON_RESET]),
        });
        if matches!(opcode, 0x12 | 0xA0 | 0x03) {
            return None;
        }
        entry.unit_attentions.pop_front()
    }

    /// Whether a command of class `access` from `nexus` conflicts with a
    /// reservation held through another nexus.
    pub fn reservation_conflict(&self, nexus: &ItNexus, access: Access) -> bool {
        let st = self.lock();
        let reserved_elsewhere = st.reserved_by.is_some_and(|id| id != nexus.id);
        let spc2_conflict = reserved_elsewhere && matches!(access, Access::Read | Access::Write);
        spc2_conflict || st.pr.conflicts(nexus, access)
    }

    /// Queue a unit attention for every known nexus (CAPACITY DATA CHANGED,
    /// REPORTED LUNS DATA CHANGED and the like).
    pub fn broadcast_unit_attention(&self, sense: Sense) {
        let mut st = self.lock();
        push_ua(&mut st, |_| true, &sense);
    }

    /// What every command passes before it runs, whatever the device type:
    /// a pending unit attention is reported first, the CDB must be one the
    /// device's table knows, and a reservation held by another nexus must
    /// allow its access class. `Err` is the response to send instead.
    pub fn admit<C>(
        &self,
        req: &ScsiRequest,
        table: &OpcodeTable<C>,
        features: Features,
    ) -> Result<(&'static OpDesc<C>, C), ScsiResponse> {
        let opcode = req.cdb.first().copied().unwrap_or(0xFF);
        if let Some(ua) = self.take_unit_attention(&req.nexus, opcode) {
            return Err(ScsiResponse::check(ua));
        }
        let (desc, cmd) = table.parse(features, &req.cdb).map_err(|sense| {
            tracing::debug!(opcode, ?sense, "refused CDB");
            ScsiResponse::check(sense)
        })?;
        if self.reservation_conflict(&req.nexus, desc.access) {
            return Err(ScsiResponse::status(ScsiStatus::ReservationConflict));
        }
        Ok((desc, cmd))
    }

    /// The last step of every command: parameter data stops at the
    /// allocation length (SPC-4 4.2.5.6; what lies beyond is not transferred
    /// and is no residual), and the data-out length the CDB called for goes
    /// to the transport for write residuals.
    pub fn finish(
        command: &str,
        mut resp: ScsiResponse,
        allocation_length: Option<u32>,
        data_out_len: Option<u64>,
    ) -> ScsiResponse {
        if let Some(sense) = &resp.sense {
            tracing::debug!(command, ?sense, "check condition");
        }
        if let Some(alloc) = allocation_length {
            resp.data_in.truncate(alloc as usize);
        }
        resp.data_out_len = data_out_len;
        resp
    }

    /// Run an SPC command for the device `dev` whose opcode table is `table`.
    pub fn execute<C>(
        &self,
        dev: &dyn SpcDevice,
        req: &ScsiRequest,
        cmd: SpcCommand,
        table: &OpcodeTable<C>,
    ) -> ScsiResponse {
        let result = match cmd {
            SpcCommand::TestUnitReady => Ok(ScsiResponse::good()),
            SpcCommand::Inquiry { evpd, page, .. } => self.inquiry(dev, &req.nexus, evpd, page).map(ScsiResponse::data),
            SpcCommand::RequestSense { desc, .. } => Ok(ScsiResponse::data(self.request_sense(&req.nexus, desc))),
            SpcCommand::ReportLuns { select, .. } => Ok(ScsiResponse::data(self.report_luns(select, req.lun))),
            SpcCommand::ModeSense { ten, dbd, llbaa, pc, page, subpage, .. } => {
                self.mode_sense(dev, ModeSenseArgs { ten, dbd, llbaa, pc, page, subpage }).map(ScsiResponse::data)
            }
            SpcCommand::ModeSelect { ten, param_len, .. } => {
                self.mode_select(dev, &req.nexus, ten, param_len, &req.data_out).map(|()| ScsiResponse::good())
            }
            SpcCommand::Reserve => Ok(self.reserve(&req.nexus)),
            SpcCommand::Release => Ok(self.release(&req.nexus)),
            SpcCommand::PersistentReserveIn { action, .. } => {
                let st = self.lock();
                if st.reserved_by.is_some_and(|id| id != req.nexus.id) {
                    return ScsiResponse::status(ScsiStatus::ReservationConflict);
                }
                Ok(ScsiResponse::data(st.pr.read(action)))
            }
            SpcCommand::PersistentReserveOut { action, scope_type, param_len } => {
                Ok(self.persistent_reserve_out(&req.nexus, action, scope_type, param_len, &req.data_out))
            }
            SpcCommand::ReportSupportedOpcodes { rctd, options, opcode, sa, .. } => table
                .report_supported(dev.features(), rctd, options, opcode, sa)
                .map(|b| ScsiResponse::data(b.freeze())),
            SpcCommand::PreventAllowMediumRemoval { prevent } => {
                let mut st = self.lock();
                if prevent {
                    st.preventing.insert(req.nexus.id);
                } else {
                    st.preventing.remove(&req.nexus.id);
                }
                Ok(ScsiResponse::good())
            }
        };
        result.unwrap_or_else(ScsiResponse::check)
    }

    // ---- INQUIRY ----

    fn inquiry(&self, dev: &dyn SpcDevice, nexus: &ItNexus, evpd: bool, page: u8) -> Result<Bytes, Sense> {
        if !evpd {
            return Ok(self.standard_inquiry(dev));
        }
        let body = match page {
            0x00 => {
                let mut b = BytesMut::new();
                b.put_slice(&[0x00, 0x80, 0x83]);
                b.put_slice(dev.vpd_pages());
                b
            }
            0x80 => {
                let mut b = BytesMut::new();
                b.put_slice(self.identity.serial.as_bytes());
                b
            }
            0x83 => self.device_identification(nexus),
            _ if dev.vpd_pages().contains(&page) => dev.vpd_page(page).ok_or(Sense::invalid_cdb_field(2, None))?,
            _ => return Err(Sense::invalid_cdb_field(2, None)),
        };
        let mut b = BytesMut::with_capacity(4 + body.len());
        b.put_u8(self.device_type as u8);
        b.put_u8(page);
        b.put_u16(body.len() as u16);
        b.put_slice(&body);
        Ok(b.freeze())
    }

    fn standard_inquiry(&self, dev: &dyn SpcDevice) -> Bytes {
        let mut b = BytesMut::with_capacity(96);
        b.put_u8(self.device_type as u8);
        b.put_u8(if self.identity.removable { 0x80 } else { 0 }); // RMB
        b.put_u8(0x06); // SPC-4
        b.put_u8(0x10 | 0x02); // HISUP, response data format 2
        b.put_u8(96 - 5);
        b.put_u8(dev.inquiry_byte5());
        b.put_u8(0);
        b.put_u8(0x02); // CMDQUE
        put_padded(&mut b, &self.identity.vendor, 8);
        put_padded(&mut b, &self.identity.product, 16);
        put_padded(&mut b, &self.identity.revision, 4);
        b.put_bytes(0, 58 - 36);
        // SAM-5, SPC-4, iSCSI, then the device's command set.
        let mut versions = vec![0x00A0u16, 0x0460, 0x0960];
        versions.extend_from_slice(dev.version_descriptors());
        versions.truncate(8);
        for v in &versions {
            b.put_u16(*v);
        }
        b.put_bytes(0, 96 - b.len());
        b.freeze()
    }

    /// VPD 0x83: NAA-6 LU name, relative target port, target port name and
    /// target device name (SPC-4 7.8.6).
    fn device_identification(&self, nexus: &ItNexus) -> BytesMut {
        let mut b = BytesMut::new();
        // Binary code set, association LU, designator type NAA.
        b.put_slice(&[0x01, 0x03, 0x00, 16]);
        b.put_slice(&self.identity.naa6());
        // Binary, PIV, association target port, relative target port.
        b.put_slice(&[ISCSI_PROTOCOL_ID << 4 | 0x01, 0x80 | 0x10 | 0x04, 0x00, 4, 0, 0]);
        b.put_u16(nexus.relative_port);
        let target_name = nexus.target_port.split(",t,").next().unwrap_or(&nexus.target_port);
        // UTF-8, PIV, target port / target device, SCSI name string.
        put_scsi_name(&mut b, 0x80 | 0x10 | 0x08, &nexus.target_port);
        put_scsi_name(&mut b, 0x80 | 0x20 | 0x08, target_name);
        b
    }

    // ---- REQUEST SENSE, REPORT LUNS ----

    fn request_sense(&self, nexus: &Arc<ItNexus>, desc: bool) -> Bytes {
        let mut st = self.lock();
        let sense =
            st.nexuses.get_mut(&nexus.id).and_then(|n| n.unit_attentions.pop_front()).unwrap_or(Sense::NO_SENSE);
        sense.encode(desc)
    }

    /// The transport answers REPORT LUNS for its targets; a unit asked
    /// directly knows only itself. SELECT REPORT 01b asks for well-known
    /// LUNs only: there are none.
    fn report_luns(&self, select: u8, addressed: u64) -> Bytes {
        let luns = if select == 1 { Vec::new() } else { vec![addressed] };
        let mut b = BytesMut::with_capacity(8 + luns.len() * 8);
        b.put_u32(luns.len() as u32 * 8);
        b.put_u32(0);
        for lun in luns {
            b.put_u64(encode_lun(lun));
        }
        b.freeze()
    }

    // ---- Mode pages ----

    fn mode_sense(&self, dev: &dyn SpcDevice, a: ModeSenseArgs) -> Result<Bytes, Sense> {
        if a.pc == PageControl::Saved {
            return Err(Sense::SAVING_PARAMETERS_NOT_SUPPORTED);
        }
        // We have no subpages: subpage 0, or 0xFF with "all pages".
        if a.subpage != 0 && !(a.subpage == 0xFF && a.page == 0x3F) {
            return Err(Sense::invalid_cdb_field(3, None));
        }
        let st = self.lock();
        let pick = |p: &ModePage| match a.pc {
            PageControl::Current | PageControl::Saved => p.current.clone(),
            PageControl::Changeable => p.changeable.clone(),
            PageControl::Default => p.default.clone(),
        };
        let pages: Vec<Vec<u8>> = if a.page == 0x3F {
            st.pages.iter().map(pick).collect()
        } else if a.page == 0 && self.device_type == DeviceType::Tape {
            // SSC: page 0 (vendor specific, no page format) is the header
            // and block descriptor alone; the Linux st driver reads the
            // block length and write protection this way.
            Vec::new()
        } else {
            let p = st.pages.iter().find(|p| p.code() == a.page).ok_or(Sense::invalid_cdb_field(2, Some(5)))?;
            vec![pick(p)]
        };
        drop(st);
        let wp = if self.write_protected() { 0x80 } else { 0 };
        let device_specific = wp | dev.mode_device_specific();
        let descriptor = if a.dbd { None } else { dev.block_descriptor() };
        let long = a.ten && a.llbaa;
        let mut bd = BytesMut::new();
        if let Some(d) = descriptor {
            if long {
                bd.put_u64(d.blocks);
                bd.put_u32(0);
                bd.put_u32(d.block_len);
            } else if self.device_type == DeviceType::Disk {
                // SBC-3 short LBA descriptor: a 4-byte block count.
                bd.put_u32(d.blocks.min(u32::MAX as u64) as u32);
                bd.put_u8(0);
                bd.put_uint(d.block_len as u64, 3);
            } else {
                bd.put_u8(d.density);
                bd.put_uint(d.blocks.min(0xFF_FFFF), 3);
                bd.put_u8(0);
                bd.put_uint(d.block_len as u64, 3);
            }
        }
        let body_len: usize = bd.len() + pages.iter().map(Vec::len).sum::<usize>();
        let mut b = BytesMut::new();
        if a.ten {
            b.put_u16((6 + body_len) as u16);
            b.put_u8(0);
            b.put_u8(device_specific);
            b.put_u8(long as u8);
            b.put_u8(0);
            b.put_u16(bd.len() as u16);
        } else {
            b.put_u8((3 + body_len).min(255) as u8);
            b.put_u8(0);
            b.put_u8(device_specific);
            b.put_u8(bd.len() as u8);
        }
        b.put_slice(&bd);
        for p in pages {
            b.put_slice(&p);
        }
        Ok(b.freeze())
    }

    /// MODE SELECT: every page in the list is validated against its
    /// changeable mask before any is applied.
    fn mode_select(
        &self,
        dev: &dyn SpcDevice,
        nexus: &ItNexus,
        ten: bool,
        param_len: u16,
        data: &[u8],
    ) -> Result<(), Sense> {
        let list = data.get(..param_len as usize).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        let header_len = if ten { 8 } else { 4 };
        if list.is_empty() {
            return Ok(());
        }
        let header = list.get(..header_len).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        let bd_len = if ten { u16::from_be_bytes([header[6], header[7]]) as usize } else { header[3] as usize };
        let bd = list.get(header_len..header_len + bd_len).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
        self.check_block_descriptor(dev, ten && header[4] & 1 != 0, bd, header_len)?;
        let mut st = self.lock();
        let mut pages = st.pages.clone();
        let mut at = header_len + bd_len;
        let mut changed = false;
        while at < list.len() {
            let code = list[at] & 0x3F;
            if list[at] & 0x40 != 0 {
                // Sub-page format: we have no subpages.
                return Err(Sense::invalid_param_field(at as u16, Some(6)));
            }
            let len = *list.get(at + 1).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)? as usize + 2;
            let given = list.get(at..at + len).ok_or(Sense::PARAMETER_LIST_LENGTH_ERROR)?;
            let page =
                pages.iter_mut().find(|p| p.code() == code).ok_or(Sense::invalid_param_field(at as u16, Some(5)))?;
            if len != page.current.len() {
                return Err(Sense::invalid_param_field(at as u16 + 1, None));
            }
            let masks = page.changeable.clone();
            for (i, (cur, &new)) in page.current.iter_mut().zip(given).enumerate().skip(2) {
                let mask = masks.get(i).copied().unwrap_or(0);
                if (new ^ *cur) & !mask != 0 {
                    return Err(Sense::invalid_param_field((at + i) as u16, None));
                }
                changed |= new != *cur;
                *cur = new;
            }
            at += len;
        }
        st.pages = pages;
        if changed {
            push_ua(&mut st, |n| n.id != nexus.id, &Sense::MODE_PARAMETERS_CHANGED);
        }
        Ok(())
    }

    /// A block descriptor in MODE SELECT may restate ours but change nothing.
    fn check_block_descriptor(&self, dev: &dyn SpcDevice, long: bool, bd: &[u8], at: usize) -> Result<(), Sense> {
        if bd.is_empty() {
            return Ok(());
        }
        let ours = dev.block_descriptor();
        let (blocks, block_len) = match (long, bd.len()) {
            (true, 16) => (
                u64::from_be_bytes(bd[..8].try_into().unwrap_or([0; 8])),
                u32::from_be_bytes(bd[12..16].try_into().unwrap_or([0; 4])),
            ),
            (false, 8) if self.device_type == DeviceType::Disk => {
                (u32::from_be_bytes([bd[0], bd[1], bd[2], bd[3]]) as u64, u32::from_be_bytes([0, bd[5], bd[6], bd[7]]))
            }
            (false, 8) => {
                (u32::from_be_bytes([0, bd[1], bd[2], bd[3]]) as u64, u32::from_be_bytes([0, bd[5], bd[6], bd[7]]))
            }
            _ => return Err(Sense::PARAMETER_LIST_LENGTH_ERROR),
        };
        let short_max = if self.device_type == DeviceType::Disk { u32::MAX as u64 } else { 0xFF_FFFF };
        let ok = ours.is_some_and(|d| {
            let blocks_ok = blocks == 0 || blocks == d.blocks || (!long && blocks == d.blocks.min(short_max));
            blocks_ok && (block_len == 0 || block_len == d.block_len)
        });
        if !ok {
            return Err(Sense::invalid_param_field(at as u16, None));
        }
        Ok(())
    }

    // ---- RESERVE / RELEASE (SPC-2 reservations) ----

    fn reserve(&self, nexus: &ItNexus) -> ScsiResponse {
        let mut st = self.lock();
        // RESERVE conflicts with another holder and with persistent
        // reservations (SPC-4 5.9.3).
        if st.reserved_by.is_some_and(|id| id != nexus.id) || st.pr.has_reservation() || st.pr.has_registrations() {
            return ScsiResponse::status(ScsiStatus::ReservationConflict);
        }
        st.reserved_by = Some(nexus.id);
        ScsiResponse::good()
    }

    fn release(&self, nexus: &ItNexus) -> ScsiResponse {
        let mut st = self.lock();
        if st.pr.has_reservation() {
            return ScsiResponse::status(ScsiStatus::ReservationConflict);
        }
        // Releasing someone else's reservation (or none) is a no-op.
        if st.reserved_by == Some(nexus.id) {
            st.reserved_by = None;
        }
        ScsiResponse::good()
    }

    fn persistent_reserve_out(
        &self,
        nexus: &ItNexus,
        action: super::cdb::PrOutAction,
        scope_type: u8,
        param_len: u32,
        data: &[u8],
    ) -> ScsiResponse {
        let mut st = self.lock();
        if st.reserved_by.is_some_and(|id| id != nexus.id) {
            return ScsiResponse::status(ScsiStatus::ReservationConflict);
        }
        // Run on a copy: the change takes effect only once it is saved.
        let mut next = st.pr.clone();
        match next.out(nexus, action, scope_type, param_len, data) {
            Ok(uas) => {
                if let Err(sense) = self.save_reservations(&st.pr, &next) {
                    return ScsiResponse::check(sense);
                }
                st.pr = next;
                for PrUnitAttention { to, sense } in uas {
                    push_ua(&mut st, |n| to.matches(n) && n.id != nexus.id, &sense);
                }
                ScsiResponse::good()
            }
            Err(PrError::Conflict) => ScsiResponse::status(ScsiStatus::ReservationConflict),
            Err(PrError::Check(s)) => ScsiResponse::check(s),
        }
    }

    /// Saves `next` if APTPL is in force for it, or removes the saved state
    /// if APTPL was in force for `previous` only. Under the state lock, so
    /// saves land in command order; PERSISTENT RESERVE OUT is rare enough
    /// that blocking other commands of this unit for one save is cheap.
    fn save_reservations(&self, previous: &PersistentReservations, next: &PersistentReservations) -> Result<(), Sense> {
        let Some(store) = &self.store else { return Ok(()) };
        let result = if next.persists() {
            store.save_reservations(Some(&next.saved()))
        } else if previous.persists() {
            store.save_reservations(None)
        } else {
            return Ok(());
        };
        result.map_err(|e| {
            tracing::warn!(error = %e, "cannot save persistent reservations");
            Sense::INTERNAL_TARGET_FAILURE
        })
    }

    // ---- Task management and nexus life ----

    /// LOGICAL UNIT RESET or target reset: RESERVE(6) and every PREVENT
    /// MEDIUM REMOVAL go, persistent reservations stay (SPC-4 5.9.12,
    /// 6.13), and every nexus, the one that asked included, gets a unit
    /// attention (SAM-5 7.7).
    pub fn reset(&self, kind: ResetKind) {
        let mut st = self.lock();
        st.reserved_by = None;
        st.preventing.clear();
        let ua = match kind {
            ResetKind::LogicalUnit => Sense::BUS_DEVICE_RESET,
            ResetKind::Target => Sense::POWER_ON_RESET,
        };
        push_ua(&mut st, |_| true, &ua);
    }

    /// CLEAR TASK SET aborts other nexuses' commands: tell them.
    pub fn tasks_aborted(&self, by: &ItNexus, all_nexuses: bool) {
        if all_nexuses {
            let mut st = self.lock();
            push_ua(&mut st, |n| n.id != by.id, &Sense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        }
    }

    /// The nexus is gone: forget its unit attentions, its RESERVE(6) and
    /// its PREVENT MEDIUM REMOVAL.
    pub fn nexus_lost(&self, nexus: &ItNexus) {
        let mut st = self.lock();
        st.nexuses.remove(&nexus.id);
        st.preventing.remove(&nexus.id);
        if st.reserved_by == Some(nexus.id) {
            st.reserved_by = None;
        }
    }
}

struct ModeSenseArgs {
    ten: bool,
    dbd: bool,
    llbaa: bool,
    pc: PageControl,
    page: u8,
    subpage: u8,
}

fn push_ua(st: &mut CoreState, to: impl Fn(&ItNexus) -> bool, sense: &Sense) {
    for n in st.nexuses.values_mut() {
        if to(&n.nexus) && n.unit_attentions.len() < MAX_PENDING_UAS && !n.unit_attentions.contains(sense) {
            n.unit_attentions.push_back(sense.clone());
        }
    }
}

/// ASCII, space padded or truncated to `len`.
fn put_padded(b: &mut BytesMut, s: &str, len: usize) {
    let bytes: Vec<u8> = s.bytes().filter(|c| c.is_ascii_graphic() || *c == b' ').take(len).collect();
    b.put_slice(&bytes);
    b.put_bytes(b' ', len - bytes.len());
}

/// A SCSI name string designator: null-terminated, padded to 4 bytes.
fn put_scsi_name(b: &mut BytesMut, assoc_type: u8, name: &str) {
    let len = (name.len() + 1).div_ceil(4) * 4;
    b.put_slice(&[ISCSI_PROTOCOL_ID << 4 | 0x03, assoc_type, 0, len as u8]);
    b.put_slice(name.as_bytes());
    b.put_bytes(0, len - name.len());
}

/// SAM-5 single-level LUN: peripheral addressing below 256, flat above.
pub fn encode_lun(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | (lun & 0x3FFF)) << 48
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use bytes::Bytes;

    pub fn nexus(id: u64) -> Arc<ItNexus> {
        Arc::new(ItNexus::without_transport(id, "iqn.test:t"))
    }

    pub fn request(nexus: &Arc<ItNexus>, cdb: &[u8], data_out: &[u8]) -> ScsiRequest {
        ScsiRequest {
            nexus: nexus.clone(),
            lun: 0,
            cdb: Bytes::copy_from_slice(cdb),
            data_out: Bytes::copy_from_slice(data_out),
            data_out_checksums: None,
        }
    }
}
