//! The SMC-3 media changer: a [`LogicalUnit`] that moves virtual tapes
//! between storage slots, import/export slots and drives, over the element
//! model of [`crate::library`].
//!
//! Every change to the element map, by a command or by the gateway, is
//! applied to a copy first; the copy replaces the map only once the drives
//! and the tape store have done their part, and is then saved through
//! [`MediaLibrary::save_elements`]. One tokio mutex around the map makes
//! moves run one at a time across all sessions.
//!
//! Import/export slots follow AWS Tape Gateway: the gateway puts new (and
//! retrieved) tapes into them; a tape the application moves into one is
//! exported ([`MediaLibrary::exported`]) and leaves the library when the
//! gateway takes it ([`MediaChanger::remove_exported`]). `exported` is
//! called with the map unlocked, so the gateway may remove the tape from
//! inside it.
//!
//! PREVENT ALLOW MEDIUM REMOVAL keeps the import/export "mail slots" shut,
//! as on a real library whose door is locked: while any I_T nexus prevents
//! removal, the gateway can neither put tapes in nor take exported tapes
//! out ([`LibraryError::RemovalPrevented`]; retry after the application
//! allows removal, or after its session ends or a reset). The application's
//! own moves are not affected.

use std::sync::Arc;

use async_trait::async_trait;
use iscsi_target::scsi::opcodes::Features;
use iscsi_target::scsi::spc::BlockDescriptor;
use iscsi_target::scsi::{
    DeviceIdentity, DeviceType, ItNexus, LogicalUnit, ResetKind, ScsiRequest, ScsiResponse, Sense, SpcCore,
    SpcDevice,
};

use crate::layout::{ElementType, Layout};
use crate::library::{ElementError, ElementMap, Movement, Role};
use crate::media::{DataTransferElement, MediaLibrary, TapeStoreError};
use crate::smc_cdb::{ChangerCommand, SmcCommand, StatusRequest, CHANGER_FEATURES, CHANGER_OPCODES};
use crate::smc_pages::{changer_mode_pages, log_page};
use crate::smc_sense::{
    element_error_sense, invalid_element_address, invalid_element_address_at, IMPORT_OR_EXPORT_ELEMENT_ACCESSED,
    MEDIA_LOAD_OR_EJECT_FAILED,
};
use crate::smc_status::element_status;

/// SMC-3 (no version claimed).
const SMC3_VERSION_DESCRIPTOR: u16 = 0x0480;

/// Why the changer could not be built or a gateway-side change was refused.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(transparent)]
    Element(#[from] ElementError),
    #[error("the library has {layout} data transfer elements but {given} drives were given")]
    DriveCount { layout: u16, given: usize },
    #[error("the application prevents medium removal: the import/export slots are locked")]
    RemovalPrevented,
    #[error("saving the element map failed: {0}")]
    Save(#[source] TapeStoreError),
}

/// The media changer logical unit.
pub struct MediaChanger {
    core: SpcCore,
    layout: Layout,
    /// In data transfer element order.
    drives: Vec<Arc<dyn DataTransferElement>>,
    media: Arc<dyn MediaLibrary>,
    /// Held for the whole of a change, drive and store calls included.
    elements: tokio::sync::Mutex<ElementMap>,
}

impl MediaChanger {
    /// Builds the changer over `drives` (one per data transfer element, in
    /// order) and the element map the gateway saved last (or an empty
    /// one). Tapes the map puts in drives are loaded into them again, as
    /// they stay in a real library's drives across a power cycle; a tape
    /// that cannot be loaded goes back to a storage slot.
    pub async fn new(
        identity: DeviceIdentity,
        layout: Layout,
        drives: Vec<Arc<dyn DataTransferElement>>,
        media: Arc<dyn MediaLibrary>,
        map: ElementMap,
    ) -> Result<MediaChanger, LibraryError> {
        let wanted = layout.counts().drives;
        if drives.len() != usize::from(wanted) {
            return Err(LibraryError::DriveCount { layout: wanted, given: drives.len() });
        }
        map.validate(&layout)?;
        let changer = MediaChanger {
            core: SpcCore::new(identity, DeviceType::MediumChanger, changer_mode_pages(&layout)),
            layout,
            drives,
            media,
            elements: tokio::sync::Mutex::new(map),
        };
        changer.reload_drives().await?;
        Ok(changer)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn identity(&self) -> &DeviceIdentity {
        self.core.identity()
    }

    /// A copy of the element map.
    pub async fn elements(&self) -> ElementMap {
        self.elements.lock().await.clone()
    }

    /// Whether the application currently prevents medium removal.
    pub fn removal_prevented(&self) -> bool {
        self.core.removal_prevented()
    }

    /// The gateway puts a new or retrieved tape into a free import/export
    /// slot (`sgw tape create`, a retrieval arriving) and every session
    /// learns of it through IMPORT OR EXPORT ELEMENT ACCESSED. Returns the
    /// slot's element address.
    pub async fn import_tape(&self, barcode: &str) -> Result<u16, LibraryError> {
        self.gateway_change(|map, layout| map.insert_import(layout, barcode)).await
    }

    /// The gateway takes a tape out of its import/export slot: an exported
    /// tape once it has it, or a new one the application never imported
    /// (the tape is being deleted). Returns the freed slot's address.
    pub async fn remove_exported(&self, barcode: &str) -> Result<u16, LibraryError> {
        self.gateway_change(|map, layout| map.remove_from_import_export(layout, barcode)).await
    }

    /// A change through the mail slots: refused while removal is
    /// prevented, saved before it takes effect (so the gateway's view and
    /// the saved one never differ), then announced.
    async fn gateway_change(
        &self,
        change: impl FnOnce(&mut ElementMap, &Layout) -> Result<u16, ElementError>,
    ) -> Result<u16, LibraryError> {
        if self.removal_prevented() {
            return Err(LibraryError::RemovalPrevented);
        }
        let mut map = self.elements.lock().await;
        let mut next = map.clone();
        let address = change(&mut next, &self.layout)?;
        self.media.save_elements(&next).await.map_err(LibraryError::Save)?;
        *map = next;
        self.core.broadcast_unit_attention(IMPORT_OR_EXPORT_ELEMENT_ACCESSED);
        Ok(address)
    }

    fn drive(&self, address: u16) -> Option<&Arc<dyn DataTransferElement>> {
        self.layout.drive_index(address).and_then(|i| self.drives.get(i))
    }

    /// Opens the tape and loads it into `drive`.
    async fn load_into(&self, drive: &Arc<dyn DataTransferElement>, barcode: &str) -> Result<(), Sense> {
        let medium = self.media.open(barcode).await.map_err(|e| {
            tracing::warn!(barcode, error = %e, "cannot open tape for a drive");
            MEDIA_LOAD_OR_EJECT_FAILED
        })?;
        if let Err(sense) = drive.load(medium).await {
            self.release(barcode).await;
            return Err(sense);
        }
        Ok(())
    }

    /// Takes the tape out of `drive` and gives it back to the store.
    async fn unload_from(&self, drive: &Arc<dyn DataTransferElement>, expected: &str) -> Result<(), Sense> {
        let barcode = drive.unload().await?;
        if barcode != expected {
            tracing::warn!(expected, found = %barcode, "drive held another tape than the element map says");
        }
        self.release(&barcode).await;
        Ok(())
    }

    /// The drive has let go of the tape and committed it; a store that
    /// fails to hear so cannot undo the unload.
    async fn release(&self, barcode: &str) {
        if let Err(e) = self.media.release(barcode).await {
            tracing::warn!(barcode, error = %e, "releasing tape failed");
        }
    }

    /// What the drives must do for a move: unload the source drive, load
    /// the destination drive. If the load fails after an unload (drive to
    /// drive), the tape goes back into the source drive.
    async fn carry(&self, m: &Movement) -> Result<(), Sense> {
        let from = self.drive(m.from);
        if let Some(drive) = from {
            self.unload_from(drive, &m.barcode).await?;
        }
        if let Some(drive) = self.drive(m.to) {
            if let Err(sense) = self.load_into(drive, &m.barcode).await {
                if let Some(back) = from {
                    if let Err(again) = self.load_into(back, &m.barcode).await {
                        tracing::error!(barcode = %m.barcode, ?again, "tape is in neither drive after a failed move");
                    }
                }
                return Err(sense);
            }
        }
        Ok(())
    }

    /// Saves the map after a command changed it. The media has moved
    /// already, so a failed save cannot fail the command: the next save
    /// carries the whole map again.
    async fn persist(&self, map: &ElementMap) {
        if let Err(e) = self.media.save_elements(map).await {
            tracing::error!(error = %e, "saving the element map failed");
        }
    }

    fn is_import_export(&self, address: u16) -> bool {
        self.layout.element_type(address) == Some(ElementType::ImportExport)
    }

    /// MEDIUM TRANSPORT ADDRESS: zero (the default transport) or ours.
    fn check_transport(&self, transport: u16) -> Result<(), Sense> {
        if transport != 0 && transport != self.layout.transport() {
            return Err(invalid_element_address(Role::Transport));
        }
        Ok(())
    }

    async fn move_medium(&self, transport: u16, source: u16, destination: u16) -> Result<ScsiResponse, Sense> {
        self.check_transport(transport)?;
        let mut map = self.elements.lock().await;
        let mut next = map.clone();
        let movement = next.move_medium(&self.layout, source, destination).map_err(|e| element_error_sense(&e))?;
        if movement.from == movement.to {
            return Ok(ScsiResponse::good());
        }
        self.carry(&movement).await?;
        *map = next;
        self.persist(&map).await;
        // Unlocked first: the gateway may take the tape out at once.
        drop(map);
        if self.is_import_export(movement.to) {
            self.media.exported(&movement.barcode).await;
        }
        Ok(ScsiResponse::good())
    }

    async fn exchange_medium(
        &self,
        transport: u16,
        source: u16,
        first: u16,
        second: u16,
    ) -> Result<ScsiResponse, Sense> {
        self.check_transport(transport)?;
        let mut map = self.elements.lock().await;
        let mut next = map.clone();
        let movements =
            next.exchange_medium(&self.layout, source, first, second).map_err(|e| element_error_sense(&e))?;
        *map = next;
        self.persist(&map).await;
        drop(map);
        for m in movements.iter().filter(|m| self.is_import_export(m.to)) {
            self.media.exported(&m.barcode).await;
        }
        Ok(ScsiResponse::good())
    }

    async fn read_element_status(&self, req: &StatusRequest) -> Result<ScsiResponse, Sense> {
        let identifiers: Vec<_> =
            if req.dvcid { self.drives.iter().map(|d| d.device_identifier()).collect() } else { Vec::new() };
        let map = self.elements.lock().await;
        element_status(&self.layout, &map, &identifiers, req).map(ScsiResponse::data)
    }

    /// Loads the tapes the map puts in drives (see [`MediaChanger::new`]).
    async fn reload_drives(&self) -> Result<(), LibraryError> {
        let mut map = self.elements.lock().await;
        let drive_addresses: Vec<u16> = self.layout.range(ElementType::DataTransfer).addresses().collect();
        let mut changed = false;
        for (address, drive) in drive_addresses.into_iter().zip(&self.drives) {
            let Some(tape) = map.get(address).cloned() else { continue };
            if let Some(inside) = drive.loaded() {
                if inside != tape.barcode {
                    tracing::warn!(address, map = %tape.barcode, drive = %inside, "drive holds another tape than the element map says");
                }
                continue;
            }
            let Err(sense) = self.load_into(drive, &tape.barcode).await else { continue };
            tracing::warn!(barcode = %tape.barcode, address, ?sense, "cannot reload tape into its drive");
            let storage = self.layout.range(ElementType::Storage);
            let home = tape
                .source
                .filter(|s| storage.contains(*s) && map.get(*s).is_none())
                .or_else(|| storage.addresses().find(|a| map.get(*a).is_none()));
            if let Some(home) = home {
                map.move_medium(&self.layout, address, home)?;
                changed = true;
            }
        }
        if changed {
            self.media.save_elements(&map).await.map_err(LibraryError::Save)?;
        }
        Ok(())
    }

    async fn run(&self, cmd: SmcCommand) -> Result<ScsiResponse, Sense> {
        match cmd {
            SmcCommand::ReadElementStatus(r) => self.read_element_status(&r).await,
            SmcCommand::MoveMedium { transport, source, destination } => {
                self.move_medium(transport, source, destination).await
            }
            SmcCommand::ExchangeMedium { transport, source, first, second } => {
                self.exchange_medium(transport, source, first, second).await
            }
            // The inventory is always known: nothing to scan.
            SmcCommand::InitializeElementStatus { range } => {
                if let Some((start, _)) = range {
                    if self.layout.elements_from(start, None).next().is_none() {
                        return Err(invalid_element_address_at(2));
                    }
                }
                Ok(ScsiResponse::good())
            }
            // There is no arm to move.
            SmcCommand::PositionToElement { transport, destination } => {
                self.check_transport(transport)?;
                if self.layout.element_type(destination).is_none() {
                    return Err(invalid_element_address_at(4));
                }
                Ok(ScsiResponse::good())
            }
            SmcCommand::LogSense { page, subpage, pointer, .. } => {
                log_page(page, subpage, pointer).map(ScsiResponse::data)
            }
        }
    }
}

impl SpcDevice for MediaChanger {
    fn version_descriptors(&self) -> &'static [u16] {
        &[SMC3_VERSION_DESCRIPTOR]
    }

    fn vpd_pages(&self) -> &'static [u8] {
        &[]
    }

    fn vpd_page(&self, _page: u8) -> Option<bytes::BytesMut> {
        None
    }

    fn mode_device_specific(&self) -> u8 {
        0
    }

    fn features(&self) -> Features {
        CHANGER_FEATURES
    }

    fn block_descriptor(&self) -> Option<BlockDescriptor> {
        None
    }
}

#[async_trait]
impl LogicalUnit for MediaChanger {
    async fn execute(&self, req: ScsiRequest) -> ScsiResponse {
        let (desc, cmd) = match self.core.admit(&req, &CHANGER_OPCODES, CHANGER_FEATURES) {
            Ok(admitted) => admitted,
            Err(resp) => return resp,
        };
        let alloc = cmd.allocation_length();
        let data_out_len = cmd.data_out_length();
        let result = match cmd {
            ChangerCommand::Spc(c) => Ok(self.core.execute(self, &req, c, &CHANGER_OPCODES)),
            ChangerCommand::Smc(c) => self.run(c).await,
        };
        SpcCore::finish(desc.name, result.unwrap_or_else(ScsiResponse::check), alloc, data_out_len)
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

#[cfg(test)]
#[path = "smc_tests.rs"]
mod tests;
