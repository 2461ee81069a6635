//! The library's devices as iSCSI targets: names, serial numbers and NAA
//! identifiers (stable across restarts: derived from a gateway id kept in
//! the data directory), who may log in to them, and each drive's byte
//! counters.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use iscsi_target::scsi::{ItNexus, LogicalUnit, ResetKind, ScsiRequest, ScsiResponse, ScsiStatus};
use iscsi_target::target::Target;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use vtl::ssc::TapeDrive;

use crate::volumes::{chap_config, VolumeChap, IQN_PREFIX};

/// Drives in the library, as in AWS Tape Gateway.
pub const DRIVE_COUNT: usize = 10;

pub fn changer_iqn() -> String {
    format!("{IQN_PREFIX}:tape:changer")
}

/// `n` counts from 1: `drive-01` … `drive-10`.
pub fn drive_name(n: usize) -> String {
    format!("drive-{n:02}")
}

pub fn drive_iqn(n: usize) -> String {
    format!("{IQN_PREFIX}:tape:{}", drive_name(n))
}

const GATEWAY_ID_FILE: &str = "gateway-id";

/// The gateway's id: 16 hex digits in `gateway-id`, made on first start.
pub fn load_or_create_gateway_id(data_dir: &Path) -> std::io::Result<u64> {
    let path = data_dir.join(GATEWAY_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // 48 bits: room below for the device number in NAA ids.
            let id = rand::random::<u64>() >> 16;
            crate::files::write_atomically(data_dir, GATEWAY_ID_FILE, format!("{id:016x}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// Serial numbers and NAA ids of the changer (device 0) and drives (1..).
#[derive(Debug, Clone, Copy)]
pub struct DeviceIds {
    gateway_id: u64,
}

impl DeviceIds {
    pub fn new(gateway_id: u64) -> DeviceIds {
        DeviceIds { gateway_id }
    }

    /// Ten characters, as LTO drives report them: eight hex digits of the
    /// gateway id and the device number.
    pub fn serial(&self, device: usize) -> String {
        format!("{:08X}{device:02}", (self.gateway_id & 0xFFFF_FFFF) as u32)
    }

    pub fn naa_id(&self, device: usize) -> u64 {
        (self.gateway_id << 8) | (device as u64 & 0xFF)
    }
}

/// Who may log in to the changer and the drives: one setting for the
/// whole library, since a backup server needs all of them together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryAccess {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<VolumeChap>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initiators: Vec<String>,
}

/// Owner-only (it holds CHAP secrets), replaced atomically.
const ACCESS_FILE: &str = "library-access.json";

impl LibraryAccess {
    pub fn load(data_dir: &Path) -> std::io::Result<LibraryAccess> {
        let path = data_dir.join(ACCESS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LibraryAccess::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::files::write_atomically(data_dir, ACCESS_FILE, &bytes)
    }
}

/// A one-LUN target.
pub fn single_lun_target(name: String, alias: String, lu: Arc<dyn LogicalUnit>, access: &LibraryAccess) -> Arc<Target> {
    Arc::new(Target {
        name,
        alias: Some(alias),
        chap: chap_config(access.chap.as_ref()),
        initiators: access.initiators.clone(),
        luns: BTreeMap::from([(0u64, lu)]),
    })
}

/// Tape metrics: tapes per state, and bytes moved by each drive.
#[derive(Clone)]
pub struct TapeMetrics {
    pub tapes: IntGaugeVec,
    pub drive_written: IntCounterVec,
    pub drive_read: IntCounterVec,
}

impl TapeMetrics {
    pub fn register(registry: &Registry) -> Result<TapeMetrics, prometheus::Error> {
        let tapes = IntGaugeVec::new(Opts::new("sgw_tapes", "Tapes by state"), &["state"])?;
        let drive_written = IntCounterVec::new(
            Opts::new("sgw_tape_drive_written_bytes_total", "Bytes written to tape through each drive"),
            &["drive"],
        )?;
        let drive_read = IntCounterVec::new(
            Opts::new("sgw_tape_drive_read_bytes_total", "Bytes read from tape through each drive"),
            &["drive"],
        )?;
        registry.register(Box::new(tapes.clone()))?;
        registry.register(Box::new(drive_written.clone()))?;
        registry.register(Box::new(drive_read.clone()))?;
        Ok(TapeMetrics { tapes, drive_written, drive_read })
    }
}

const READ_6: u8 = 0x08;
const WRITE_6: u8 = 0x0A;

/// A drive as its target serves it: counts the bytes READ(6) returned and
/// the bytes of WRITE(6) commands that completed with GOOD (a write at
/// early warning, reported with CHECK CONDITION, is not counted).
pub struct MeteredDrive {
    drive: Arc<TapeDrive>,
    written: prometheus::IntCounter,
    read: prometheus::IntCounter,
}

impl MeteredDrive {
    pub fn new(drive: Arc<TapeDrive>, name: &str, metrics: &TapeMetrics) -> MeteredDrive {
        MeteredDrive {
            drive,
            written: metrics.drive_written.with_label_values(&[name]),
            read: metrics.drive_read.with_label_values(&[name]),
        }
    }
}

#[async_trait]
impl LogicalUnit for MeteredDrive {
    async fn execute(&self, req: ScsiRequest) -> ScsiResponse {
        let opcode = req.cdb.first().copied();
        let sent = req.data_out.len() as u64;
        let resp = self.drive.execute(req).await;
        match opcode {
            Some(READ_6) => self.read.inc_by(resp.data_in.len() as u64),
            Some(WRITE_6) if resp.status == ScsiStatus::Good => self.written.inc_by(sent),
            _ => {}
        }
        resp
    }

    fn reset(&self, kind: ResetKind, by: &ItNexus) {
        self.drive.reset(kind, by)
    }

    fn tasks_aborted(&self, by: &ItNexus, all_nexuses: bool) {
        self.drive.tasks_aborted(by, all_nexuses)
    }

    fn nexus_lost(&self, nexus: &ItNexus) {
        self.drive.nexus_lost(nexus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_stable() {
        assert_eq!(changer_iqn(), "iqn.2026-11.org.sgw:tape:changer");
        assert_eq!(drive_iqn(1), "iqn.2026-11.org.sgw:tape:drive-01");
        assert_eq!(drive_iqn(10), "iqn.2026-11.org.sgw:tape:drive-10");
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_gateway_id(dir.path()).unwrap();
        assert_eq!(load_or_create_gateway_id(dir.path()).unwrap(), a);
        let ids = DeviceIds::new(0xABCDEF0123);
        assert_eq!(ids.serial(3), "CDEF012303");
        assert_eq!(ids.serial(3).len(), 10);
        assert_ne!(ids.naa_id(0), ids.naa_id(1));
    }

    #[test]
    fn access_is_kept_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LibraryAccess::load(dir.path()).unwrap(), LibraryAccess::default());
        let access = LibraryAccess {
            chap: Some(VolumeChap { user: "u".into(), secret: "secret-secret".into(), mutual_user: None, mutual_secret: None }),
            initiators: vec!["iqn.2026-11.test:backup".into()],
        };
        access.save(dir.path()).unwrap();
        assert_eq!(LibraryAccess::load(dir.path()).unwrap(), access);
        let mode = std::fs::metadata(dir.path().join(ACCESS_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
