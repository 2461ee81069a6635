//! `sgw`: the storage gateway daemon and its command-line client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gateway::api::CreateVolume;
use gateway::client::Client;
use gateway::cloud::inspect::InspectArgs;
use gateway::config::{Config, ConfigFile};
use gateway::volumes::{VolumeChap, VolumeInfo};

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
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Create a volume: an iSCSI target with the volume at LUN 0.
    Create {
        name: String,
        /// Size, e.g. 10GiB, 500G, 1T or a byte count.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[arg(long, requires = "chap_secret")]
        chap_user: Option<String>,
        #[arg(long, requires = "chap_user")]
        chap_secret: Option<String>,
        #[arg(long, requires_all = ["mutual_secret", "chap_user"])]
        mutual_user: Option<String>,
        #[arg(long, requires = "mutual_user")]
        mutual_secret: Option<String>,
    },
    /// List volumes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume and its data.
    Delete { name: String },
}

fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new().with_binary().parse_size(s).map_err(|e| format!("invalid size {s:?}: {e}"))
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_table(vols: &[VolumeInfo]) {
    println!("{:<24} {:>12} {:<10} {:<5} TARGET", "NAME", "SIZE", "STATE", "CHAP");
    for v in vols {
        let chap = if v.mutual_chap_enabled {
            "mutual"
        } else if v.chap_enabled {
            "yes"
        } else {
            "no"
        };
        let state = serde_json::to_value(v.state).ok().and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default();
        println!("{:<24} {:>12} {:<10} {:<5} {}", v.name, human(v.size_bytes), state, chap, v.target_iqn);
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let flags = ConfigFile { iscsi_listen: args.iscsi_listen, api_listen: args.api_listen, data_dir: args.data_dir };
    let config = Config::load(args.config.as_deref(), flags).map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(gateway::daemon::run(config)).map_err(|e| e.to_string())
}

fn volume(client: &Client, cmd: VolumeCommand) -> Result<(), String> {
    match cmd {
        VolumeCommand::Create { name, size, chap_user, chap_secret, mutual_user, mutual_secret } => {
            let chap = match (chap_user, chap_secret) {
                (Some(user), Some(secret)) => Some(VolumeChap { user, secret, mutual_user, mutual_secret }),
                _ => None,
            };
            let v = client.create_volume(&CreateVolume { name, size_bytes: size, chap }).map_err(|e| e.to_string())?;
            println!("created {} ({}), target {} LUN {}", v.name, human(v.size_bytes), v.target_iqn, v.lun);
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
