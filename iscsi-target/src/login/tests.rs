use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::chap::{ChapConfig, ChapCredentials};
use super::*;
use crate::target::{AccessPolicy, StaticCatalog, Target};

struct FixedChallenge;

impl ChallengeSource for FixedChallenge {
    fn challenge(&mut self) -> (u8, Vec<u8>) {
        (7, vec![0x11; 16])
    }
}

fn catalog() -> Arc<dyn TargetCatalog> {
    let open = Target {
        name: "iqn.t:open".into(),
        alias: Some("open".into()),
        chap: None,
        initiators: Vec::new(),
        luns: BTreeMap::new(),
    };
    let listed = Target {
        name: "iqn.t:listed".into(),
        alias: None,
        chap: None,
        initiators: vec!["iqn.allowed".into()],
        luns: BTreeMap::new(),
    };
    let chap = Target {
        name: "iqn.t:chap".into(),
        alias: None,
        chap: Some(ChapConfig {
            initiator: ChapCredentials { user: "u".into(), secret: "s3cr3t-s3cr3t".into() },
            mutual: Some(ChapCredentials { user: "tu".into(), secret: "t-s3cr3t-s3cr3t".into() }),
        }),
        initiators: Vec::new(),
        luns: BTreeMap::new(),
    };
    Arc::new(StaticCatalog { targets: vec![Arc::new(open), Arc::new(listed), Arc::new(chap)] })
}

fn open_policy() -> LoginPolicy {
    LoginPolicy { access: AccessPolicy::Open, discovery_chap: None }
}

fn machine() -> LoginMachine {
    machine_with(open_policy())
}

fn machine_with(policy: LoginPolicy) -> LoginMachine {
    LoginMachine::new(catalog(), TargetLimits::default(), policy, Box::new(FixedChallenge))
}

fn req(csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> LoginRequest {
    LoginRequest {
        transit,
        cont: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 0, 0, 1],
        tsih: 0,
        itt: 1,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data: Bytes::from(text::encode(keys)),
    }
}

fn key<'a>(r: &'a LoginReply, k: &str) -> Option<&'a str> {
    r.keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

fn md5_response(id: u8, secret: &str, challenge: &[u8]) -> String {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret.as_bytes());
    h.update(challenge);
    format!("0x{}", hex::encode(h.finalize()))
}

#[test]
fn open_target_straight_to_full_feature() {
    let mut m = machine();
    let r = req(1, 3, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:open"), ("MaxBurstLength", "65536")]);
    let LoginStep::Complete(reply, result) = m.step(&r) else { panic!("login did not complete") };
    assert!(reply.transit && reply.nsg == 3);
    assert_eq!(key(&reply, "TargetPortalGroupTag"), Some("1"));
    assert_eq!(key(&reply, "TargetAlias"), Some("open"));
    assert_eq!(key(&reply, "MaxBurstLength"), Some("65536"));
    assert!(key(&reply, "MaxRecvDataSegmentLength").is_some());
    assert_eq!(result.params.max_burst_length, 65536);
    assert_eq!(result.target.map(|t| t.name.clone()), Some("iqn.t:open".to_string()));
}

#[test]
fn security_then_operational_with_auth_none() {
    let mut m = machine();
    let r = req(0, 1, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:open"), ("AuthMethod", "None")]);
    let LoginStep::Continue(reply) = m.step(&r) else { panic!() };
    assert_eq!(key(&reply, "AuthMethod"), Some("None"));
    assert!(reply.transit && reply.nsg == 1);
    let LoginStep::Complete(..) = m.step(&req(1, 3, true, &[("HeaderDigest", "None")])) else { panic!() };
}

#[test]
fn unknown_target_and_missing_name() {
    let mut m = machine();
    let LoginStep::Failed(r) = m.step(&req(0, 1, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.nope")]))
    else {
        panic!()
    };
    assert_eq!(r.status, LoginStatus::NOT_FOUND);
    let mut m = machine();
    let LoginStep::Failed(r) = m.step(&req(0, 1, true, &[("TargetName", "iqn.t:open")])) else { panic!() };
    assert_eq!(r.status, LoginStatus::MISSING_PARAMETER);
}

#[test]
fn discovery_session() {
    let mut m = machine();
    let LoginStep::Complete(reply, result) =
        m.step(&req(1, 3, true, &[("InitiatorName", "iqn.i"), ("SessionType", "Discovery"), ("InitialR2T", "Yes")]))
    else {
        panic!()
    };
    assert!(result.target.is_none());
    assert_eq!(key(&reply, "InitialR2T"), Some("Irrelevant"));
    assert_eq!(key(&reply, "TargetPortalGroupTag"), None);
}

fn chap_start(m: &mut LoginMachine) {
    let r = req(0, 1, false, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:chap"), ("AuthMethod", "CHAP,None")]);
    let LoginStep::Continue(reply) = m.step(&r) else { panic!() };
    assert_eq!(key(&reply, "AuthMethod"), Some("CHAP"));
    let LoginStep::Continue(reply) = m.step(&req(0, 1, false, &[("CHAP_A", "5")])) else { panic!() };
    assert_eq!(key(&reply, "CHAP_I"), Some("7"));
    assert_eq!(key(&reply, "CHAP_C"), Some("0x11111111111111111111111111111111"));
}

#[test]
fn mutual_chap_succeeds() {
    let mut m = machine();
    chap_start(&mut m);
    let resp = md5_response(7, "s3cr3t-s3cr3t", &[0x11; 16]);
    let r = req(0, 1, true, &[("CHAP_N", "u"), ("CHAP_R", &resp), ("CHAP_I", "9"), ("CHAP_C", "0x0102030405")]);
    let LoginStep::Continue(reply) = m.step(&r) else { panic!("CHAP refused") };
    assert!(reply.transit);
    assert_eq!(key(&reply, "CHAP_N"), Some("tu"));
    assert_eq!(key(&reply, "CHAP_R"), Some(md5_response(9, "t-s3cr3t-s3cr3t", &[1, 2, 3, 4, 5]).as_str()));
    let LoginStep::Complete(..) = m.step(&req(1, 3, true, &[])) else { panic!() };
}

#[test]
fn wrong_secret_is_refused() {
    let mut m = machine();
    chap_start(&mut m);
    let resp = md5_response(7, "wrong", &[0x11; 16]);
    let LoginStep::Failed(r) = m.step(&req(0, 1, true, &[("CHAP_N", "u"), ("CHAP_R", &resp)])) else { panic!() };
    assert_eq!(r.status, LoginStatus::AUTHENTICATION_FAILED);
}

#[test]
fn missing_secret_is_refused() {
    let mut m = machine();
    let r = req(0, 1, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:chap"), ("AuthMethod", "None")]);
    let LoginStep::Failed(r) = m.step(&r) else { panic!() };
    assert_eq!(r.status, LoginStatus::AUTHENTICATION_FAILED);
    // Skipping the security stage altogether is refused as well.
    let mut m = machine();
    let r = req(1, 3, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:chap")]);
    let LoginStep::Failed(r) = m.step(&r) else { panic!() };
    assert_eq!(r.status, LoginStatus::AUTHENTICATION_FAILED);
}

#[test]
fn unknown_keys_are_not_understood() {
    let mut m = machine();
    let r = req(1, 3, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:open"), ("X-foo", "1")]);
    let LoginStep::Complete(reply, _) = m.step(&r) else { panic!() };
    assert_eq!(key(&reply, "X-foo"), Some("NotUnderstood"));
}

#[test]
fn initiator_not_in_the_list_gets_authorization_failure() {
    let mut m = machine();
    let r = req(0, 1, true, &[("InitiatorName", "iqn.other"), ("TargetName", "iqn.t:listed"), ("AuthMethod", "None")]);
    let LoginStep::Failed(reply) = m.step(&r) else { panic!("an unlisted initiator logged in") };
    assert_eq!(reply.status, LoginStatus::AUTHORIZATION_FAILED);
    assert_eq!((m.initiator_name(), m.target_name()), (Some("iqn.other"), Some("iqn.t:listed")));
    let mut m = machine();
    let r = req(1, 3, true, &[("InitiatorName", "iqn.allowed"), ("TargetName", "iqn.t:listed")]);
    assert!(matches!(m.step(&r), LoginStep::Complete(..)), "a listed initiator was refused");
}

#[test]
fn acl_required_refuses_targets_without_a_list() {
    let mut m = machine_with(LoginPolicy { access: AccessPolicy::AclRequired, discovery_chap: None });
    let r = req(1, 3, true, &[("InitiatorName", "iqn.i"), ("TargetName", "iqn.t:open")]);
    let LoginStep::Failed(reply) = m.step(&r) else { panic!("a target without a list admitted an initiator") };
    assert_eq!(reply.status, LoginStatus::AUTHORIZATION_FAILED);
}

#[test]
fn discovery_chap_when_set() {
    let policy = LoginPolicy {
        access: AccessPolicy::Open,
        discovery_chap: Some(ChapConfig {
            initiator: ChapCredentials { user: "d".into(), secret: "discovery-secret".into() },
            mutual: None,
        }),
    };
    // Anonymous discovery is refused, in either stage.
    let mut m = machine_with(policy.clone());
    let r = req(0, 1, true, &[("InitiatorName", "iqn.i"), ("SessionType", "Discovery"), ("AuthMethod", "None")]);
    let LoginStep::Failed(reply) = m.step(&r) else { panic!("anonymous discovery accepted") };
    assert_eq!(reply.status, LoginStatus::AUTHENTICATION_FAILED);
    let mut m = machine_with(policy.clone());
    let r = req(1, 3, true, &[("InitiatorName", "iqn.i"), ("SessionType", "Discovery")]);
    assert!(matches!(m.step(&r), LoginStep::Failed(_)), "discovery skipped security");
    // The right secret logs in, and the result says it authenticated.
    let mut m = machine_with(policy);
    let r = req(0, 1, false, &[("InitiatorName", "iqn.i"), ("SessionType", "Discovery"), ("AuthMethod", "CHAP")]);
    let LoginStep::Continue(reply) = m.step(&r) else { panic!() };
    assert_eq!(key(&reply, "AuthMethod"), Some("CHAP"));
    let LoginStep::Continue(_) = m.step(&req(0, 1, false, &[("CHAP_A", "5")])) else { panic!() };
    let resp = md5_response(7, "discovery-secret", &[0x11; 16]);
    let LoginStep::Continue(_) = m.step(&req(0, 1, true, &[("CHAP_N", "d"), ("CHAP_R", &resp)])) else {
        panic!("discovery CHAP refused")
    };
    let LoginStep::Complete(_, result) = m.step(&req(1, 3, true, &[])) else { panic!() };
    assert!(result.chap_authenticated && result.target.is_none());
}
