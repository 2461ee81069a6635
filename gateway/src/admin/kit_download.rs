//! The recovery kit goes over the network once.
//!
//! The kit holds the master key: whoever has it and the bucket reads every
//! volume. The wizard offers it right after activation; the first download
//! by a console session or an API token is recorded in
//! `DATA_DIR/recovery-kit-downloaded.json` (made with `create_new`, so two
//! racing downloads cannot both win), and later network requests are
//! refused, naming when and by whom it went. Root on the gateway's host,
//! over the socket, can always make it again (root can read the key file
//! anyway).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = "recovery-kit-downloaded.json";

/// When the kit went over the network, and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KitDownload {
    pub unix: u64,
    pub by: String,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The recorded download, if any.
pub fn recorded(data_dir: &Path) -> Option<KitDownload> {
    let bytes = std::fs::read(path(data_dir)).ok()?;
    // A record that cannot be parsed still says the kit went out.
    Some(serde_json::from_slice(&bytes).unwrap_or(KitDownload { unix: 0, by: "unknown".into() }))
}

/// Claims the one network download; `Err(existing)` when it was taken.
pub fn claim(data_dir: &Path, by: &str, unix: u64) -> Result<(), ClaimError> {
    let record = KitDownload { unix, by: by.to_owned() };
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path(data_dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ClaimError::Taken(recorded(data_dir).unwrap_or(record)));
        }
        Err(e) => return Err(ClaimError::Io(e)),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| ClaimError::Io(std::io::Error::other(e)))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(ClaimError::Io)
}

#[derive(Debug)]
pub enum ClaimError {
    Taken(KitDownload),
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded(dir.path()), None);
        claim(dir.path(), "session of admin", 100).unwrap();
        let first = KitDownload { unix: 100, by: "session of admin".into() };
        assert_eq!(recorded(dir.path()), Some(first.clone()));
        match claim(dir.path(), "token abc", 200) {
            Err(ClaimError::Taken(d)) => assert_eq!(d, first),
            other => panic!("second claim: {other:?}"),
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only");
    }
}
