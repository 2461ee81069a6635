//! `sgw update …`: make a signing key, pack a release, apply a package.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum UpdateCommand {
    /// Make an ed25519 signing key (PKCS#8, owner-only) and print its
    /// public key, the contents of the image's /etc/sgw/update-key.pub
    /// (appliance-image/build.sh takes it as UPDATE_PUBLIC_KEY). Keep the
    /// key itself off the appliances.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a signing key.
    PublicKey {
        #[arg(long)]
        key: PathBuf,
    },
    /// Pack a binary into an update package signed with KEY.
    Pack {
        #[arg(long)]
        key: PathBuf,
        /// The new sgw binary [default: this one].
        #[arg(long)]
        binary: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a package against the update key, put its binary in place of
    /// TARGET (the old one kept as TARGET.previous) and, with --restart,
    /// restart the gateway's service. Run as root on the appliance (what
    /// sgw-update.service does after POST /api/v1/update).
    Apply {
        package: PathBuf,
        #[arg(long, default_value = "/etc/sgw/update-key.pub")]
        public_key: PathBuf,
        #[arg(long, default_value = "/usr/bin/sgw")]
        target: PathBuf,
        /// Then `systemctl restart sgw.service`.
        #[arg(long)]
        restart: bool,
    },
}

pub fn run(cmd: UpdateCommand) -> Result<(), String> {
    let s = |e: super::UpdateError| e.to_string();
    match cmd {
        UpdateCommand::Keygen { out } => {
            let public = super::keygen(&out).map_err(s)?;
            eprintln!("signing key written to {} (keep it off the appliances); its public key:", out.display());
            println!("{public}");
        }
        UpdateCommand::PublicKey { key } => println!("{}", super::public_key_of(&key).map_err(s)?),
        UpdateCommand::Pack { key, binary, out } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe().map_err(|e| e.to_string())?,
            };
            let version = std::process::Command::new(&binary)
                .arg("--version")
                .output()
                .map_err(|e| format!("{}: {e}", binary.display()))?;
            let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
            let m = super::pack(&binary, &version, &key, &out).map_err(s)?;
            println!("{}: {} ({} bytes, SHA-256 {})", out.display(), m.version, m.size, m.sha256);
        }
        UpdateCommand::Apply { package, public_key, target, restart } => {
            let key = super::read_public_key(&public_key).map_err(s)?;
            let file = std::fs::File::open(&package).map_err(|e| format!("{}: {e}", package.display()))?;
            let verified = super::verify(file, &key).map_err(s)?;
            let previous = super::install(&verified, &target).map_err(s)?;
            println!("{} installed as {} (the previous binary is {})", verified.manifest.version, target.display(), previous.display());
            let _ = std::fs::remove_file(&package);
            if restart {
                let status = std::process::Command::new("systemctl")
                    .args(["restart", "sgw.service"])
                    .status()
                    .map_err(|e| format!("systemctl: {e}"))?;
                if !status.success() {
                    return Err(format!("systemctl restart sgw.service: {status}"));
                }
            }
        }
    }
    Ok(())
}
