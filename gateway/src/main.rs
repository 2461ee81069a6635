//! `sgw`: the storage gateway daemon and its command-line client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gateway::api::CreateVolume;
use gateway::cached::SnapshotRecord;
use gateway::client::Client;
use gateway::cloud::inspect::InspectArgs;
use gateway::cloud::store::{S3Config, StoreConfig};
use gateway::config::{ConfigFile, ConfigSources};
use gateway::daemon::RunOptions;
use gateway::units::{parse_size, size_text};
use gateway::volumes::{VolumeChap, VolumeInfo, VolumeKind};

#[derive(Parser)]
#[command(name = "sgw", version, about = "Storage gateway: iSCSI volumes backed by S3")]
struct Cli {
    /// Where the CLI finds the gateway: `unix:PATH` (its socket, on the
    /// gateway's own host: no password needed), or `https://HOST:8443`
    /// (with SGW_TLS_FINGERPRINT or SGW_CA_CERT) or `http://127.0.0.1:8080`
    /// with an API token in SGW_TOKEN [default: unix:$SGW_DATA_DIR/sgw.sock,
    /// SGW_DATA_DIR defaulting to ./sgw-data].
    #[arg(long, global = true, env = "SGW_API")]
    api: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Serve(ServeArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage snapshots of cached volumes.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Manage virtual tapes and see the tape library.
    #[command(subcommand)]
    Tape(gateway::tapes::cli::TapeCommand),
    /// Disaster recovery: on a gateway started with an empty data directory
    /// against a bucket and its master key, adopt every volume and snapshot
    /// there at its last recovery point.
    Recover,
    /// List, decode and verify the objects in a bucket or local store,
    /// without a running gateway.
    Inspect(InspectArgs),
    /// Print the activation code of an unactivated gateway (read from its
    /// data directory: run it on the gateway's host).
    ActivationCode {
        /// The gateway's data directory [default: $SGW_DATA_DIR or ./sgw-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The appliance's local console (tty1, the serial console): the
    /// banner with the console's URL, TLS fingerprint and activation code,
    /// then a menu for the network, a connectivity test, a resource check,
    /// the admin password, time, logs, reboot and shutdown. Run as root on
    /// the gateway's host; `--root DIR` makes it a dry run.
    Console {
        /// The daemon's config file (for the data directory, the console's
        /// port and the cloud target).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The gateway's data directory [default: the config's, or
        /// $SGW_DATA_DIR, or ./sgw-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Change nothing on this machine: write the files under DIR and
        /// the commands to DIR/commands.log.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Update packages: make a signing key, pack a release, apply one.
    #[command(subcommand)]
    Update(gateway::update::cli::UpdateCommand),
    /// API tokens for scripts and remote CLIs (sent as `Authorization:
    /// Bearer`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The admin account.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Upload and download limits: a weekly schedule.
    #[command(subcommand)]
    Bandwidth(BandwidthCommand),
    /// The gateway's name, version, uptime and TLS fingerprint.
    Gateway {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BandwidthCommand {
    /// Print the schedule in effect (JSON).
    Show,
    /// Put a schedule in effect now and keep it across restarts: a JSON
    /// file like `{"intervals": [{"days_of_week": [1,2,3,4,5], "start_hour": 8,
    /// "start_minute": 0, "end_hour": 18, "end_minute": 0,
    /// "upload_bits_per_sec": 50000000}], "utc_offset_minutes": 60}`;
    /// `{"intervals": []}` lifts every limit.
    Set { file: PathBuf },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token; it is printed once and stored only hashed.
    Create { name: String },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new admin password without the old one, over the gateway's
    /// local socket (root on the gateway's host). Every console session
    /// ends.
    ResetPassword {
        /// Read the new password from this file instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Write the recovery kit (master key, bucket, prefix) as JSON.
    RecoveryKit {
        /// Where to write it (created owner-only); standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML config file. Keys: iscsi_listen, api_listen, https_listen,
    /// data_dir, cache_size, cache_disk, key_file,
    /// recovery_point_interval_secs, garbage_sweep_interval_secs,
    /// shutdown_timeout_secs, tls_cert,
    /// tls_key, console_names, metrics_token, session_idle_timeout_secs,
    /// console_sample_secs, library_personality, iscsi_access,
    /// iscsi_max_sessions, [discovery_chap], [cloud] (prefix,
    /// [cloud.store], [cloud.bandwidth], [cloud.uploader]); README.md,
    /// "Using it", says what each means. Flags win over the file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// iSCSI portal address [default: 0.0.0.0:3260].
    #[arg(long)]
    iscsi_listen: Option<SocketAddr>,
    /// Plain-HTTP API address, loopback only: for the local CLI and tests
    /// [default: 127.0.0.1:8080].
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// The console and API over HTTPS [default: 0.0.0.0:8443].
    #[arg(long)]
    https_listen: Option<SocketAddr>,
    /// Your own certificate (PEM chain) for the console; a self-signed one
    /// is made on first start otherwise.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A DNS name the console answers to (repeatable); localhost, the host
    /// name and the machine's addresses always are.
    #[arg(long = "console-name")]
    console_names: Vec<String>,
    /// Claim an unactivated gateway headlessly with this activation
    /// request (JSON: the body of POST /api/v1/activate, without the code).
    #[arg(long)]
    activate_from: Option<PathBuf>,
    /// Data directory [default: ./sgw-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Local cache size, e.g. 64GiB [default: 16GiB].
    #[arg(long, value_parser = parse_size, allow_hyphen_values = true)]
    cache_size: Option<u64>,
    /// The master key file; made on first start if absent
    /// [default: DATA_DIR/master.key]. Keep a copy apart from the gateway.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Seconds between recovery points of each changed volume [default: 300].
    #[arg(long)]
    recovery_point_interval: Option<u64>,
    /// Seconds a stop (SIGTERM) may spend uploading, to commit a final
    /// recovery point of every changed volume [default: 60].
    #[arg(long)]
    shutdown_timeout: Option<u64>,
    /// Who may log in to an iSCSI target that has no initiator list:
    /// nobody (acl-required) or anyone (open) [default: acl-required].
    #[arg(long, value_enum)]
    iscsi_access: Option<gateway::access::IscsiAccess>,
    /// Use this S3 bucket instead of the embedded local store.
    /// Credentials come from the standard AWS chain (environment,
    /// profile, instance role).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// S3 endpoint URL for S3-compatible services (MinIO, Ceph RGW...).
    #[arg(long, requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    #[arg(long, requires = "s3_bucket", default_value = "us-east-1")]
    s3_region: String,
    /// Path-style addressing (most non-AWS services need it).
    #[arg(long, requires = "s3_bucket")]
    s3_path_style: bool,
    /// This gateway's key prefix in the bucket.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Adopt the volumes and snapshots a previous gateway left in the
    /// bucket (this data directory must have no volumes).
    #[arg(long)]
    recover: bool,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Snapshot a cached volume: a recovery point made now and kept.
    Create { volume: String },
    /// List snapshots.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot; chunks other versions use stay.
    Delete { id: String },
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Create a volume: an iSCSI target with the volume at LUN 0.
    Create {
        name: String,
        /// Size, e.g. 10GiB, 500G, 1T or a byte count; a clone defaults to
        /// its source's size.
        #[arg(long, value_parser = parse_size, allow_hyphen_values = true, required_unless_present_any = ["from_snapshot", "from_volume"])]
        size: Option<u64>,
        /// cached (the primary copy in the cloud) or local (a file here).
        #[arg(long, value_enum, default_value = "cached")]
        kind: KindArg,
        /// Clone a snapshot.
        #[arg(long, conflicts_with = "from_volume")]
        from_snapshot: Option<String>,
        /// Clone a cached volume as it is now.
        #[arg(long)]
        from_volume: Option<String>,
        #[arg(long, requires = "chap_secret")]
        chap_user: Option<String>,
        #[arg(long, requires = "chap_user")]
        chap_secret: Option<String>,
        #[arg(long, requires_all = ["mutual_secret", "chap_user"])]
        mutual_user: Option<String>,
        #[arg(long, requires = "mutual_user")]
        mutual_secret: Option<String>,
        /// Present the volume as a removable-cartridge disk (RDX style):
        /// backup software may lock the medium in and eject it.
        #[arg(long)]
        removable: bool,
        /// The initiator IQNs allowed to log in, comma-separated. Without
        /// them the gateway's iscsi_access decides (acl-required, the
        /// default: nobody may log in until initiators are set).
        #[arg(long, value_delimiter = ',')]
        initiators: Vec<String>,
    },
    /// List volumes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume and its data; refused while initiators are logged
    /// in, unless --force (which logs them out first).
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Commit a recovery point of a cached volume now.
    RecoveryPoint { name: String },
    /// Show one volume: state, recovery point, and the LBA ranges of chunks
    /// whose cloud copy cannot be read back.
    Show {
        name: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read and verify every cloud object a cached volume's map names
    /// (without filling the cache); damaged chunks are recorded on the
    /// volume and listed with their LBA ranges.
    Scrub {
        name: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set or remove a volume's CHAP; it applies from the next login
    /// (sessions logged in go on until they log out).
    SetChap {
        name: String,
        /// The initiator's CHAP user.
        #[arg(long, required_unless_present = "none", conflicts_with = "none")]
        chap_user: Option<String>,
        /// A file holding the CHAP secret (12-255 characters); without it
        /// the secret is read from standard input.
        #[arg(long)]
        chap_secret_file: Option<PathBuf>,
        /// Mutual CHAP: the target's user; its secret comes from
        /// --mutual-secret-file.
        #[arg(long, requires_all = ["mutual_secret_file", "chap_user"])]
        mutual_user: Option<String>,
        #[arg(long, requires = "mutual_user")]
        mutual_secret_file: Option<PathBuf>,
        /// Remove CHAP: any initiator may log in.
        #[arg(long)]
        none: bool,
    },
    /// Set or remove the initiators allowed to log in to a volume; it
    /// applies from the next login (sessions logged in go on).
    SetInitiators {
        name: String,
        /// Initiator IQNs, comma-separated.
        #[arg(value_delimiter = ',', required_unless_present = "clear", conflicts_with = "clear")]
        initiators: Vec<String>,
        /// Remove the list: the gateway's iscsi_access decides (under
        /// acl-required, nobody may log in).
        #[arg(long)]
        clear: bool,
    },
}

/// A secret from a file, or one line of standard input; never from argv,
/// where other local users can read it.
fn read_secret(file: Option<&std::path::Path>, what: &str) -> Result<String, String> {
    let text = match file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            eprintln!("{what} (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
            line
        }
    };
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Cached,
    Local,
}

fn print_table(vols: &[VolumeInfo]) {
    let rows: Vec<[String; 8]> = vols
        .iter()
        .map(|v| {
            let chap = if v.mutual_chap_enabled {
                "mutual"
            } else if v.chap_enabled {
                "yes"
            } else {
                "no"
            };
            let state = v.state_text();
            let kind = match v.kind {
                VolumeKind::Cached => "cached",
                VolumeKind::Local => "local",
            };
            let rp = v.recovery_point_age_secs.map_or_else(|| "-".to_owned(), age_text);
            [v.name.clone(), size_text(v.size_bytes), kind.into(), state, chap.into(), v.lun.to_string(), rp, v.target_iqn.clone()]
        })
        .collect();
    let header = ["NAME", "SIZE", "KIND", "STATE", "CHAP", "LUN", "RP AGE", "TARGET"].map(String::from);
    // Columns as wide as their widest cell, so long names never shift
    // the others out of line.
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| if i == 1 { format!("{cell:>w$}") } else { format!("{cell:<w$}") })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// An age for people: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`.
fn age_text(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The data path allocates and frees buffers of about 1 MiB all the time
/// (Data-Out segments, cache reads, chunks on their way to and from the
/// cloud). glibc serves those from fresh mmap()s, so every buffer costs 256
/// page faults and the zeroing of 1 MiB by the kernel: a quarter of the
/// CPU time of a cached volume's 1 MiB reads. Serving them from the heap,
/// and keeping freed heap memory instead of trimming it at once, reuses
/// pages that are already mapped.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    tune_allocator();
    let cloud = args.s3_bucket.map(|bucket| gateway::cloud::CloudConfig {
        store: StoreConfig::S3(S3Config {
            bucket,
            region: args.s3_region,
            endpoint: args.s3_endpoint,
            path_style: args.s3_path_style,
            access_key_id: None,
            secret_access_key: None,
            connect_timeout_secs: 10,
        }),
        prefix: args.prefix.clone(),
        retry: Default::default(),
        bandwidth: Default::default(),
        uploader: Default::default(),
        zstd_level: gateway::cloud::DEFAULT_ZSTD_LEVEL,
    });
    let flags = ConfigFile {
        iscsi_listen: args.iscsi_listen,
        api_listen: args.api_listen,
        https_listen: args.https_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        console_names: (!args.console_names.is_empty()).then_some(args.console_names),
        metrics_token: None,
        session_idle_timeout_secs: None,
        console_sample_secs: None,
        data_dir: args.data_dir,
        cache_size: args.cache_size,
        cache_disk: None,
        recovery_point_interval_secs: args.recovery_point_interval,
        garbage_sweep_interval_secs: None,
        shutdown_timeout_secs: args.shutdown_timeout,
        key_file: args.key_file,
        cloud,
        library_personality: None,
        tape_min_size_bytes: None,
        iscsi_access: args.iscsi_access,
        iscsi_max_sessions: None,
        discovery_chap: None,
        power_control: None,
        update_public_key: None,
    };
    let sources = ConfigSources { file: args.config, flags };
    // Read once here so that a bad file or flag fails before logging starts.
    sources.load().map_err(|e| e.to_string())?;
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        // The console's Events page sees what the log shows.
        tracing_subscriber::registry().with(filter).with(log).with(gateway::console::events::EventLayer).init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let options = RunOptions { recover: args.recover, activate_from: args.activate_from };
    rt.block_on(gateway::daemon::run(sources, options)).map_err(|e| e.to_string())
}

fn volume(client: &Client, cmd: VolumeCommand) -> Result<(), String> {
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            kind,
            from_snapshot,
            from_volume,
            chap_user,
            chap_secret,
            mutual_user,
            mutual_secret,
            removable,
            initiators,
        } => {
            let chap = match (chap_user, chap_secret) {
                (Some(user), Some(secret)) => Some(VolumeChap { user, secret, mutual_user, mutual_secret }),
                _ => None,
            };
            let kind = match kind {
                KindArg::Cached => VolumeKind::Cached,
                KindArg::Local => VolumeKind::Local,
            };
            let req =
                CreateVolume { name, size_bytes: size, chap, kind: Some(kind), from_snapshot, from_volume, removable, initiators };
            let v = client.create_volume(&req).map_err(|e| e.to_string())?;
            println!("created {} ({}), target {} LUN {}", v.name, size_text(v.size_bytes), v.target_iqn, v.lun);
        }
        VolumeCommand::List { json } => {
            let vols = client.list_volumes().map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&vols).map_err(|e| e.to_string())?);
            } else {
                print_table(&vols);
            }
        }
        VolumeCommand::Delete { name, force } => {
            client.delete_volume(&name, force).map_err(|e| e.to_string())?;
            println!("deleted {name}");
        }
        VolumeCommand::SetChap { name, chap_user, chap_secret_file, mutual_user, mutual_secret_file, none } => {
            let chap = match (none, chap_user) {
                (true, _) | (false, None) => None,
                (false, Some(user)) => {
                    let secret = read_secret(chap_secret_file.as_deref(), "CHAP secret")?;
                    let mutual_secret = match &mutual_user {
                        Some(_) => Some(read_secret(mutual_secret_file.as_deref(), "mutual CHAP secret")?),
                        None => None,
                    };
                    Some(VolumeChap { user, secret, mutual_user, mutual_secret })
                }
            };
            let v = client
                .update_volume(&name, &gateway::access::AccessChange { chap: Some(chap), initiators: None })
                .map_err(|e| e.to_string())?;
            let state = if v.mutual_chap_enabled { "mutual" } else if v.chap_enabled { "on" } else { "off" };
            println!("{name}: CHAP {state}; it applies from the next login");
        }
        VolumeCommand::SetInitiators { name, initiators, clear } => {
            let initiators = if clear { Vec::new() } else { initiators };
            let v = client
                .update_volume(&name, &gateway::access::AccessChange { chap: None, initiators: Some(initiators) })
                .map_err(|e| e.to_string())?;
            println!("{name}: {}; it applies from the next login", gateway::access::initiators_text(&v.initiators));
        }
        VolumeCommand::RecoveryPoint { name } => {
            let rp = client.create_recovery_point(&name).map_err(|e| e.to_string())?;
            println!("recovery point {} of {} committed", rp.seq, rp.volume);
        }
        VolumeCommand::Show { name, json } => {
            let v = client.get_volume(&name).map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
            } else {
                print_volume(&v);
            }
        }
        VolumeCommand::Scrub { name, json } => {
            let report = client.scrub_volume(&name).map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                println!("{}: {} objects read and verified", report.volume, report.objects_checked);
                print_damaged(&report.damaged);
            }
        }
    }
    Ok(())
}

fn print_volume(v: &VolumeInfo) {
    let state = v.state_text();
    println!("name:      {}", v.name);
    println!("kind:      {:?}", v.kind);
    println!("size:      {}", size_text(v.size_bytes));
    println!("state:     {state}");
    println!("target:    {} LUN {}", v.target_iqn, v.lun);
    if let Some(age) = v.recovery_point_age_secs {
        println!("recovery point: {} ago", age_text(age));
    }
    print_damaged(&v.damaged);
}

/// The damaged chunks, one line each with its LBA range, or that there are none.
fn print_damaged(damaged: &[gateway::cached::damage::DamagedChunk]) {
    if damaged.is_empty() {
        println!("damaged:   none");
        return;
    }
    println!("damaged:   {} chunk(s) cannot be read back from the cloud", damaged.len());
    for d in damaged {
        let held = if d.writes_held { "; writes held in the cache until the range is rewritten or unmapped" } else { "" };
        println!("  LBA {}-{} (chunk {}, object {}): {}{held}", d.first_lba, d.last_lba, d.chunk, d.object, d.error);
    }
}

fn print_snapshots(snaps: &[SnapshotRecord]) {
    println!("{:<22} {:<24} {:>12} CREATED", "ID", "VOLUME", "SIZE");
    for s in snaps {
        println!("{:<22} {:<24} {:>12} {}", s.id, s.volume_name, size_text(s.size_bytes), gateway::units::date_text(s.created_unix));
    }
}

fn snapshot(client: &Client, cmd: SnapshotCommand) -> Result<(), String> {
    match cmd {
        SnapshotCommand::Create { volume } => {
            let s = client.create_snapshot(&volume).map_err(|e| e.to_string())?;
            println!("{}", s.id);
        }
        SnapshotCommand::List { json } => {
            let snaps = client.list_snapshots().map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snaps).map_err(|e| e.to_string())?);
            } else {
                print_snapshots(&snaps);
            }
        }
        SnapshotCommand::Delete { id } => {
            client.delete_snapshot(&id).map_err(|e| e.to_string())?;
            println!("deleted {id}");
        }
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let summary = rt.block_on(args.run(&mut std::io::stdout())).map_err(|e| e.to_string())?;
    if summary.failed > 0 {
        return Err(format!("{} of {} objects failed verification", summary.failed, summary.objects));
    }
    Ok(())
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("SGW_DATA_DIR").map_or_else(|| PathBuf::from("./sgw-data"), PathBuf::from)
}

fn client(api: &Option<String>) -> Result<Client, String> {
    let api = api.clone().unwrap_or_else(|| format!("unix:{}", default_data_dir().join("sgw.sock").display()));
    let token = std::env::var("SGW_TOKEN").ok().filter(|t| !t.is_empty());
    Client::new(&api, token).map_err(|e| e.to_string())
}

fn token(client: &Client, cmd: TokenCommand) -> Result<(), String> {
    match cmd {
        TokenCommand::Create { name } => {
            let t = client.create_token(&name).map_err(|e| e.to_string())?;
            eprintln!("token {} ({}) created; it is shown only now:", t.info.id, t.info.name);
            println!("{}", t.token);
        }
        TokenCommand::List { json } => {
            let tokens = client.list_tokens().map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens).map_err(|e| e.to_string())?);
            } else {
                println!("{:<14} {:<32} CREATED", "ID", "NAME");
                for t in tokens {
                    println!("{:<14} {:<32} {}", t.id, t.name, gateway::units::date_text(t.created_unix));
                }
            }
        }
        TokenCommand::Revoke { id } => {
            client.revoke_token(&id).map_err(|e| e.to_string())?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn admin(client: &Client, cmd: AdminCommand) -> Result<(), String> {
    match cmd {
        AdminCommand::ResetPassword { password_file } => {
            let text = match password_file {
                Some(p) => std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?,
                None => {
                    eprintln!("new admin password (one line on standard input):");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
                    line
                }
            };
            let new_password = text.trim_end_matches(['\r', '\n']).to_string();
            client
                .set_password(&gateway::admin::routes::ChangePassword { current_password: None, new_password })
                .map_err(|e| e.to_string())?;
            println!("admin password changed; console sessions ended");
        }
        AdminCommand::RecoveryKit { out } => {
            let kit = client.recovery_kit().map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&kit).map_err(|e| e.to_string())?;
            match out {
                Some(p) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&p)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
                    eprintln!("recovery kit written to {}: keep it apart from the gateway", p.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Volume(cmd) => client(&cli.api).and_then(|c| volume(&c, cmd)),
        Command::Snapshot(cmd) => client(&cli.api).and_then(|c| snapshot(&c, cmd)),
        Command::Tape(cmd) => client(&cli.api).and_then(|c| gateway::tapes::cli::run(&c, cmd, &read_secret)),
        Command::Recover => client(&cli.api)
            .and_then(|c| c.recover().map_err(|e| e.to_string()))
            .map(|r| println!("recovered {} volumes", r.volumes)),
        Command::Inspect(args) => inspect(args),
        Command::ActivationCode { data_dir } => {
            let dir = data_dir.unwrap_or_else(default_data_dir);
            gateway::admin::activation::ActivationCode::read(&dir).map(|code| println!("{code}")).map_err(|e| {
                format!(
                    "no activation code in {}: {e} (the gateway is activated already, or `sgw serve` has not \
                     started there)",
                    dir.display()
                )
            })
        }
        Command::Console { config, data_dir, root } => {
            let data_dir = data_dir.or_else(|| config.is_none().then(default_data_dir));
            let sources = ConfigSources { file: config, flags: ConfigFile { data_dir, ..Default::default() } };
            gateway::local_console::run(gateway::local_console::ConsoleOptions { sources, root })
        }
        Command::Update(cmd) => gateway::update::cli::run(cmd),
        Command::Token(cmd) => client(&cli.api).and_then(|c| token(&c, cmd)),
        Command::Bandwidth(cmd) => client(&cli.api).and_then(|c| {
            let schedule = match cmd {
                BandwidthCommand::Show => c.bandwidth().map_err(|e| e.to_string())?,
                BandwidthCommand::Set { file } => {
                    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                    let schedule = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                    c.set_bandwidth(&schedule).map_err(|e| e.to_string())?
                }
            };
            println!("{}", serde_json::to_string_pretty(&schedule).map_err(|e| e.to_string())?);
            Ok(())
        }),
        Command::Admin(cmd) => client(&cli.api).and_then(|c| admin(&c, cmd)),
        Command::Gateway { json } => client(&cli.api).and_then(|c| {
            let g = c.gateway().map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&g).map_err(|e| e.to_string())?);
            } else {
                println!("name:            {}", g.name);
                println!("timezone:        {}", g.timezone);
                println!("version:         {}", g.version);
                println!("uptime:          {} s", g.uptime_secs);
                println!("activated:       {}", gateway::units::date_text(g.activated_unix));
                println!("tls fingerprint: {}", g.tls_fingerprint.unwrap_or_default());
                println!("master key:      {}", g.master_key_path.display());
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sgw: {e}");
            ExitCode::FAILURE
        }
    }
}
