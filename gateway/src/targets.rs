//! The iSCSI target catalog of the whole gateway: volume targets from the
//! volume manager, tape targets (changer and drives) from the library.
//! SendTargets lists both.

use std::sync::Arc;

use iscsi_target::target::{Target, TargetCatalog};

use crate::tapes::TapeLibrary;
use crate::volumes::VolumeManager;

pub struct GatewayTargets {
    pub volumes: Arc<VolumeManager>,
    pub tapes: Arc<TapeLibrary>,
}

impl TargetCatalog for GatewayTargets {
    fn lookup(&self, name: &str) -> Option<Arc<Target>> {
        TargetCatalog::lookup(self.volumes.as_ref(), name).or_else(|| TargetCatalog::lookup(self.tapes.as_ref(), name))
    }

    fn list(&self) -> Vec<Arc<Target>> {
        let mut all = TargetCatalog::list(self.volumes.as_ref());
        all.extend(TargetCatalog::list(self.tapes.as_ref()));
        all
    }
}
