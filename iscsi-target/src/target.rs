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
    /// The initiator names allowed to log in. Empty means the target has
    /// no list of its own, and the server's [`AccessPolicy`] decides.
    pub initiators: Vec<String>,
    /// LUN number to logical unit.
    pub luns: BTreeMap<u64, Arc<dyn LogicalUnit>>,
}

/// Who may log in to a target that has no initiator list of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessPolicy {
    /// Any initiator (CHAP, where set, still applies).
    Open,
    /// Nobody: every target must name its initiators. The default, so that
    /// a target is never reachable from the whole network by accident.
    #[default]
    AclRequired,
}

impl Target {
    /// Whether `initiator` may log in. iSCSI names are case-insensitive
    /// (RFC 7143 §4.2.7.1: they are normalized to lower case).
    pub fn admits(&self, initiator: &str, policy: AccessPolicy) -> bool {
        if self.initiators.is_empty() {
            return policy == AccessPolicy::Open;
        }
        self.initiators.iter().any(|allowed| allowed.eq_ignore_ascii_case(initiator))
    }

    /// Whether SendTargets names this target to a discovery session of
    /// `initiator`: only a target it may log in to, and a target that needs
    /// CHAP only when the discovery session itself authenticated (with the
    /// discovery CHAP), so that an anonymous discovery learns nothing of
    /// the protected targets.
    pub fn listed_in_discovery(&self, initiator: &str, policy: AccessPolicy, discovery_authenticated: bool) -> bool {
        self.admits(initiator, policy) && (self.chap.is_none() || discovery_authenticated)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::chap::ChapCredentials;

    fn target(initiators: &[&str], chap: bool) -> Target {
        Target {
            name: "iqn.2026-11.test:t".into(),
            alias: None,
            chap: chap.then(|| ChapConfig {
                initiator: ChapCredentials { user: "u".into(), secret: "secret-secret".into() },
                mutual: None,
            }),
            initiators: initiators.iter().map(|s| s.to_string()).collect(),
            luns: BTreeMap::new(),
        }
    }

    const HOST_A: &str = "iqn.1994-05.com.redhat:host-a";
    const HOST_B: &str = "iqn.1994-05.com.redhat:host-b";

    #[test]
    fn a_list_admits_only_its_initiators_under_either_policy() {
        let t = target(&[HOST_A], false);
        for policy in [AccessPolicy::Open, AccessPolicy::AclRequired] {
            assert!(t.admits(HOST_A, policy));
            assert!(t.admits(&HOST_A.to_uppercase(), policy), "names compare without case");
            assert!(!t.admits(HOST_B, policy));
            assert!(!t.admits("", policy));
        }
    }

    #[test]
    fn without_a_list_the_policy_decides() {
        let t = target(&[], false);
        assert!(t.admits(HOST_B, AccessPolicy::Open));
        assert!(!t.admits(HOST_B, AccessPolicy::AclRequired));
        assert_eq!(AccessPolicy::default(), AccessPolicy::AclRequired);
    }

    #[test]
    fn discovery_hides_what_the_initiator_cannot_reach() {
        let open = target(&[], false);
        let listed = target(&[HOST_A], false);
        let chap = target(&[HOST_A], true);
        assert!(open.listed_in_discovery(HOST_B, AccessPolicy::Open, false));
        assert!(!open.listed_in_discovery(HOST_B, AccessPolicy::AclRequired, true));
        assert!(listed.listed_in_discovery(HOST_A, AccessPolicy::AclRequired, false));
        assert!(!listed.listed_in_discovery(HOST_B, AccessPolicy::Open, true));
        assert!(!chap.listed_in_discovery(HOST_A, AccessPolicy::Open, false), "CHAP target shown to anonymous discovery");
        assert!(chap.listed_in_discovery(HOST_A, AccessPolicy::Open, true));
        assert!(!chap.listed_in_discovery(HOST_B, AccessPolicy::Open, true));
    }
}
