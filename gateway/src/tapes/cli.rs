//! `sgw tape …`: the tape commands of the CLI, over the admin API.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::library::{CreateTapes, LocationKind, TapeInfo, TapeLocation};
use super::records::Pool;
use crate::access::{initiators_text, AccessChange};
use crate::client::Client;
use crate::volumes::VolumeChap;
use crate::units::{parse_size, size_text};

#[derive(Subcommand)]
pub enum TapeCommand {
    /// Create virtual tapes; they appear in import/export slots.
    Create {
        /// One tape with this barcode (5-16 characters of A-Z, 0-9).
        #[arg(long, conflicts_with_all = ["prefix", "count"], required_unless_present = "prefix")]
        barcode: Option<String>,
        /// Barcodes made of this prefix (1-4 letters) and numbers.
        #[arg(long, requires = "count")]
        prefix: Option<String>,
        /// How many tapes to create with --prefix (1-10).
        #[arg(long, requires = "prefix")]
        count: Option<u32>,
        /// Tape size, e.g. 100GiB, 2.5TiB (100 GiB to 15 TiB; thin).
        #[arg(long, value_parser = parse_size, allow_hyphen_values = true)]
        size: u64,
        /// Where the tape is archived when exported.
        #[arg(long, value_enum, default_value = "GLACIER")]
        pool: PoolArg,
        /// Write once, read many: appends only.
        #[arg(long)]
        worm: bool,
    },
    /// List tapes with their state and location.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Bring an archived tape back into the library, read-only.
    Retrieve { barcode: String },
    /// Delete an archived tape, or one in an import/export slot.
    Delete { barcode: String },
    /// The changer and drive targets, and who may log in to them.
    Library {
        #[command(subcommand)]
        action: Option<LibraryCommand>,
        #[arg(long)]
        json: bool,
    },
}

/// `sgw tape library …`: access to the changer and all drives at once.
#[derive(Subcommand)]
pub enum LibraryCommand {
    /// Set or remove CHAP of the changer and drives; it applies from the
    /// next login (sessions logged in go on until they log out).
    SetChap {
        /// The initiator's CHAP user.
        #[arg(long, required_unless_present = "none", conflicts_with = "none")]
        chap_user: Option<String>,
        /// A file holding the CHAP secret (12-255 characters); without it
        /// the secret is read from standard input.
        #[arg(long)]
        chap_secret_file: Option<PathBuf>,
        /// Mutual CHAP: the target's user; its secret comes from
        /// --mutual-secret-file (or standard input).
        #[arg(long, requires = "chap_user")]
        mutual_user: Option<String>,
        #[arg(long, requires = "mutual_user")]
        mutual_secret_file: Option<PathBuf>,
        /// Remove CHAP.
        #[arg(long)]
        none: bool,
    },
    /// Set or remove the initiators allowed to log in to the changer and
    /// drives; it applies from the next login.
    SetInitiators {
        /// Initiator IQNs, comma-separated.
        #[arg(value_delimiter = ',', required_unless_present = "clear", conflicts_with = "clear")]
        initiators: Vec<String>,
        /// Remove the list: the gateway's iscsi_access decides (under
        /// acl-required, nobody may log in).
        #[arg(long)]
        clear: bool,
    },
}

/// Reads a secret from a file or standard input (never argv): the CLI's
/// own reader, passed in.
pub type ReadSecret<'a> = &'a dyn Fn(Option<&Path>, &str) -> Result<String, String>;

fn library_access(client: &Client, cmd: LibraryCommand, read_secret: ReadSecret) -> Result<(), String> {
    let change = match cmd {
        LibraryCommand::SetChap { chap_user: Some(user), chap_secret_file, mutual_user, mutual_secret_file, none: false } => {
            let secret = read_secret(chap_secret_file.as_deref(), "CHAP secret")?;
            let mutual_secret = match &mutual_user {
                Some(_) => Some(read_secret(mutual_secret_file.as_deref(), "mutual CHAP secret")?),
                None => None,
            };
            AccessChange { chap: Some(Some(VolumeChap { user, secret, mutual_user, mutual_secret })), initiators: None }
        }
        LibraryCommand::SetChap { .. } => AccessChange { chap: Some(None), initiators: None },
        LibraryCommand::SetInitiators { initiators, clear } => {
            AccessChange { chap: None, initiators: Some(if clear { Vec::new() } else { initiators }) }
        }
    };
    let lib = client.update_library(&change).map_err(|e| e.to_string())?;
    let chap = if lib.mutual_chap_enabled { "mutual" } else if lib.chap_enabled { "on" } else { "off" };
    println!("tape library: CHAP {chap}, {}; it applies from the next login", initiators_text(&lib.initiators));
    Ok(())
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PoolArg {
    #[value(name = "GLACIER")]
    Glacier,
    #[value(name = "DEEP_ARCHIVE")]
    DeepArchive,
}

pub(crate) fn location(l: &TapeLocation) -> String {
    let at = |what: &str| l.element.map_or(what.to_owned(), |e| format!("{what} {e}"));
    match l.kind {
        LocationKind::Storage => at("slot"),
        LocationKind::ImportExport => at("import/export"),
        LocationKind::Drive => at("drive"),
        LocationKind::Archive => "archive".into(),
        LocationKind::None => "-".into(),
    }
}

fn print_tapes(tapes: &[TapeInfo]) {
    println!("{:<16} {:>12} {:>12} {:<18} {:<12} LOCATION", "BARCODE", "SIZE", "USED", "STATE", "POOL");
    for t in tapes {
        let pool = match t.pool {
            Pool::Glacier => "GLACIER",
            Pool::DeepArchive => "DEEP_ARCHIVE",
        };
        let worm = if t.worm { " (WORM)" } else { "" };
        println!(
            "{:<16} {:>12} {:>12} {:<18} {:<12} {}{worm}",
            t.barcode,
            size_text(t.size_bytes),
            size_text(t.used_bytes),
            t.state.name(),
            pool,
            location(&t.location)
        );
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    Ok(())
}

pub fn run(client: &Client, cmd: TapeCommand, read_secret: ReadSecret) -> Result<(), String> {
    match cmd {
        TapeCommand::Create { barcode, prefix, count, size, pool, worm } => {
            let pool = match pool {
                PoolArg::Glacier => Pool::Glacier,
                PoolArg::DeepArchive => Pool::DeepArchive,
            };
            let req = CreateTapes { barcode, prefix, count, size_bytes: size, pool, worm };
            for t in client.create_tapes(&req).map_err(|e| e.to_string())? {
                println!("created {} ({}), {}, {}", t.barcode, size_text(t.size_bytes), t.state.name(), location(&t.location));
            }
        }
        TapeCommand::List { json: as_json } => {
            let tapes = client.list_tapes().map_err(|e| e.to_string())?;
            if as_json {
                json(&tapes)?;
            } else {
                print_tapes(&tapes);
            }
        }
        TapeCommand::Retrieve { barcode } => {
            let t = client.retrieve_tape(&barcode).map_err(|e| e.to_string())?;
            println!("{} is {}", t.barcode, t.state.name());
        }
        TapeCommand::Delete { barcode } => {
            client.delete_tape(&barcode).map_err(|e| e.to_string())?;
            println!("deleted {barcode}");
        }
        TapeCommand::Library { action: Some(action), .. } => library_access(client, action, read_secret)?,
        TapeCommand::Library { action: None, json: as_json } => {
            let lib = client.library().map_err(|e| e.to_string())?;
            if as_json {
                json(&lib)?;
            } else {
                let c = &lib.changer;
                println!("changer {} LUN {} ({} {}, serial {})", c.iqn, c.lun, c.vendor, c.product, c.serial);
                for d in &lib.drives {
                    let tape = d.barcode.as_deref().unwrap_or("-");
                    println!("drive   {} LUN {} element {} serial {} tape {tape}", d.iqn, d.lun, d.element, d.serial);
                }
                let chap = if lib.mutual_chap_enabled { "mutual" } else if lib.chap_enabled { "on" } else { "off" };
                println!("access  CHAP {chap}, {}", initiators_text(&lib.initiators));
            }
        }
    }
    Ok(())
}
