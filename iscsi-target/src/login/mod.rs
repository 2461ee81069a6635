//! The login phase (RFC 7143 §6.3): security negotiation with CHAP,
//! operational negotiation, and the transition to full feature phase. The
//! [`LoginMachine`] is pure: it turns each Login Request into the keys and
//! status of the response; the connection fills in sequence numbers and does
//! the I/O.

pub mod chap;
pub mod params;
pub mod text;

use std::sync::Arc;

use self::chap::{ChapConfig, ChapError, ChapExchange};
use self::params::{Answer, Negotiator, SessionParams, TargetLimits};
use crate::pdu::LoginRequest;
use crate::target::{AccessPolicy, Target, TargetCatalog};

/// Login stages (CSG/NSG values).
pub const STAGE_SECURITY: u8 = 0;
pub const STAGE_OPERATIONAL: u8 = 1;
pub const STAGE_FULL_FEATURE: u8 = 3;

/// Login status class and detail (RFC 7143 §11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginStatus(pub u8, pub u8);

impl LoginStatus {
    pub const SUCCESS: LoginStatus = LoginStatus(0, 0);
    pub const INITIATOR_ERROR: LoginStatus = LoginStatus(2, 0);
    pub const AUTHENTICATION_FAILED: LoginStatus = LoginStatus(2, 1);
    pub const AUTHORIZATION_FAILED: LoginStatus = LoginStatus(2, 2);
    pub const NOT_FOUND: LoginStatus = LoginStatus(2, 3);
    pub const UNSUPPORTED_VERSION: LoginStatus = LoginStatus(2, 5);
    pub const TOO_MANY_CONNECTIONS: LoginStatus = LoginStatus(2, 6);
    pub const MISSING_PARAMETER: LoginStatus = LoginStatus(2, 7);
    pub const SESSION_TYPE_UNSUPPORTED: LoginStatus = LoginStatus(2, 9);
    pub const SESSION_DOES_NOT_EXIST: LoginStatus = LoginStatus(2, 10);
    pub const INVALID_DURING_LOGIN: LoginStatus = LoginStatus(2, 11);
    pub const TARGET_ERROR: LoginStatus = LoginStatus(3, 0);
    /// "The target has insufficient session, connection, or other
    /// resources": the answer when the server's session limit is reached
    /// (0206, too many connections, is about one session's connections).
    pub const OUT_OF_RESOURCES: LoginStatus = LoginStatus(3, 2);
}

/// What the server asks of every login besides each target's own CHAP.
#[derive(Debug, Clone, Default)]
pub struct LoginPolicy {
    /// Who may log in to a target without an initiator list.
    pub access: AccessPolicy,
    /// CHAP a discovery session must pass; none: discovery is anonymous.
    pub discovery_chap: Option<ChapConfig>,
}

/// What a finished login established.
#[derive(Clone)]
pub struct LoginResult {
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// `None` for a discovery session.
    pub target: Option<Arc<Target>>,
    /// The initiator proved a CHAP secret (SendTargets shows a discovery
    /// session CHAP-protected targets only then).
    pub chap_authenticated: bool,
    pub params: SessionParams,
}

/// The response to one Login Request, before sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginReply {
    pub status: LoginStatus,
    pub transit: bool,
    pub csg: u8,
    pub nsg: u8,
    pub keys: Vec<(String, String)>,
}

/// The result of one login step.
pub enum LoginStep {
    /// Send the reply and wait for the next Login Request.
    Continue(LoginReply),
    /// Send the reply (status success, transit to full feature phase).
    Complete(LoginReply, Box<LoginResult>),
    /// Send the reply (an error status) and close the connection.
    Failed(LoginReply),
}

enum Auth {
    /// AuthMethod not yet agreed.
    Start,
    Chap(ChapExchange),
    Done,
}

/// Randomness for CHAP challenges, injectable for tests.
pub trait ChallengeSource: Send {
    fn challenge(&mut self) -> (u8, Vec<u8>);
}

/// CHAP challenges from the OS random number generator.
pub struct OsChallenges;

impl ChallengeSource for OsChallenges {
    fn challenge(&mut self) -> (u8, Vec<u8>) {
        use rand::RngCore;
        let mut c = vec![0u8; 16];
        let mut rng = rand::thread_rng();
        rng.fill_bytes(&mut c);
        (rng.next_u32() as u8, c)
    }
}

pub struct LoginMachine {
    catalog: Arc<dyn TargetCatalog>,
    limits: TargetLimits,
    policy: LoginPolicy,
    challenges: Box<dyn ChallengeSource>,
    stage: u8,
    first: bool,
    initiator_name: Option<String>,
    initiator_alias: Option<String>,
    target: Option<Arc<Target>>,
    discovery: bool,
    auth: Auth,
    chap_authenticated: bool,
    negotiator: Negotiator,
    declared: bool,
    /// Text of a request split across PDUs with the C bit.
    partial: Vec<u8>,
}

fn fail(status: LoginStatus, req: &LoginRequest) -> LoginStep {
    LoginStep::Failed(LoginReply { status, transit: false, csg: req.csg, nsg: 0, keys: Vec::new() })
}

impl LoginMachine {
    pub fn new(
        catalog: Arc<dyn TargetCatalog>,
        limits: TargetLimits,
        policy: LoginPolicy,
        challenges: Box<dyn ChallengeSource>,
    ) -> Self {
        let negotiator = Negotiator::new(limits.clone(), false);
        LoginMachine {
            catalog,
            limits,
            policy,
            challenges,
            stage: STAGE_SECURITY,
            first: true,
            initiator_name: None,
            initiator_alias: None,
            target: None,
            discovery: false,
            auth: Auth::Start,
            chap_authenticated: false,
            negotiator,
            declared: false,
            partial: Vec::new(),
        }
    }

    /// Handles one Login Request.
    pub fn step(&mut self, req: &LoginRequest) -> LoginStep {
        if req.version_min > 0 {
            return fail(LoginStatus::UNSUPPORTED_VERSION, req);
        }
        // Stages only move forward, and a PDU must be in the current stage.
        if req.csg == 2 || req.csg == STAGE_FULL_FEATURE || req.csg < self.stage && !self.first {
            return fail(LoginStatus::INITIATOR_ERROR, req);
        }
        if req.transit && (req.nsg <= req.csg || req.nsg == 2) {
            return fail(LoginStatus::INITIATOR_ERROR, req);
        }
        if req.cont {
            if req.transit || self.partial.len() + req.data.len() > 64 * 1024 {
                return fail(LoginStatus::INITIATOR_ERROR, req);
            }
            self.partial.extend_from_slice(&req.data);
            return LoginStep::Continue(LoginReply {
                status: LoginStatus::SUCCESS,
                transit: false,
                csg: req.csg,
                nsg: 0,
                keys: Vec::new(),
            });
        }
        self.partial.extend_from_slice(&req.data);
        let data = std::mem::take(&mut self.partial);
        let keys = match text::parse(&data) {
            Ok(k) => k,
            Err(_) => return fail(LoginStatus::INITIATOR_ERROR, req),
        };
        if self.first {
            if let Err(status) = self.leading(&keys) {
                return fail(status, req);
            }
        }
        self.stage = req.csg;
        let mut out: Vec<(String, String)> = Vec::new();
        if self.first && !self.discovery {
            out.push(("TargetPortalGroupTag".into(), "1".into()));
            if let Some(alias) = self.target.as_ref().and_then(|t| t.alias.clone()) {
                out.push(("TargetAlias".into(), alias));
            }
        }
        self.first = false;

        let result = if req.csg == STAGE_SECURITY {
            self.security(&keys, &mut out)
        } else {
            if matches!(self.auth, Auth::Start) && self.chap_required() {
                // Skipping security negotiation on a target that needs CHAP.
                return fail(LoginStatus::AUTHENTICATION_FAILED, req);
            }
            if matches!(self.auth, Auth::Chap(_)) {
                return fail(LoginStatus::AUTHENTICATION_FAILED, req);
            }
            self.auth = Auth::Done;
            self.operational(&keys, &mut out);
            Ok(())
        };
        if let Err(status) = result {
            return fail(status, req);
        }

        let may_transit = matches!(self.auth, Auth::Done);
        let transit = req.transit && may_transit;
        if transit && req.nsg == STAGE_FULL_FEATURE && !self.declared {
            out.extend(self.negotiator.declarations());
            self.declared = true;
        }
        let reply = LoginReply {
            status: LoginStatus::SUCCESS,
            transit,
            csg: req.csg,
            nsg: if transit { req.nsg } else { 0 },
            keys: out,
        };
        if transit {
            self.stage = req.nsg;
        }
        if transit && req.nsg == STAGE_FULL_FEATURE {
            let params = self.negotiator.finish().clone();
            let result = LoginResult {
                initiator_name: self.initiator_name.clone().unwrap_or_default(),
                initiator_alias: self.initiator_alias.clone(),
                target: self.target.clone(),
                chap_authenticated: self.chap_authenticated,
                params,
            };
            return LoginStep::Complete(reply, Box::new(result));
        }
        LoginStep::Continue(reply)
    }

    /// The initiator's name, once the first request gave it.
    pub fn initiator_name(&self) -> Option<&str> {
        self.initiator_name.as_deref()
    }

    /// The target asked for, once found (`None` for discovery).
    pub fn target_name(&self) -> Option<&str> {
        self.target.as_deref().map(|t| t.name.as_str())
    }

    /// The CHAP this login must pass: the target's, or for a discovery
    /// session the server's discovery CHAP.
    fn required_chap(&self) -> Option<ChapConfig> {
        if self.discovery {
            self.policy.discovery_chap.clone()
        } else {
            self.target.as_ref().and_then(|t| t.chap.clone())
        }
    }

    fn chap_required(&self) -> bool {
        if self.discovery {
            self.policy.discovery_chap.is_some()
        } else {
            self.target.as_ref().is_some_and(|t| t.chap.is_some())
        }
    }

    /// Keys the first Login Request must carry.
    fn leading(&mut self, keys: &[(String, String)]) -> Result<(), LoginStatus> {
        let get = |k: &str| keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let name = get("InitiatorName").filter(|n| !n.is_empty()).ok_or(LoginStatus::MISSING_PARAMETER)?;
        self.initiator_name = Some(name);
        self.initiator_alias = get("InitiatorAlias");
        match get("SessionType").as_deref() {
            None | Some("Normal") => {
                let tn = get("TargetName").ok_or(LoginStatus::MISSING_PARAMETER)?;
                let t = self.catalog.lookup(&tn).ok_or(LoginStatus::NOT_FOUND)?;
                // Refused before any authentication: an initiator the
                // target does not list has nothing to prove.
                let admitted = t.admits(self.initiator_name.as_deref().unwrap_or_default(), self.policy.access);
                self.target = Some(t);
                if !admitted {
                    return Err(LoginStatus::AUTHORIZATION_FAILED);
                }
            }
            Some("Discovery") => {
                self.discovery = true;
                self.negotiator = Negotiator::new(self.limits.clone(), true);
            }
            Some(_) => return Err(LoginStatus::SESSION_TYPE_UNSUPPORTED),
        }
        Ok(())
    }

    fn security(&mut self, keys: &[(String, String)], out: &mut Vec<(String, String)>) -> Result<(), LoginStatus> {
        let chap_cfg = self.required_chap();
        for (k, v) in keys {
            match k.as_str() {
                "AuthMethod" => {
                    if !matches!(self.auth, Auth::Start) {
                        return Err(LoginStatus::INITIATOR_ERROR);
                    }
                    let offered: Vec<&str> = v.split(',').collect();
                    match &chap_cfg {
                        Some(cfg) if offered.contains(&"CHAP") => {
                            out.push(("AuthMethod".into(), "CHAP".into()));
                            self.auth = Auth::Chap(ChapExchange::new(cfg.clone()));
                        }
                        Some(_) => return Err(LoginStatus::AUTHENTICATION_FAILED),
                        None if offered.contains(&"None") => {
                            out.push(("AuthMethod".into(), "None".into()));
                            self.auth = Auth::Done;
                        }
                        None => return Err(LoginStatus::AUTHENTICATION_FAILED),
                    }
                }
                "CHAP_A" => {
                    let Auth::Chap(x) = &mut self.auth else {
                        return Err(LoginStatus::INITIATOR_ERROR);
                    };
                    let (id, c) = self.challenges.challenge();
                    out.extend(x.on_algorithm(v, id, c).map_err(|_| LoginStatus::AUTHENTICATION_FAILED)?);
                }
                "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C" => {}
                "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName" => {}
                _ => {
                    // Operational keys may already appear in the security stage.
                    self.answer_operational(k, v, out);
                }
            }
        }
        if keys.iter().any(|(k, _)| k == "CHAP_R") {
            let Auth::Chap(x) = &mut self.auth else {
                return Err(LoginStatus::INITIATOR_ERROR);
            };
            match x.on_response(keys) {
                Ok(mutual) => {
                    out.extend(mutual);
                    self.auth = Auth::Done;
                    self.chap_authenticated = true;
                }
                Err(ChapError::Missing(_)) | Err(ChapError::Malformed(_)) => {
                    return Err(LoginStatus::AUTHENTICATION_FAILED)
                }
                Err(_) => return Err(LoginStatus::AUTHENTICATION_FAILED),
            }
        }
        if matches!(self.auth, Auth::Start) && !keys.iter().any(|(k, _)| k == "AuthMethod") && chap_cfg.is_none() {
            // An initiator may go on without offering AuthMethod when the
            // target needs no authentication.
            self.auth = Auth::Done;
        }
        Ok(())
    }

    fn operational(&mut self, keys: &[(String, String)], out: &mut Vec<(String, String)>) {
        for (k, v) in keys {
            match k.as_str() {
                "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName" => {}
                "AuthMethod" | "CHAP_A" | "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C" => {
                    out.push((k.clone(), "Irrelevant".into()))
                }
                _ => self.answer_operational(k, v, out),
            }
        }
        if !self.declared {
            out.extend(self.negotiator.declarations());
            self.declared = true;
        }
    }

    fn answer_operational(&mut self, k: &str, v: &str, out: &mut Vec<(String, String)>) {
        match self.negotiator.offer(k, v) {
            Some(Answer::Reply(r)) => out.push((k.to_string(), r)),
            Some(Answer::Silent) => {}
            None => out.push((k.to_string(), "NotUnderstood".into())),
        }
    }
}

#[cfg(test)]
mod tests;
