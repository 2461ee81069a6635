//! The machine the local console changes: files under a root and the
//! commands that reload them. On the appliance the root is `/` and the
//! commands run; in a dry run (`sgw console --root DIR`) the files go under
//! DIR and the commands are written to `DIR/commands.log`, so tests and a
//! curious admin see what would be done.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Host {
    root: PathBuf,
    dry_run: bool,
}

const PREVIOUS: &str = ".sgw-previous";
const ABSENT: &str = ".sgw-previous-absent";

impl Host {
    /// The machine itself.
    pub fn real() -> Host {
        Host { root: PathBuf::from("/"), dry_run: false }
    }

    pub fn dry_run(root: &Path) -> Host {
        Host { root: root.to_path_buf(), dry_run: true }
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// Replaces a file atomically, owner-only; with `group`, that group
    /// may read it too (networkd reads its files as systemd-network).
    pub fn write(&self, rel: &str, text: &str, group: Option<&str>) -> Result<(), String> {
        let path = self.path(rel);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Err(format!("{} has no directory", path.display()));
        };
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        std::fs::create_dir_all(dir).map_err(fail)?;
        crate::files::write_atomically(dir, name, text.as_bytes()).map_err(fail)?;
        if let Some(gid) = group.and_then(|g| self.group_id(g)) {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(fail)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).map_err(fail)?;
        }
        Ok(())
    }

    pub fn remove(&self, rel: &str) -> Result<(), String> {
        match std::fs::remove_file(self.path(rel)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {rel}: {e}")),
            _ => Ok(()),
        }
    }

    fn group_id(&self, name: &str) -> Option<u32> {
        self.read("etc/group")?.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then_some(())?;
            f.nth(1)?.parse().ok()
        })
    }

    /// Keeps each file as it is now (or that it is absent) beside it, for
    /// [`Host::restore_previous`].
    pub fn keep_previous(&self, rels: &[&str]) -> Result<(), String> {
        for rel in rels {
            let kept = format!("{rel}{PREVIOUS}");
            let absent = format!("{rel}{ABSENT}");
            self.remove(&kept)?;
            self.remove(&absent)?;
            match self.read(rel) {
                Some(text) => self.write(&kept, &text, None)?,
                None => self.write(&absent, "", None)?,
            }
        }
        Ok(())
    }

    /// Puts back what [`Host::keep_previous`] kept; false when nothing was.
    pub fn restore_previous(&self, rels: &[&str]) -> Result<bool, String> {
        let mut any = false;
        for rel in rels {
            let kept = format!("{rel}{PREVIOUS}");
            let absent = format!("{rel}{ABSENT}");
            if let Some(text) = self.read(&kept) {
                let group = (*rel == super::network::NETWORK_FILE).then_some("systemd-network");
                self.write(rel, &text, group)?;
                self.remove(&kept)?;
                any = true;
            } else if self.path(&absent).exists() {
                self.remove(rel)?;
                self.remove(&absent)?;
                any = true;
            }
        }
        Ok(any)
    }

    /// Runs a command (recorded, in a dry run); fails with its output when
    /// it fails.
    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let line = argv.join(" ");
        if self.dry_run {
            use std::io::Write;
            let log = self.path("commands.log");
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|e| format!("{}: {e}", log.display()))?;
            crate::files::set_private(&f).map_err(|e| e.to_string())?;
            writeln!(f, "{line}").map_err(|e| e.to_string())?;
            return Ok(String::new());
        }
        let Some((program, args)) = argv.split_first() else {
            return Err("no command".into());
        };
        let out = Command::new(program).args(args).output().map_err(|e| format!("{line}: {e}"))?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{line}: {} {}", out.status, text.trim()))
        }
    }

    /// What a dry run would have run, one command a line.
    #[cfg(test)]
    pub fn commands(&self) -> String {
        self.read("commands.log").unwrap_or_default()
    }

    /// A command's output for display only (time, NTP, the journal): run
    /// even in a dry run, since it changes nothing; the error when it
    /// cannot.
    pub fn query(&self, argv: &[&str]) -> String {
        let Some((program, args)) = argv.split_first() else {
            return String::new();
        };
        match Command::new(program).args(args).output() {
            Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("{}: {e}", argv.join(" ")),
        }
    }
}
