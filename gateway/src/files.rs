//! Files the gateway writes: owner-only, replaced atomically.
//!
//! Everything under the data directory is private to the daemon's user
//! (0600 files, 0700 directories) whatever the umask: volume data, keys,
//! accounts and the control socket must not be readable by other local
//! users.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Restricts an open file to its owner.
pub(crate) fn set_private(f: &std::fs::File) -> std::io::Result<()> {
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
}

/// Creates a directory (and its parents) owner-only; an existing one is
/// tightened to 0700.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Replaces `dir/name` with `bytes`: the data reaches the disk under a
/// temporary name first, so a crash leaves the old file or the new one.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        set_private(&f)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Bytes available to the daemon's user and the filesystem's size, for
/// the filesystem that holds `path`.
pub(crate) fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable
    // statvfs that outlives the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn private_modes_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        write_atomically(&dir, "f.json", b"{}").unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join("f.json")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(dir.join("f.json")).unwrap(), b"{}");
    }
}
