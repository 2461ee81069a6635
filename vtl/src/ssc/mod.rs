//! The SSC-3 tape drive: an IBM ULT3580-TD5 (LTO-5) as a [`LogicalUnit`],
//! over the [`TapeStream`](crate::media::TapeStream) of whatever tape the
//! changer put in it ([`DataTransferElement`]).
//!
//! Commands are typed by one opcode table ([`cdb::TAPE_OPCODES`]), SPC
//! commands go to the embedded [`SpcCore`], and the tape commands run
//! against the loaded tape under the drive's state lock: commands on one
//! drive are serial in practice, and the lock keeps position, index and
//! stream in step. Record data is never copied on the way through: a
//! write hands the data-out `Bytes` to the stream, a read returns what the
//! stream returns. The index is committed at filemarks, flushes,
//! repositioning after writes, rewind and unload, never per record.

pub mod cdb;
mod log;
mod motion;
mod pages;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use iscsi_target::scsi::cdb::SpcCommand;
use iscsi_target::scsi::opcodes::Features;
use iscsi_target::scsi::spc::{BlockDescriptor, DeviceIdentity, DeviceType, SpcCore, SpcDevice};
use iscsi_target::scsi::{ItNexus, LogicalUnit, ResetKind, ScsiRequest, ScsiResponse, ScsiStatus, Sense};
use parking_lot::Mutex;

use self::cdb::{SscCommand, TapeCommand, TAPE_FEATURES, TAPE_OPCODES};
use self::log::{Counters, LogSource, TapeAlert, TapeAlerts};
use self::motion::Mounted;
use crate::media::{DataTransferElement, DriveIdentifier, LoadedMedium, TapeStoreError};
use crate::sense;

pub use self::pages::lto5_identity;

/// How a drive behaves beyond its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveConfig {
    /// Early warning sits this many percent of the capacity before its
    /// end...
    pub early_warning_percent: u64,
    /// ...but at least this many bytes before it.
    pub early_warning_min_bytes: u64,
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig { early_warning_percent: 1, early_warning_min_bytes: 16 << 20 }
    }
}

impl DriveConfig {
    /// Stream offset past which writes report early warning.
    pub fn early_warning(&self, capacity: u64) -> u64 {
        let distance = (capacity / 100).saturating_mul(self.early_warning_percent).max(self.early_warning_min_bytes);
        capacity.saturating_sub(distance)
    }
}

/// What MODE SENSE, INQUIRY and the changer read without waiting for a
/// command in progress.
#[derive(Debug, Default)]
struct Shared {
    /// Fixed block length from the mode block descriptor; 0 is variable.
    block_len: u32,
    /// Barcode and write protection of the tape in the drive.
    medium: Option<(String, bool)>,
}

/// Everything that changes as tape commands run.
#[derive(Default)]
struct DriveState {
    mounted: Option<Mounted>,
    counters: Counters,
    alerts: TapeAlerts,
}

/// An LTO-5 tape drive logical unit.
pub struct TapeDrive {
    core: SpcCore,
    config: DriveConfig,
    state: tokio::sync::Mutex<DriveState>,
    shared: Mutex<Shared>,
}

impl TapeDrive {
    /// A drive with no tape in it. `identity` is usually
    /// [`lto5_identity`].
    pub fn new(identity: DeviceIdentity, config: DriveConfig) -> Arc<TapeDrive> {
        Arc::new(TapeDrive {
            core: SpcCore::new(identity, DeviceType::Tape, pages::mode_pages()),
            config,
            state: tokio::sync::Mutex::new(DriveState::default()),
            shared: Mutex::new(Shared::default()),
        })
    }

    pub fn identity(&self) -> &DeviceIdentity {
        self.core.identity()
    }

    /// Commits what was written since the last commit (for a shutdown).
    pub async fn flush(&self) -> Result<(), TapeStoreError> {
        let mut st = self.state.lock().await;
        match st.mounted.as_mut() {
            Some(m) => m.commit().await,
            None => Ok(()),
        }
    }

    fn block_len(&self) -> u32 {
        self.shared.lock().block_len
    }

    /// The tape refuses writes: its own protection, or the control page's
    /// SWP / the identity's flag.
    fn soft_write_protect(&self) -> bool {
        self.core.write_protected()
    }

    async fn spc(&self, req: &ScsiRequest, cmd: SpcCommand) -> ScsiResponse {
        match cmd {
            SpcCommand::TestUnitReady => match self.state.lock().await.mounted.as_ref() {
                Some(m) if m.threaded => ScsiResponse::good(),
                _ => ScsiResponse::check(Sense::MEDIUM_NOT_PRESENT),
            },
            SpcCommand::Inquiry { evpd: true, page: 0x83, .. } => {
                let mut resp = self.core.execute(self, req, cmd, &TAPE_OPCODES);
                if resp.status == ScsiStatus::Good {
                    // LTO drives list the T10 vendor designator first.
                    let first = pages::t10_vendor_designator(self.identity());
                    resp.data_in = pages::with_designator_first(&resp.data_in, &first);
                }
                resp
            }
            SpcCommand::ModeSelect { ten, param_len, .. } => self.mode_select(req, cmd, ten, param_len),
            _ => self.core.execute(self, req, cmd, &TAPE_OPCODES),
        }
    }

    /// MODE SELECT: the block descriptor sets the fixed block length (the
    /// core only accepts descriptors that restate the current one), then
    /// the core applies the pages; if it refuses them the length reverts.
    fn mode_select(&self, req: &ScsiRequest, cmd: SpcCommand, ten: bool, param_len: u16) -> ScsiResponse {
        let list = req.data_out.get(..param_len as usize).unwrap_or(&[]);
        let new_len = match requested_block_len(ten, list) {
            Ok(len) => len,
            Err(sense) => return ScsiResponse::check(sense),
        };
        let old = {
            let mut sh = self.shared.lock();
            let old = sh.block_len;
            if let Some(len) = new_len {
                sh.block_len = len;
            }
            old
        };
        let resp = self.core.execute(self, req, cmd, &TAPE_OPCODES);
        if resp.status != ScsiStatus::Good {
            self.shared.lock().block_len = old;
        }
        resp
    }

    async fn ssc(&self, req: &ScsiRequest, cmd: SscCommand) -> Result<ScsiResponse, Sense> {
        let mut st = self.state.lock().await;
        let st = &mut *st;
        let soft_wp = self.soft_write_protect();
        match cmd {
            SscCommand::Read { fixed, sili, length } => st.read(fixed, sili, length, self.block_len()).await,
            SscCommand::Write { fixed, length } => {
                st.write(&req.data_out, fixed, length, self.block_len(), soft_wp).await
            }
            SscCommand::WriteFilemarks { count } => st.write_filemarks(count, soft_wp).await,
            SscCommand::Space { code, count } => st.space(code, count).await,
            SscCommand::Locate { target } => st.locate(target).await,
            SscCommand::Rewind => st.rewind().await,
            SscCommand::Erase { .. } => st.erase(soft_wp).await,
            SscCommand::LoadUnload { load } => self.load_unload(st, load).await,
            SscCommand::ReadPosition { form, .. } => {
                let p = st.position()?;
                Ok(ScsiResponse::data(match form {
                    cdb::PositionForm::Short => p.short_form(),
                    cdb::PositionForm::Long => p.long_form(),
                    cdb::PositionForm::Extended => p.extended_form(),
                }))
            }
            SscCommand::ReadBlockLimits { mloi } => {
                Ok(ScsiResponse::data(pages::block_limits(mloi, crate::format::MAX_OBJECTS - 1)))
            }
            SscCommand::ReportDensitySupport { media, .. } => {
                if media && st.mounted.is_none() {
                    return Err(Sense::MEDIUM_NOT_PRESENT);
                }
                Ok(ScsiResponse::data(pages::density_support(media)))
            }
            SscCommand::LogSense { page, subpage, pointer, .. } => {
                let source = LogSource {
                    counters: &st.counters,
                    alerts: &mut st.alerts,
                    space: st.mounted.as_ref().map(Mounted::space),
                    compression: self.core.mode_bit(0x0F, 2, pages::DCE),
                };
                log::log_page(page, subpage, pointer, source).map(ScsiResponse::data)
            }
        }
    }

    /// LOAD UNLOAD: unloading commits, rewinds and leaves the tape in the
    /// drive for the changer to take (not ready); loading threads it again.
    async fn load_unload(&self, st: &mut DriveState, load: bool) -> Result<ScsiResponse, Sense> {
        if !load && self.core.removal_prevented() {
            st.alerts.raise(TapeAlert::NoRemoval);
            return Err(Sense::MEDIUM_REMOVAL_PREVENTED);
        }
        let DriveState { mounted, counters, alerts } = st;
        let m = mounted.as_mut().ok_or(Sense::MEDIUM_NOT_PRESENT)?;
        m.commit().await.map_err(|e| motion::write_failed(alerts, counters, e))?;
        m.pos = 0;
        m.threaded = load;
        Ok(ScsiResponse::good())
    }
}

/// The block length a MODE SELECT parameter list's block descriptor asks
/// for, if it has one. Density codes other than "default", "no change" and
/// LTO-5 are refused; malformed lists are left to the core to refuse.
fn requested_block_len(ten: bool, list: &[u8]) -> Result<Option<u32>, Sense> {
    let header_len = if ten { 8 } else { 4 };
    let Some(header) = list.get(..header_len) else { return Ok(None) };
    let (bd_len, long) = if ten {
        (u16::from_be_bytes([header[6], header[7]]) as usize, header[4] & 1 != 0)
    } else {
        (header[3] as usize, false)
    };
    let Some(bd) = list.get(header_len..header_len + bd_len) else { return Ok(None) };
    let len = match (long, bd) {
        (false, [density, _, _, _, _, l0, l1, l2]) => {
            if ![pages::DENSITY_DEFAULT, pages::DENSITY_NO_CHANGE, pages::LTO5_DENSITY].contains(density) {
                return Err(Sense::invalid_param_field(header_len as u16, None));
            }
            u32::from_be_bytes([0, *l0, *l1, *l2])
        }
        (true, [.., l0, l1, l2, l3]) if bd.len() == 16 => u32::from_be_bytes([*l0, *l1, *l2, *l3]),
        _ => return Ok(None),
    };
    if len > pages::MAX_BLOCK_LEN {
        return Err(Sense::invalid_param_field(header_len as u16 + if long { 12 } else { 5 }, None));
    }
    Ok(Some(len))
}

impl SpcDevice for TapeDrive {
    fn version_descriptors(&self) -> &'static [u16] {
        &[0x0400] // SSC-3
    }

    fn vpd_pages(&self) -> &'static [u8] {
        &[0xB0]
    }

    fn vpd_page(&self, page: u8) -> Option<BytesMut> {
        (page == 0xB0).then(pages::device_capabilities)
    }

    /// BUFFERED MODE 1, and WP when the tape is write protected.
    fn mode_device_specific(&self) -> u8 {
        let wp = self.shared.lock().medium.as_ref().is_some_and(|(_, wp)| *wp);
        (wp as u8) << 7 | 0x10
    }

    fn features(&self) -> Features {
        TAPE_FEATURES
    }

    fn block_descriptor(&self) -> Option<BlockDescriptor> {
        let sh = self.shared.lock();
        let density = if sh.medium.is_some() { pages::LTO5_DENSITY } else { 0 };
        Some(BlockDescriptor { density, blocks: 0, block_len: sh.block_len })
    }
}

#[async_trait]
impl LogicalUnit for TapeDrive {
    async fn execute(&self, req: ScsiRequest) -> ScsiResponse {
        let (desc, cmd) = match self.core.admit(&req, &TAPE_OPCODES, TAPE_FEATURES) {
            Ok(admitted) => admitted,
            Err(resp) => return resp,
        };
        let alloc = cmd.allocation_length();
        let data_out_len = cmd.data_out_length(self.block_len());
        let resp = match cmd {
            TapeCommand::Spc(c) => self.spc(&req, c).await,
            TapeCommand::Ssc(c) => self.ssc(&req, c).await.unwrap_or_else(ScsiResponse::check),
        };
        SpcCore::finish(desc.name, resp, alloc, data_out_len)
    }

    fn reset(&self, kind: ResetKind, _by: &ItNexus) {
        self.core.reset(kind);
    }

    fn tasks_aborted(&self, by: &ItNexus, all_nexuses: bool) {
        self.core.tasks_aborted(by, all_nexuses);
    }

    fn nexus_lost(&self, nexus: &ItNexus) {
        self.core.nexus_lost(nexus);
    }
}

#[async_trait]
impl DataTransferElement for TapeDrive {
    async fn load(&self, medium: LoadedMedium) -> Result<(), Sense> {
        let mut st = self.state.lock().await;
        if st.mounted.is_some() {
            return Err(sense::MEDIUM_DESTINATION_FULL);
        }
        let early_warning = self.config.early_warning(medium.capacity);
        self.shared.lock().medium = Some((medium.barcode.clone(), medium.write_protected));
        st.mounted = Some(Mounted::new(medium, early_warning));
        st.counters = Counters::default();
        st.alerts = TapeAlerts::default();
        drop(st);
        self.core.broadcast_unit_attention(sense::MEDIUM_MAY_HAVE_CHANGED);
        Ok(())
    }

    async fn unload(&self) -> Result<String, Sense> {
        let mut st = self.state.lock().await;
        if self.core.removal_prevented() {
            st.alerts.raise(TapeAlert::NoRemoval);
            return Err(Sense::MEDIUM_REMOVAL_PREVENTED);
        }
        let DriveState { mounted, counters, alerts } = &mut *st;
        let m = mounted.as_mut().ok_or(Sense::MEDIUM_NOT_PRESENT)?;
        m.commit().await.map_err(|e| motion::write_failed(alerts, counters, e))?;
        let barcode = m.barcode().to_string();
        *mounted = None;
        self.shared.lock().medium = None;
        Ok(barcode)
    }

    fn loaded(&self) -> Option<String> {
        self.shared.lock().medium.as_ref().map(|(barcode, _)| barcode.clone())
    }

    fn device_identifier(&self) -> DriveIdentifier {
        let id = self.identity();
        DriveIdentifier { vendor: id.vendor.clone(), product: id.product.clone(), serial: id.serial.clone() }
    }
}

#[cfg(test)]
mod tests;
