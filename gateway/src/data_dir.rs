//! The data directory as a whole: one daemon at a time, and owner-only.
//!
//! A lock file names the daemon that holds the directory, so a second
//! start says "in use by PID N" before it touches anything (the cache's
//! RocksDB lock would refuse much later, with a message about a LOCK file).
//! The kernel drops the lock when the holder exits, SIGKILL included, so a
//! crashed daemon never leaves the directory locked.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub(crate) const LOCK_FILE: &str = "sgw.lock";

/// Held for the daemon's life; dropping it (or exiting) releases the
/// directory.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("the data directory {dir} is in use by PID {pid} (lock file {lock})")]
    InUse { dir: String, pid: String, lock: String },
    #[error("cannot lock the data directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

impl DataDirLock {
    /// Locks `dir` (which must exist) and records our PID in the lock file.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { dir: dir.display().to_string(), source };
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(io)?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(err));
            }
            let mut pid = String::new();
            // The holder writes its PID right after locking; an empty file
            // means it is between the two.
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::InUse {
                dir: dir.display().to_string(),
                pid: if pid.is_empty() { "unknown (starting)".into() } else { pid.to_string() },
                lock: path.display().to_string(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// What `tighten` changed: the path and its mode before.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tightened {
    pub path: PathBuf,
    pub old_mode: u32,
}

/// Takes group and other permissions away from `root` and everything
/// beneath it (directories become 0700, files 0600), for trees written by
/// an older version or under a loose umask. Symbolic links are neither
/// followed nor changed. `root` may also be a single file (a cache disk or
/// key file kept outside the data directory).
pub(crate) fn tighten(root: &Path) -> std::io::Result<Vec<Tightened>> {
    let mut changed = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed while we walked (a temp file): nothing to protect.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            continue;
        }
        let mode = meta.mode() & 0o7777;
        let wanted = if kind.is_dir() { 0o700 } else { 0o600 };
        if mode & 0o077 != 0 || mode & 0o7000 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
            changed.push(Tightened { path: path.clone(), old_mode: mode });
        }
        if kind.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(tmp.path()).unwrap();
        let err = DataDirLock::acquire(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("in use by PID {}", std::process::id())), "{err}");
        assert_eq!(std::fs::metadata(tmp.path().join(LOCK_FILE)).unwrap().mode() & 0o777, 0o600);
        drop(held);
        DataDirLock::acquire(tmp.path()).expect("released on drop");
    }

    #[test]
    fn tighten_makes_the_tree_owner_only_and_reports_what_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        std::fs::create_dir_all(root.join("cache/index")).unwrap();
        std::fs::write(root.join("cache/disk0.img"), b"x").unwrap();
        std::fs::write(root.join("cache/index/000001.sst"), b"x").unwrap();
        std::fs::write(root.join("private"), b"x").unwrap();
        for (p, m) in [("", 0o755), ("cache", 0o775), ("cache/index", 0o700), ("cache/disk0.img", 0o644), ("cache/index/000001.sst", 0o4666), ("private", 0o600)] {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();
        let mut changed: Vec<_> = tighten(&root).unwrap().into_iter().map(|t| (t.path.strip_prefix(&root).unwrap().to_path_buf(), t.old_mode)).collect();
        changed.sort();
        let want: Vec<(PathBuf, u32)> =
            vec![("".into(), 0o755), ("cache".into(), 0o775), ("cache/disk0.img".into(), 0o644), ("cache/index/000001.sst".into(), 0o4666)];
        assert_eq!(changed, want);
        for (p, m) in [("", 0o700), ("cache", 0o700), ("cache/index", 0o700), ("cache/disk0.img", 0o600), ("cache/index/000001.sst", 0o600), ("private", 0o600)] {
            assert_eq!(std::fs::metadata(root.join(p)).unwrap().mode() & 0o7777, m, "{p}");
        }
        assert!(tighten(&root).unwrap().is_empty(), "a second pass changes nothing");
        assert_ne!(std::fs::metadata("/etc/hostname").unwrap().mode() & 0o777, 0o600, "symlink targets are left alone");
    }
}
