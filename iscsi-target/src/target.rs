//! What the transport serves: targets, each with its LUNs and its access
//! policy, found through a catalog the embedding application implements.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::login::chap::ChapConfig;
use crate::scsi::LogicalUnit;

/// One iSCSI target node.
pub struct Target {
    /// The iSCSI qualified name.
    pub name: String,
    pub alias: Option<String>,
    /// Required CHAP, if any.
    pub chap: Option<ChapConfig>,
    /// LUN number to logical unit.
    pub luns: BTreeMap<u64, Arc<dyn LogicalUnit>>,
}

/// Looks targets up by name. The gateway implements it over its volumes and
/// tape devices, so targets come and go without restarting the listener.
pub trait TargetCatalog: Send + Sync {
    fn lookup(&self, name: &str) -> Option<Arc<Target>>;
    /// Every target, for SendTargets=All.
    fn list(&self) -> Vec<Arc<Target>>;
}

/// A fixed set of targets, for tests and simple embeddings.
#[derive(Default)]
pub struct StaticCatalog {
    pub targets: Vec<Arc<Target>>,
}

impl TargetCatalog for StaticCatalog {
    fn lookup(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.iter().find(|t| t.name == name).cloned()
    }

    fn list(&self) -> Vec<Arc<Target>> {
        self.targets.clone()
    }
}
