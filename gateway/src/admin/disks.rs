//! The machine's unused disks, which activation offers as cache: whole
//! disks (no partitions), not mounted, not swap, not held by another
//! device (LVM, RAID), writable, and blank or already an sgw cache. Read
//! from sysfs and procfs, whose roots are parameters so that tests can
//! give a made-up machine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::activation::FieldError;

/// A disk activation may give the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnusedDisk {
    /// The device, e.g. `/dev/vdb`.
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The model the disk reports, when it does.
    pub model: String,
    /// The disk already holds an sgw cache (a gateway set up again).
    pub sgw_cache: bool,
}

/// Device names that are never data disks.
const NOT_DISKS: [&str; 7] = ["loop", "ram", "zram", "sr", "fd", "nbd", "md"];

/// The unused disks of this machine.
pub fn unused_disks() -> Vec<UnusedDisk> {
    unused_disks_in(Path::new("/sys"), Path::new("/proc"), Path::new("/dev"))
}

/// The unused disks under the given sysfs, procfs and devfs roots.
pub fn unused_disks_in(sys: &Path, proc: &Path, dev: &Path) -> Vec<UnusedDisk> {
    let Ok(entries) = std::fs::read_dir(sys.join("block")) else {
        return Vec::new();
    };
    let mounted = read(&proc.join("self/mountinfo"));
    let mounted: Vec<&str> = mounted.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    let swaps = read(&proc.join("swaps"));
    let mut disks: Vec<UnusedDisk> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if NOT_DISKS.iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let node = sys.join("block").join(&name);
            let sectors: u64 = read(&node.join("size")).trim().parse().ok()?;
            let number = read(&node.join("dev")).trim().to_string();
            let path = dev.join(&name);
            let has_partitions = std::fs::read_dir(&node)
                .ok()?
                .flatten()
                .any(|p| p.file_name().to_string_lossy().starts_with(name.as_str()) && p.path().join("partition").exists());
            let held = std::fs::read_dir(node.join("holders")).map(|mut h| h.next().is_some()).unwrap_or(false);
            let unused = sectors > 0
                && read(&node.join("ro")).trim() == "0"
                && !has_partitions
                && !held
                && !mounted.contains(&number.as_str())
                && !swaps.lines().any(|l| l.split_whitespace().next() == Some(&*path.to_string_lossy()));
            if !unused {
                return None;
            }
            let contents = Contents::of(&path);
            if matches!(contents, Contents::Other(_)) {
                return None;
            }
            Some(UnusedDisk {
                size_bytes: sectors * 512,
                model: read(&node.join("device/model")).trim().to_string(),
                sgw_cache: contents == Contents::SgwCache,
                path,
            })
        })
        .collect();
    disks.sort_by(|a, b| a.path.cmp(&b.path));
    disks
}

/// Checks a block device given as the cache disk: one of the unused
/// disks, holding the cache's `size` (the whole disk when absent).
/// Returns the size the cache gets.
pub fn check_cache_device(device: &Path, size: Option<u64>, unused: &[UnusedDisk]) -> Result<u64, FieldError> {
    let resolved = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let Some(disk) = unused.iter().find(|d| d.path == resolved || d.path == device) else {
        let names: Vec<String> = unused.iter().map(|d| d.path.display().to_string()).collect();
        return Err(FieldError::new(
            "cache_disk",
            format!(
                "{} is not an unused disk (it is partitioned, mounted, in use or holds data); unused: {}",
                device.display(),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ),
        ));
    };
    let size = size.unwrap_or(disk.size_bytes);
    if size > disk.size_bytes {
        return Err(FieldError::new(
            "cache_size",
            format!(
                "{} does not fit on {} ({})",
                crate::units::size_text(size),
                device.display(),
                crate::units::size_text(disk.size_bytes)
            ),
        ));
    }
    Ok(size)
}

/// What a disk's first bytes say it holds.
#[derive(Debug, PartialEq, Eq)]
enum Contents {
    /// Zeros where file systems and partition tables put their marks.
    Blank,
    SgwCache,
    /// A file system, a partition table, an LVM or RAID member: not ours
    /// to take.
    Other(&'static str),
}

impl Contents {
    fn of(path: &Path) -> Contents {
        use std::os::unix::fs::FileExt;
        // Up to btrfs's mark, the farthest of those looked for.
        let mut head = vec![0u8; 0x10048];
        let read = std::fs::File::open(path).and_then(|f| f.read_at(&mut head, 0));
        match read {
            Ok(n) => Contents::of_head(&head[..n]),
            // Unreadable: not offered.
            Err(_) => Contents::Other("unreadable"),
        }
    }

    fn of_head(head: &[u8]) -> Contents {
        let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
        if at(0, b"SGWCACHE") {
            Contents::SgwCache
        } else if at(510, &[0x55, 0xAA]) || at(512, b"EFI PART") {
            Contents::Other("a partition table")
        } else if at(0x438, &[0x53, 0xEF]) {
            Contents::Other("an ext2/3/4 file system")
        } else if at(0, b"XFSB") {
            Contents::Other("an XFS file system")
        } else if [0, 512, 1024, 1536].iter().any(|&o| at(o, b"LABELONE")) {
            Contents::Other("an LVM physical volume")
        } else if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
            Contents::Other("swap")
        } else if at(0x10040, b"_BHRfS_M") || at(4096, &[0xFC, 0x4E, 0x2B, 0xA9]) {
            Contents::Other("a btrfs file system or a RAID member")
        } else {
            Contents::Blank
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sys: &Path, name: &str, sectors: u64, dev: &str) -> PathBuf {
        let node = sys.join("block").join(name);
        std::fs::create_dir_all(node.join("holders")).unwrap();
        std::fs::create_dir_all(node.join("device")).unwrap();
        std::fs::write(node.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::write(node.join("dev"), format!("{dev}\n")).unwrap();
        std::fs::write(node.join("ro"), "0\n").unwrap();
        std::fs::write(node.join("device/model"), "QEMU HARDDISK   \n").unwrap();
        node
    }

    #[test]
    fn only_whole_unmounted_blank_or_sgw_disks_are_offered() {
        let tmp = tempfile::tempdir().unwrap();
        let (sys, proc, dev) = (tmp.path().join("sys"), tmp.path().join("proc"), tmp.path().join("dev"));
        std::fs::create_dir_all(proc.join("self")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        // vda: the OS disk, partitioned.
        let vda = disk(&sys, "vda", 4 << 21, "254:0");
        std::fs::create_dir_all(vda.join("vda1")).unwrap();
        std::fs::write(vda.join("vda1/partition"), "1\n").unwrap();
        // vdb: blank; vdc: mounted whole; vdd: holds ext4; vde: an old cache;
        // vdf: read-only; vdg: an LVM member (held); loop0: never.
        for (name, number) in [("vdb", "254:16"), ("vdc", "254:32"), ("vdd", "254:48"), ("vde", "254:64"), ("vdf", "254:80"), ("vdg", "254:96"), ("loop0", "7:0")] {
            disk(&sys, name, 1 << 21, number);
            std::fs::write(dev.join(name), vec![0u8; 8192]).unwrap();
        }
        let mut ext4 = vec![0u8; 8192];
        ext4[0x438..0x43a].copy_from_slice(&[0x53, 0xEF]);
        std::fs::write(dev.join("vdd"), ext4).unwrap();
        let mut cache = vec![0u8; 8192];
        cache[..8].copy_from_slice(b"SGWCACHE");
        std::fs::write(dev.join("vde"), cache).unwrap();
        std::fs::write(sys.join("block/vdf/ro"), "1\n").unwrap();
        std::fs::write(sys.join("block/vdg/holders/dm-0"), "").unwrap();
        std::fs::write(proc.join("self/mountinfo"), "29 1 254:32 / /mnt rw - ext4 /dev/vdc rw\n").unwrap();
        std::fs::write(proc.join("swaps"), "Filename Type Size Used Priority\n").unwrap();

        let found = unused_disks_in(&sys, &proc, &dev);
        let names: Vec<_> = found.iter().map(|d| d.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["vdb", "vde"]);
        assert_eq!(found[0].size_bytes, 1 << 30);
        assert_eq!(found[0].model, "QEMU HARDDISK");
        assert!(!found[0].sgw_cache && found[1].sgw_cache);

        // Activation takes the whole disk by default, refuses more, and
        // refuses a disk that is not unused, naming those that are.
        assert_eq!(check_cache_device(&dev.join("vdb"), None, &found), Ok(1 << 30));
        assert_eq!(check_cache_device(&dev.join("vdb"), Some(512 << 20), &found), Ok(512 << 20));
        assert_eq!(check_cache_device(&dev.join("vdb"), Some(2 << 30), &found).unwrap_err().field, "cache_size");
        let e = check_cache_device(&dev.join("vdd"), None, &found).unwrap_err();
        assert_eq!(e.field, "cache_disk");
        assert!(e.error.contains("vdb") && e.error.contains("vde"), "{}", e.error);
    }

    #[test]
    fn signatures() {
        assert_eq!(Contents::of_head(&[0u8; 8192]), Contents::Blank);
        assert_eq!(Contents::of_head(&[]), Contents::Blank);
        let mut gpt = vec![0u8; 8192];
        gpt[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(Contents::of_head(&gpt), Contents::Other("a partition table"));
        let mut xfs = vec![0u8; 8192];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(Contents::of_head(&xfs), Contents::Other("an XFS file system"));
        let mut swap = vec![0u8; 8192];
        swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(Contents::of_head(&swap), Contents::Other("swap"));
    }
}
