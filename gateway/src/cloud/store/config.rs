//! Choosing and opening an object store from configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{LocalStore, ObjectStore, S3Store};
use crate::cloud::error::StoreError;

/// Where the cloud data goes. The embedded local store is the default when
/// no S3 service is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    Local(LocalStoreConfig),
    S3(S3Config),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalStoreConfig {
    /// Directory that holds the objects.
    pub root: PathBuf,
    /// How long a restore from an archive class takes, to rehearse the
    /// archive flow on one box (hours on AWS; zero completes at once).
    #[serde(default)]
    pub restore_delay_secs: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// e.g. `http://127.0.0.1:9000` for MinIO or moto; AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `endpoint/bucket/key` instead of `bucket.endpoint/key`; most
    /// non-AWS services need it.
    #[serde(default)]
    pub path_style: bool,
    /// Static credentials; the standard AWS chain is used when absent.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

/// Everything but the secret, which must not reach logs.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_connect_timeout_secs() -> u64 {
    10
}

impl S3Config {
    /// A path-style configuration with static credentials, the shape every
    /// S3 look-alike on a LAN needs.
    pub fn with_endpoint(
        bucket: &str,
        endpoint: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> S3Config {
        S3Config {
            bucket: bucket.to_owned(),
            region: default_region(),
            endpoint: Some(endpoint.to_owned()),
            path_style: true,
            access_key_id: Some(access_key_id.to_owned()),
            secret_access_key: Some(secret_access_key.to_owned()),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }
}

/// Opens the configured store.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Ok(match config {
        StoreConfig::Local(local) => Arc::new(LocalStore::open(
            &local.root,
            Duration::from_secs(local.restore_delay_secs),
        )?),
        StoreConfig::S3(s3) => Arc::new(S3Store::connect(s3).await),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_from_toml() {
        let local: StoreConfig =
            toml::from_str("kind = \"local\"\nroot = \"/var/lib/sgw/objects\"").unwrap();
        assert_eq!(
            local,
            StoreConfig::Local(LocalStoreConfig {
                root: "/var/lib/sgw/objects".into(),
                restore_delay_secs: 0
            })
        );
        let s3: StoreConfig =
            toml::from_str("kind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true")
                .unwrap();
        let StoreConfig::S3(s3) = s3 else {
            panic!("expected s3")
        };
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.path_style);
        assert_eq!(s3.access_key_id, None);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let config =
            S3Config::with_endpoint("b", "http://127.0.0.1:9000", "AKIDEXAMPLE", "wJalrXUtnFEMI");
        let shown = format!("{:?}", StoreConfig::S3(config));
        assert!(
            shown.contains("AKIDEXAMPLE") && !shown.contains("wJalrXUtnFEMI"),
            "{shown}"
        );
    }
}
