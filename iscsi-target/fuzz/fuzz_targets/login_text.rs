//! The login text path: `login::text::parse`, operational negotiation
//! (`Negotiator::offer`) and the `LoginMachine` stepping Login Requests
//! against a catalog with an open target and two CHAP targets.
//!
//! Input: Login Request records separated by 0xFF (a byte no valid text
//! contains). Each record is one control byte and the request's text:
//! control bit 7 is T (transit), bit 6 C (continue), bits 4-5 CSG,
//! bits 2-3 NSG, bit 1 a nonzero VersionMin. Every record's text is also
//! parsed and negotiated on its own.

#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use iscsi_target::login::chap::{decode_binary, ChapConfig, ChapCredentials};
use iscsi_target::login::params::{Answer, Negotiator, TargetLimits};
use iscsi_target::login::{text, ChallengeSource, LoginMachine, LoginPolicy, LoginStatus, LoginStep};
use iscsi_target::pdu::LoginRequest;
use iscsi_target::target::{AccessPolicy, StaticCatalog, Target, TargetCatalog};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

/// CHAP challenges the seed corpus can answer: id 7, sixteen 0x11 bytes.
struct FixedChallenge;

impl ChallengeSource for FixedChallenge {
    fn challenge(&mut self) -> (u8, Vec<u8>) {
        (7, vec![0x11; 16])
    }
}

const USER: &str = "u";
const SECRET: &str = "s3cr3t-s3cr3t";

fn catalog() -> Arc<dyn TargetCatalog> {
    let creds = ChapCredentials { user: USER.into(), secret: SECRET.into() };
    let target = |name: &str, chap: Option<ChapConfig>| {
        Arc::new(Target { name: name.into(), alias: Some("a".into()), chap, initiators: Vec::new(), luns: BTreeMap::new() })
    };
    Arc::new(StaticCatalog {
        targets: vec![
            target("iqn.t:open", None),
            target("iqn.t:chap", Some(ChapConfig { initiator: creds.clone(), mutual: None })),
            target(
                "iqn.t:mutual",
                Some(ChapConfig {
                    initiator: creds,
                    mutual: Some(ChapCredentials { user: "tu".into(), secret: "t-s3cr3t-s3cr3t".into() }),
                }),
            ),
        ],
    })
}

/// The fuzzed invariants are about CHAP and negotiation: every initiator
/// name may reach the targets.
fn open_policy() -> LoginPolicy {
    LoginPolicy { access: AccessPolicy::Open, discovery_chap: None }
}

/// Whether `keys` carry the correct CHAP answer to the fixed challenge.
fn proves_chap(keys: &[(String, String)]) -> bool {
    let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let mut h = Md5::new();
    h.update([7u8]);
    h.update(SECRET.as_bytes());
    h.update([0x11u8; 16]);
    let want: [u8; 16] = h.finalize().into();
    get("CHAP_N") == Some(USER)
        && get("CHAP_R").and_then(|r| decode_binary(r, "CHAP_R").ok()).is_some_and(|r| r == want)
}

fn negotiate(pairs: &[(String, String)], discovery: bool) {
    let limits = TargetLimits::default();
    let mut n = Negotiator::new(limits.clone(), discovery);
    for (k, v) in pairs {
        if let Some(Answer::Reply(r)) = n.offer(k, v) {
            assert!(!r.is_empty(), "{k}={v} answered with an empty value");
        }
    }
    let p = n.finish().clone();
    assert!(p.first_burst_length <= p.max_burst_length);
    assert!(p.max_burst_length <= limits.max_burst_length);
    assert!(p.max_outstanding_r2t >= 1 && p.max_outstanding_r2t <= limits.max_outstanding_r2t);
    assert!(p.initiator_max_recv_data_segment_length >= 512);
    assert!(p.max_connections == 1);
    assert!(p.error_recovery_level == 0);
}

fn request(control: u8, data: &[u8]) -> LoginRequest {
    LoginRequest {
        transit: control & 0x80 != 0,
        cont: control & 0x40 != 0,
        csg: control >> 4 & 3,
        nsg: control >> 2 & 3,
        version_max: 0,
        version_min: control >> 1 & 1,
        isid: [0x80, 0, 0, 0, 0, 1],
        tsih: 0,
        itt: 1,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
        data: Bytes::copy_from_slice(data),
    }
}

fuzz_target!(|input: &[u8]| {
    if let Ok(pairs) = text::parse(input) {
        assert_eq!(text::parse(&text::encode(&pairs)).as_ref(), Ok(&pairs), "text round trip");
        negotiate(&pairs, false);
        negotiate(&pairs, true);
    }

    let mut machine = LoginMachine::new(catalog(), TargetLimits::default(), open_policy(), Box::new(FixedChallenge));
    // The text the machine has gathered across C-bit requests, and whether
    // a complete request so far proved the CHAP secret.
    let mut pending: Vec<u8> = Vec::new();
    let mut proved = false;
    for record in input.split(|&b| b == 0xFF).take(16) {
        let Some((&control, data)) = record.split_first() else { continue };
        if let Ok(pairs) = text::parse(data) {
            negotiate(&pairs, false);
        }
        let req = request(control, data);
        if !req.cont {
            pending.extend_from_slice(data);
            if let Ok(keys) = text::parse(&pending) {
                proved |= proves_chap(&keys);
            }
            pending.clear();
        } else {
            pending.extend_from_slice(data);
        }
        match machine.step(&req) {
            LoginStep::Continue(reply) => {
                assert_eq!(reply.status, LoginStatus::SUCCESS);
                assert!(!reply.transit || reply.nsg > reply.csg);
            }
            LoginStep::Failed(reply) => {
                assert_ne!(reply.status, LoginStatus::SUCCESS);
                break;
            }
            LoginStep::Complete(reply, result) => {
                assert_eq!(reply.status, LoginStatus::SUCCESS);
                assert!(reply.transit && reply.nsg == 3);
                assert!(!result.initiator_name.is_empty());
                if let Some(t) = &result.target {
                    assert!(t.chap.is_none() || proved, "logged in to {} without the CHAP secret", t.name);
                }
                let p = &result.params;
                assert!(p.first_burst_length <= p.max_burst_length);
                break;
            }
        }
    }
});
