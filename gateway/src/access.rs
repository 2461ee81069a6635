//! iSCSI access control as the gateway configures it: the gateway-wide
//! policy (`iscsi_access`), initiator lists, the `{"chap", "initiators"}`
//! change both volumes and the tape library take, the iSCSI server's
//! settings, and the counter of refused logins.

use std::sync::Arc;

use iscsi_target::login::LoginPolicy;
use iscsi_target::server::{LoginFailure, LoginObserver, ServerConfig};
use iscsi_target::target::AccessPolicy;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Config;
use crate::volumes::VolumeChap;

/// Who may log in to a target without an initiator list (`iscsi_access`).
///
/// The default is `acl-required`: a storage product must not hand its
/// volumes to whoever can reach port 3260, and LIO, NetApp igroups and
/// most arrays likewise map a LUN to no host until the admin names one.
/// `open` is for labs and for hosts protected by CHAP alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IscsiAccess {
    /// Any initiator may log in to a target without a list.
    Open,
    /// A target without a list admits nobody.
    #[default]
    AclRequired,
}

impl IscsiAccess {
    pub fn policy(self) -> AccessPolicy {
        match self {
            IscsiAccess::Open => AccessPolicy::Open,
            IscsiAccess::AclRequired => AccessPolicy::AclRequired,
        }
    }
}

/// More names than any real host group needs; bounds the record and the
/// comparison each login makes.
const MAX_INITIATORS: usize = 64;
/// RFC 7143 §4.2.7.1: an iSCSI name is at most 223 bytes.
const MAX_NAME_LEN: usize = 223;

/// Checks initiator names and returns them lower-cased (iSCSI names are
/// case-insensitive), without duplicates, in the order given.
pub fn validate_initiators(names: &[String]) -> Result<Vec<String>, String> {
    if names.len() > MAX_INITIATORS {
        return Err(format!("at most {MAX_INITIATORS} initiators per target"));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let n = name.trim().to_ascii_lowercase();
        let well_formed = ["iqn.", "eui.", "naa."].iter().any(|p| n.starts_with(p))
            && n.len() > 4
            && n.len() <= MAX_NAME_LEN
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if !well_formed {
            return Err(format!(
                "invalid initiator name {name:?}: give iSCSI names (iqn., eui. or naa.), at most {MAX_NAME_LEN} characters"
            ));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// How the CLI shows an initiator list.
pub fn initiators_text(initiators: &[String]) -> String {
    if initiators.is_empty() {
        "no initiator list (iscsi_access decides)".into()
    } else {
        format!("initiators {}", initiators.join(", "))
    }
}

/// `Some(x)` for a field that is present, even as `null`, so that a
/// missing field ("unchanged") and `null` ("remove") differ.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The body of `PATCH /api/v1/volumes/{name}` and `PATCH /api/v1/library`:
/// `chap` sets CHAP (`null` removes it), `initiators` sets the allowed
/// initiators (`[]` removes the list). A field left out is unchanged. The
/// next login uses the change; sessions logged in go on until they log out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessChange {
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<VolumeChap>, nullable)]
    pub chap: Option<Option<VolumeChap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiators: Option<Vec<String>>,
}

impl AccessChange {
    /// Parses a body that must change something, so that `{}` is refused
    /// instead of silently doing nothing.
    pub fn parse(body: &[u8]) -> Result<AccessChange, String> {
        let change: AccessChange = serde_json::from_slice(body).map_err(|e| format!("invalid request: {e}"))?;
        if change.chap.is_none() && change.initiators.is_none() {
            return Err("nothing to change: give \"chap\" (an object, or null to remove it) and/or \"initiators\" \
                        (a list of IQNs, [] to remove it)"
                .into());
        }
        Ok(change)
    }
}

/// Counts refused logins in `sgw_iscsi_login_failures_total{reason}`
/// (`chap`, `acl`, `max_sessions`).
pub struct LoginFailureCounter {
    failures: IntCounterVec,
}

impl std::fmt::Debug for LoginFailureCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginFailureCounter")
    }
}

impl LoginFailureCounter {
    pub fn register(registry: &Registry) -> Result<LoginFailureCounter, prometheus::Error> {
        let failures = IntCounterVec::new(
            Opts::new("sgw_iscsi_login_failures_total", "iSCSI logins refused, by reason (chap, acl, max_sessions)"),
            &["reason"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        // Every reason from the start: a dashboard sees 0, not no series.
        for f in [LoginFailure::Authentication, LoginFailure::Authorization, LoginFailure::SessionLimit] {
            failures.with_label_values(&[f.label()]);
        }
        Ok(LoginFailureCounter { failures })
    }
}

impl LoginObserver for LoginFailureCounter {
    fn login_failed(&self, failure: LoginFailure) {
        self.failures.with_label_values(&[failure.label()]).inc();
    }
}

/// The iSCSI server's settings from the gateway's configuration; an error
/// names a bad `discovery_chap`.
pub fn server_config(config: &Config, registry: &Registry) -> Result<ServerConfig, String> {
    if let Some(c) = &config.discovery_chap {
        crate::volumes::validate_chap(c).map_err(|e| format!("discovery_chap: {e}"))?;
    }
    let counter = LoginFailureCounter::register(registry).map_err(|e| e.to_string())?;
    let counter: Arc<dyn LoginObserver> = Arc::new(counter);
    Ok(ServerConfig {
        login: LoginPolicy {
            access: config.iscsi_access.policy(),
            discovery_chap: crate::volumes::chap_config(config.discovery_chap.as_ref()),
        },
        max_sessions: config.iscsi_max_sessions,
        login_observer: Some(counter),
        ..ServerConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiator_names_are_checked_and_normalized() {
        let names = vec!["IQN.1994-05.com.redhat:Host".to_string(), "iqn.1994-05.com.redhat:host".into()];
        assert_eq!(validate_initiators(&names).unwrap(), vec!["iqn.1994-05.com.redhat:host".to_string()]);
        for bad in ["host-a", "iqn.", "iqn.a b", "iqn.a,b", &format!("iqn.{}", "x".repeat(230))] {
            assert!(validate_initiators(&[bad.to_string()]).is_err(), "{bad:?} accepted");
        }
        assert!(validate_initiators(&vec!["iqn.a:b".to_string(); MAX_INITIATORS + 1]).is_err());
    }

    #[test]
    fn a_change_tells_absent_from_null() {
        let c = AccessChange::parse(br#"{"chap": null}"#).unwrap();
        assert_eq!((c.chap, c.initiators), (Some(None), None));
        let c = AccessChange::parse(br#"{"initiators": []}"#).unwrap();
        assert_eq!((c.chap, c.initiators), (None, Some(vec![])));
        assert!(AccessChange::parse(b"{}").is_err());
        assert!(AccessChange::parse(br#"{"acl": []}"#).is_err());
        let body = serde_json::to_string(&AccessChange { chap: Some(None), initiators: None }).unwrap();
        assert_eq!(body, r#"{"chap":null}"#);
    }

    #[test]
    fn policy_names() {
        let p: IscsiAccess = serde_json::from_str("\"acl-required\"").unwrap();
        assert_eq!(p, IscsiAccess::AclRequired);
        assert_eq!(IscsiAccess::default(), IscsiAccess::AclRequired);
        assert_eq!(IscsiAccess::Open.policy(), AccessPolicy::Open);
    }
}
