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
use gateway::config::{Config, ConfigFile};
use gateway::daemon::RunOptions;
use gateway::units::{parse_size, size_text};
use gateway::volumes::{VolumeChap, VolumeInfo, VolumeKind};

#[derive(Parser)]
#[command(name = "sgw", version, about = "Storage gateway: iSCSI volumes backed by S3")]
struct Cli {
    /// Where the CLI finds the gateway's admin API.
    #[arg(long, global = true, env = "SGW_API", default_value = "http://127.0.0.1:8080")]
    api: String,
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
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML config file (keys: iscsi_listen, api_listen, data_dir).
    #[arg(long)]
    config: Option<PathBuf>,
    /// iSCSI portal address [default: 0.0.0.0:3260].
    #[arg(long)]
    iscsi_listen: Option<SocketAddr>,
    /// Admin API address [default: 127.0.0.1:8080].
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// Data directory [default: ./sgw-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Local cache size, e.g. 64GiB [default: 16GiB].
    #[arg(long, value_parser = parse_size)]
    cache_size: Option<u64>,
    /// The master key file; made on first start if absent
    /// [default: DATA_DIR/master.key]. Keep a copy apart from the gateway.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Seconds between recovery points of each changed volume [default: 300].
    #[arg(long)]
    recovery_point_interval: Option<u64>,
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
        #[arg(long, value_parser = parse_size, required_unless_present_any = ["from_snapshot", "from_volume"])]
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
    },
    /// List volumes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume and its data.
    Delete { name: String },
    /// Commit a recovery point of a cached volume now.
    RecoveryPoint { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Cached,
    Local,
}

fn print_table(vols: &[VolumeInfo]) {
    println!("{:<24} {:>12} {:<6} {:<18} {:<6} TARGET", "NAME", "SIZE", "KIND", "STATE", "CHAP");
    for v in vols {
        let chap = if v.mutual_chap_enabled {
            "mutual"
        } else if v.chap_enabled {
            "yes"
        } else {
            "no"
        };
        let state = serde_json::to_value(v.state).ok().and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default();
        let kind = match v.kind {
            VolumeKind::Cached => "cached",
            VolumeKind::Local => "local",
        };
        println!("{:<24} {:>12} {:<6} {:<18} {:<6} {}", v.name, size_text(v.size_bytes), kind, state, chap, v.target_iqn);
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
        data_dir: args.data_dir,
        cache_size: args.cache_size,
        cache_disk: None,
        recovery_point_interval_secs: args.recovery_point_interval,
        key_file: args.key_file,
        cloud,
        library_personality: None,
        tape_min_size_bytes: None,
    };
    let config = Config::load(args.config.as_deref(), flags).map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(gateway::daemon::run(config, RunOptions { recover: args.recover })).map_err(|e| e.to_string())
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
                CreateVolume { name, size_bytes: size, chap, kind: Some(kind), from_snapshot, from_volume, removable };
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
        VolumeCommand::Delete { name } => {
            client.delete_volume(&name).map_err(|e| e.to_string())?;
            println!("deleted {name}");
        }
        VolumeCommand::RecoveryPoint { name } => {
            let rp = client.create_recovery_point(&name).map_err(|e| e.to_string())?;
            println!("recovery point {} of {} committed", rp.seq, rp.volume);
        }
    }
    Ok(())
}

fn print_snapshots(snaps: &[SnapshotRecord]) {
    println!("{:<22} {:<24} {:>12} CREATED", "ID", "VOLUME", "SIZE");
    for s in snaps {
        println!("{:<22} {:<24} {:>12} {}", s.id, s.volume_name, size_text(s.size_bytes), s.created_unix);
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Volume(cmd) => volume(&Client::new(&cli.api), cmd),
        Command::Snapshot(cmd) => snapshot(&Client::new(&cli.api), cmd),
        Command::Tape(cmd) => gateway::tapes::cli::run(&Client::new(&cli.api), cmd),
        Command::Recover => Client::new(&cli.api)
            .recover()
            .map(|r| println!("recovered {} volumes", r.volumes))
            .map_err(|e| e.to_string()),
        Command::Inspect(args) => inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sgw: {e}");
            ExitCode::FAILURE
        }
    }
}
