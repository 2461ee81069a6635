//! `volumes.json`: the volume records, written atomically by the volume
//! manager and by the logical units themselves, which save in their
//! volume's record what must outlive a restart (persistent reservations
//! under APTPL, an ejected medium) through [`UnitStateStore`].

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use iscsi_target::scsi::lu::{SavedUnitState, UnitStateStore};
use iscsi_target::scsi::pr::{PortId, PrType, Registration, Reservation, SavedReservations};
use serde::{Deserialize, Serialize};

use crate::volumes::VolumeRecord;

/// An I_T nexus of a saved registration (see [`PortId`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    pub initiator_name: String,
    /// 12 hex digits; absent: every initiator port of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isid: Option<String>,
    /// Absent: every target port (ALL_TG_PT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<String>,
    pub relative_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub key: u64,
    pub port: PortRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    pub holder: PortRecord,
    /// The TYPE code of SPC-4 table 169.
    pub kind: u8,
}

/// Persistent reservations a volume's LU saved under APTPL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationsRecord {
    pub generation: u32,
    pub registrations: Vec<RegistrationRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationRecord>,
}

impl PortRecord {
    fn from_port(p: &PortId) -> PortRecord {
        PortRecord {
            initiator_name: p.initiator_name.clone(),
            isid: p.isid.map(hex::encode),
            target_port: p.target_port.clone(),
            relative_port: p.relative_port,
        }
    }

    fn to_port(&self) -> Result<PortId, String> {
        let isid = match &self.isid {
            Some(text) => {
                let mut isid = [0u8; 6];
                hex::decode_to_slice(text, &mut isid).map_err(|e| format!("ISID {text:?}: {e}"))?;
                Some(isid)
            }
            None => None,
        };
        Ok(PortId {
            initiator_name: self.initiator_name.clone(),
            isid,
            target_port: self.target_port.clone(),
            relative_port: self.relative_port,
        })
    }
}

impl ReservationsRecord {
    pub fn from_saved(s: &SavedReservations) -> ReservationsRecord {
        ReservationsRecord {
            generation: s.generation,
            registrations: s
                .registrations
                .iter()
                .map(|r| RegistrationRecord { key: r.key, port: PortRecord::from_port(&r.port) })
                .collect(),
            reservation: s
                .reservation
                .as_ref()
                .map(|r| ReservationRecord { holder: PortRecord::from_port(&r.holder), kind: r.kind as u8 }),
        }
    }

    pub fn to_saved(&self) -> Result<SavedReservations, String> {
        let registrations = self
            .registrations
            .iter()
            .map(|r| Ok(Registration { key: r.key, port: r.port.to_port()? }))
            .collect::<Result<Vec<_>, String>>()?;
        let reservation = match &self.reservation {
            Some(r) => Some(Reservation {
                holder: r.holder.to_port()?,
                kind: PrType::from_code(r.kind).ok_or_else(|| format!("reservation type {}", r.kind))?,
            }),
            None => None,
        };
        Ok(SavedReservations { generation: self.generation, registrations, reservation })
    }
}

/// The unit state a record holds, for opening its LU. Reservations the
/// record cannot express any more are dropped, with a warning, rather than
/// keeping the volume offline.
pub fn saved_unit_state(r: &VolumeRecord) -> SavedUnitState {
    let reservations = r.reservations.as_ref().and_then(|rec| match rec.to_saved() {
        Ok(saved) => Some(saved),
        Err(e) => {
            tracing::warn!(volume = %r.name, error = %e, "dropping unreadable saved persistent reservations");
            None
        }
    });
    SavedUnitState { reservations, medium_ejected: r.medium_ejected }
}

/// `volumes.json` and the records it last received.
pub struct VolumeRecordsFile {
    dir: PathBuf,
    /// What the file holds; writers keep the lock across the write, so the
    /// file always matches it.
    written: Mutex<Vec<VolumeRecord>>,
}

impl VolumeRecordsFile {
    pub const NAME: &'static str = "volumes.json";

    pub fn new(dir: PathBuf, written: Vec<VolumeRecord>) -> Arc<VolumeRecordsFile> {
        Arc::new(VolumeRecordsFile { dir, written: Mutex::new(written) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<VolumeRecord>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, records: &[VolumeRecord]) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(records).map_err(io::Error::other)?;
        crate::files::write_atomically(&self.dir, Self::NAME, &bytes)
    }

    /// Replaces the file with `records`. The unit state of a volume already
    /// in the file is kept from there: its LU is where that state changes,
    /// and the manager's copy of the record may be older.
    pub fn write_records(&self, records: impl IntoIterator<Item = VolumeRecord>) -> io::Result<()> {
        let mut written = self.lock();
        let next: Vec<VolumeRecord> = records
            .into_iter()
            .map(|mut r| {
                if let Some(old) = written.iter().find(|o| o.name == r.name && o.id == r.id) {
                    r.reservations = old.reservations.clone();
                    r.medium_ejected = old.medium_ejected;
                }
                r
            })
            .collect();
        self.write(&next)?;
        *written = next;
        Ok(())
    }

    fn update(&self, name: &str, id: u64, change: impl FnOnce(&mut VolumeRecord)) -> io::Result<()> {
        let mut written = self.lock();
        let mut next = written.clone();
        let record = next
            .iter_mut()
            .find(|r| r.name == name && r.id == id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("volume {name} has no record")))?;
        change(record);
        self.write(&next)?;
        *written = next;
        Ok(())
    }
}

/// The [`UnitStateStore`] of one volume's LU: its record in `volumes.json`.
pub struct VolumeUnitState {
    pub records: Arc<VolumeRecordsFile>,
    pub name: String,
    /// The record's id, so that a volume deleted and created again under
    /// the same name never receives the old LU's state.
    pub id: u64,
}

impl UnitStateStore for VolumeUnitState {
    fn save_reservations(&self, reservations: Option<&SavedReservations>) -> io::Result<()> {
        let record = reservations.map(ReservationsRecord::from_saved);
        self.records.update(&self.name, self.id, |r| r.reservations = record)
    }

    fn save_medium_ejected(&self, ejected: bool) -> io::Result<()> {
        self.records.update(&self.name, self.id, |r| r.medium_ejected = ejected)
    }
}
