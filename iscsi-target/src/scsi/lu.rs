//! The logical-unit interface between the transport and a device type.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::pr::SavedReservations;
use super::sense::Sense;

/// The I_T nexus a command arrived on: which initiator port talks to which
/// target port. Reservations, unit attentions and sense are kept per nexus.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItNexus {
    /// Unique for the life of the process; identifies the session.
    pub id: u64,
    /// iSCSI initiator port name: `<InitiatorName>,i,0x<ISID>`.
    pub initiator_port: String,
    /// The initiator node name alone (`InitiatorName`), used for TransportIDs.
    pub initiator_name: String,
    /// The 6-byte ISID as sent at login.
    pub isid: [u8; 6],
    /// iSCSI target port name: `<TargetName>,t,0x<TPGT>`.
    pub target_port: String,
    /// Relative target port identifier (1-based).
    pub relative_port: u16,
}

impl ItNexus {
    /// A nexus for callers that drive a logical unit without a transport
    /// (unit tests, fuzzing): initiator `iqn.test:i<id>` with ISID
    /// `0x00000000000<id>`, on relative port 1 of target `target`.
    pub fn without_transport(id: u64, target: &str) -> ItNexus {
        ItNexus {
            id,
            initiator_port: format!("iqn.test:i{id},i,0x00000000000{id}"),
            initiator_name: format!("iqn.test:i{id}"),
            isid: [0, 0, 0, 0, 0, id as u8],
            target_port: format!("{target},t,0x0001"),
            relative_port: 1,
        }
    }
}

/// One SCSI command as the transport delivers it: the whole data-out buffer
/// has already been collected.
#[derive(Debug, Clone)]
pub struct ScsiRequest {
    pub nexus: Arc<ItNexus>,
    pub lun: u64,
    /// The CDB, 6 to 16 bytes (or longer with additional CDB AHS).
    pub cdb: Bytes,
    /// Data-out, exactly what the initiator sent (may be shorter than the
    /// CDB implies; the device checks).
    pub data_out: Bytes,
    /// Checksums of `data_out` that the transport computed as it arrived,
    /// when the unit asked for them
    /// ([`LogicalUnit::data_out_checksum_granule`]).
    pub data_out_checksums: Option<Arc<DataOutChecksums>>,
}

/// The CRC-32C (Castagnoli) of each whole `granule` bytes of a data-out
/// buffer, from its start; a partial granule at the end has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOutChecksums {
    pub granule: u32,
    pub crcs: Vec<u32>,
}

impl DataOutChecksums {
    /// The checksums of `len` bytes at `at` of the buffer, if that range is
    /// whole granules.
    pub fn range(&self, at: usize, len: usize) -> Option<&[u32]> {
        let g = self.granule as usize;
        if g == 0 || !at.is_multiple_of(g) || !len.is_multiple_of(g) {
            return None;
        }
        self.crcs.get(at / g..(at + len) / g)
    }
}

/// SAM status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ScsiStatus {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    AcaActive = 0x30,
    TaskAborted = 0x40,
}

/// The outcome of one command.
#[derive(Debug, Clone)]
pub struct ScsiResponse {
    pub status: ScsiStatus,
    /// Data-in; the transport truncates it to the initiator's expected
    /// length and reports the residual.
    pub data_in: Bytes,
    /// Present exactly when status is CHECK CONDITION.
    pub sense: Option<Sense>,
    /// For commands that take data-out: the byte count the CDB called for.
    /// The transport reports the difference from the initiator's expected
    /// length as a residual (RFC 7143 §11.4.5). Devices use only the whole
    /// blocks actually sent when the initiator sent less.
    pub data_out_len: Option<u64>,
}

impl ScsiResponse {
    pub fn good() -> Self {
        ScsiResponse { status: ScsiStatus::Good, data_in: Bytes::new(), sense: None, data_out_len: None }
    }

    pub fn data(data: impl Into<Bytes>) -> Self {
        ScsiResponse { status: ScsiStatus::Good, data_in: data.into(), sense: None, data_out_len: None }
    }

    pub fn check(sense: Sense) -> Self {
        ScsiResponse { status: ScsiStatus::CheckCondition, data_in: Bytes::new(), sense: Some(sense), data_out_len: None }
    }

    pub fn status(status: ScsiStatus) -> Self {
        ScsiResponse { status, data_in: Bytes::new(), sense: None, data_out_len: None }
    }
}

impl ScsiResponse {
    /// Records the data-out length the CDB called for.
    pub fn with_data_out_len(mut self, len: u64) -> Self {
        self.data_out_len = Some(len);
        self
    }
}

impl From<Sense> for ScsiResponse {
    fn from(s: Sense) -> Self {
        ScsiResponse::check(s)
    }
}

/// Resets that task management requests cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET.
    LogicalUnit,
    /// TARGET WARM RESET / TARGET COLD RESET.
    Target,
}

/// Where a logical unit keeps what must outlive the process that serves it:
/// persistent reservations under APTPL (SPC-4 5.14.11) and an ejected
/// medium. The application stores it with its own record of the unit.
/// Each call returns once the state is durable: the command that changed
/// it completes only after, so an initiator never sees a change that a
/// crash could undo. On `Err` the unit leaves its state as it was and the
/// command fails.
pub trait UnitStateStore: Send + Sync {
    /// `None`: nothing is to persist any more (APTPL cleared).
    fn save_reservations(&self, reservations: Option<&SavedReservations>) -> std::io::Result<()>;
    fn save_medium_ejected(&self, ejected: bool) -> std::io::Result<()>;
}

/// What a [`UnitStateStore`] held when the unit was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedUnitState {
    pub reservations: Option<SavedReservations>,
    pub medium_ejected: bool,
}

/// A logical unit: a disk, a tape drive, a media changer. Implementations are
/// shared by every session that sees them and must be safe under concurrent
/// commands.
#[async_trait]
pub trait LogicalUnit: Send + Sync {
    /// Run one command. Never panics on any CDB or data-out content.
    async fn execute(&self, req: ScsiRequest) -> ScsiResponse;

    /// A task management reset hit this unit (from `by`); pending state is
    /// cleared and a unit attention is set for the other nexuses.
    fn reset(&self, kind: ResetKind, by: &ItNexus);

    /// Commands of `by` for this unit were aborted by ABORT TASK SET or
    /// CLEAR TASK SET; `all_nexuses` is true for CLEAR TASK SET.
    fn tasks_aborted(&self, by: &ItNexus, all_nexuses: bool);

    /// A nexus ended (logout, connection loss, session reinstatement).
    fn nexus_lost(&self, nexus: &ItNexus);

    /// For a command with data-out: the granule in which the unit would
    /// checksum that data (CRC-32C) before storing it, if it does. The
    /// transport then computes the checksums as each Data-Out PDU arrives,
    /// while the data is still in the CPU's caches, instead of the unit
    /// reading the whole buffer back from memory later.
    fn data_out_checksum_granule(&self, cdb: &[u8]) -> Option<u32> {
        let _ = cdb;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ranges_are_whole_granules_only() {
        let sums = DataOutChecksums { granule: 4096, crcs: vec![1, 2, 3, 4] };
        assert_eq!(sums.range(0, 16384), Some(&[1, 2, 3, 4][..]));
        assert_eq!(sums.range(4096, 8192), Some(&[2, 3][..]));
        assert_eq!(sums.range(512, 4096), None, "not on a granule boundary");
        assert_eq!(sums.range(4096, 1000), None, "not whole granules");
        assert_eq!(sums.range(8192, 12288), None, "past the checksums");
        assert_eq!(DataOutChecksums { granule: 0, crcs: vec![] }.range(0, 0), None);
    }
}
