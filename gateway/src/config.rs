//! Daemon configuration: defaults, an optional TOML file, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `sgw serve` needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The iSCSI portal.
    pub iscsi_listen: SocketAddr,
    /// The admin REST API and metrics.
    pub api_listen: SocketAddr,
    /// Where volumes and state live.
    pub data_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            iscsi_listen: SocketAddr::from(([0, 0, 0, 0], 3260)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./sgw-data"),
        }
    }
}

/// The config file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub iscsi_listen: Option<SocketAddr>,
    pub api_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

impl Config {
    /// Defaults, overridden by the file (if any), overridden by flags.
    pub fn load(file: Option<&Path>, flags: ConfigFile) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let f: ConfigFile =
                toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
            c.apply(f);
        }
        c.apply(flags);
        Ok(c)
    }

    fn apply(&mut self, f: ConfigFile) {
        if let Some(v) = f.iscsi_listen {
            self.iscsi_listen = v;
        }
        if let Some(v) = f.api_listen {
            self.api_listen = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(&p, "iscsi_listen = \"127.0.0.1:3300\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        let flags = ConfigFile { data_dir: Some("/tmp/y".into()), ..Default::default() };
        let c = Config::load(Some(&p), flags).unwrap();
        assert_eq!(c.iscsi_listen, "127.0.0.1:3300".parse().unwrap());
        assert_eq!(c.api_listen, Config::default().api_listen);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sgw.toml");
        std::fs::write(&p, "iscsi_port = 1\n").unwrap();
        assert!(matches!(Config::load(Some(&p), ConfigFile::default()), Err(ConfigError::Parse { .. })));
    }
}
