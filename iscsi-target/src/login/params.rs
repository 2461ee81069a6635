//! Operational parameter negotiation (RFC 7143 §13): every key with its
//! default, its range and its result function. The negotiator answers each
//! key the initiator offers and records the outcome in [`SessionParams`].

/// What this target offers; the negotiated values never exceed these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLimits {
    /// MaxRecvDataSegmentLength we declare (what we accept per PDU).
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 256 * 1024,
            max_outstanding_r2t: 16,
            initial_r2t: false,
            immediate_data: true,
        }
    }
}

/// The negotiated session and connection parameters, starting at the
/// RFC 7143 defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_connections: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// What the initiator accepts per PDU: bounds our Data-In and text PDUs.
    pub initiator_max_recv_data_segment_length: u32,
    /// What we accept per PDU.
    pub target_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
}

impl SessionParams {
    pub fn defaults(limits: &TargetLimits) -> Self {
        SessionParams {
            header_digest: false,
            data_digest: false,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: limits.max_recv_data_segment_length,
            max_burst_length: 262144,
            first_burst_length: 65536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// RFC 7143's bound on data segment and burst lengths.
const MAX_LEN: u32 = (1 << 24) - 1;

/// How one key's answer is computed.
enum Rule {
    /// A list of digests: pick the first one we support.
    Digest,
    /// Boolean whose result is the OR of both sides, with our value.
    Or(bool),
    /// Boolean AND.
    And(bool),
    /// Numerical minimum with the range and our value.
    Min(u32, u32, u32),
    /// Numerical maximum.
    Max(u32, u32, u32),
    /// Declarative numeric: the initiator states its own value.
    Declare(u32, u32),
    /// Markers (RFC 7143 removed them): always No / Irrelevant.
    Marker,
    MarkInt,
    /// Keys only the target declares (TargetAlias, TargetAddress,
    /// TargetPortalGroupTag).
    NotNegotiated,
}

/// Answers operational keys and records the outcome.
pub struct Negotiator {
    limits: TargetLimits,
    pub params: SessionParams,
    discovery: bool,
}

/// The answer to one offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Reply `key=value`.
    Reply(String),
    /// The key needs no reply (declarative keys the target does not echo).
    Silent,
}

impl Negotiator {
    pub fn new(limits: TargetLimits, discovery: bool) -> Self {
        let params = SessionParams::defaults(&limits);
        Negotiator { limits, params, discovery }
    }

    fn rule(&self, key: &str) -> Option<Rule> {
        let l = &self.limits;
        Some(match key {
            "HeaderDigest" | "DataDigest" => Rule::Digest,
            "MaxConnections" => Rule::Min(1, 65535, 1),
            "InitialR2T" => Rule::Or(l.initial_r2t),
            "ImmediateData" => Rule::And(l.immediate_data),
            "MaxRecvDataSegmentLength" => Rule::Declare(512, MAX_LEN),
            "MaxBurstLength" => Rule::Min(512, MAX_LEN, l.max_burst_length),
            "FirstBurstLength" => Rule::Min(512, MAX_LEN, l.first_burst_length),
            "DefaultTime2Wait" => Rule::Max(0, 3600, 2),
            "DefaultTime2Retain" => Rule::Min(0, 3600, 20),
            "MaxOutstandingR2T" => Rule::Min(1, 65535, l.max_outstanding_r2t),
            "DataPDUInOrder" => Rule::Or(true),
            "DataSequenceInOrder" => Rule::Or(true),
            // Recovery beyond session restart is not offered.
            "ErrorRecoveryLevel" => Rule::Min(0, 2, 0),
            "IFMarker" | "OFMarker" => Rule::Marker,
            "IFMarkInt" | "OFMarkInt" => Rule::MarkInt,
            "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag" => Rule::NotNegotiated,
            _ => return None,
        })
    }

    /// Answers one offered operational key. `None` means the key is not an
    /// operational key (the caller handles it or answers NotUnderstood).
    pub fn offer(&mut self, key: &str, value: &str) -> Option<Answer> {
        let rule = self.rule(key)?;
        let answer = match rule {
            Rule::Digest => {
                let pick = value.split(',').find(|v| *v == "CRC32C" || *v == "None");
                match pick {
                    Some(v) => {
                        let on = v == "CRC32C";
                        if key == "HeaderDigest" {
                            self.params.header_digest = on;
                        } else {
                            self.params.data_digest = on;
                        }
                        v.to_string()
                    }
                    None => "Reject".to_string(),
                }
            }
            Rule::Or(ours) => match parse_bool(value) {
                Some(theirs) => {
                    let r = theirs || ours;
                    self.set_bool(key, r);
                    yes_no(r)
                }
                None => "Reject".to_string(),
            },
            Rule::And(ours) => match parse_bool(value) {
                Some(theirs) => {
                    let r = theirs && ours;
                    self.set_bool(key, r);
                    yes_no(r)
                }
                None => "Reject".to_string(),
            },
            Rule::Min(lo, hi, ours) => match parse_num(value, lo, hi) {
                Some(theirs) => {
                    let r = theirs.min(ours);
                    self.set_num(key, r);
                    r.to_string()
                }
                None => "Reject".to_string(),
            },
            Rule::Max(lo, hi, ours) => match parse_num(value, lo, hi) {
                Some(theirs) => {
                    let r = theirs.max(ours);
                    self.set_num(key, r);
                    r.to_string()
                }
                None => "Reject".to_string(),
            },
            Rule::Declare(lo, hi) => match parse_num(value, lo, hi) {
                Some(theirs) => {
                    self.params.initiator_max_recv_data_segment_length = theirs;
                    return Some(Answer::Silent);
                }
                None => "Reject".to_string(),
            },
            Rule::Marker => "No".to_string(),
            Rule::MarkInt => "Irrelevant".to_string(),
            // Target-declared keys from an initiator carry no meaning; the
            // target's own declaration (if any) already went out.
            Rule::NotNegotiated => return Some(Answer::Silent),
        };
        // Session-wide keys are irrelevant in a discovery session (RFC 7143
        // §13.22 and the per-key text), except the digests and lengths.
        if self.discovery
            && matches!(
                key,
                "MaxConnections"
                    | "InitialR2T"
                    | "ImmediateData"
                    | "MaxBurstLength"
                    | "FirstBurstLength"
                    | "MaxOutstandingR2T"
                    | "DataPDUInOrder"
                    | "DataSequenceInOrder"
            )
        {
            return Some(Answer::Reply("Irrelevant".into()));
        }
        Some(Answer::Reply(answer))
    }

    /// Keys the target declares at the end of operational negotiation.
    pub fn declarations(&self) -> Vec<(String, String)> {
        vec![("MaxRecvDataSegmentLength".into(), self.limits.max_recv_data_segment_length.to_string())]
    }

    /// Applies cross-key rules once negotiation ends (RFC 7143 §13.14:
    /// FirstBurstLength never exceeds MaxBurstLength).
    pub fn finish(&mut self) -> &SessionParams {
        if self.params.first_burst_length > self.params.max_burst_length {
            self.params.first_burst_length = self.params.max_burst_length;
        }
        &self.params
    }

    fn set_bool(&mut self, key: &str, v: bool) {
        match key {
            "InitialR2T" => self.params.initial_r2t = v,
            "ImmediateData" => self.params.immediate_data = v,
            "DataPDUInOrder" => self.params.data_pdu_in_order = v,
            "DataSequenceInOrder" => self.params.data_sequence_in_order = v,
            _ => {}
        }
    }

    fn set_num(&mut self, key: &str, v: u32) {
        match key {
            "MaxConnections" => self.params.max_connections = v,
            "MaxBurstLength" => self.params.max_burst_length = v,
            "FirstBurstLength" => self.params.first_burst_length = v,
            "DefaultTime2Wait" => self.params.default_time2wait = v,
            "DefaultTime2Retain" => self.params.default_time2retain = v,
            "MaxOutstandingR2T" => self.params.max_outstanding_r2t = v,
            "ErrorRecoveryLevel" => self.params.error_recovery_level = v,
            _ => {}
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_string()
}

/// Numbers are decimal, or hex with 0x (RFC 7143 §6.1).
fn parse_num(v: &str, lo: u32, hi: u32) -> Option<u32> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else {
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse::<u64>().ok()?
    };
    (lo as u64..=hi as u64).contains(&n).then_some(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(n: &mut Negotiator, k: &str, v: &str) -> String {
        match n.offer(k, v) {
            Some(Answer::Reply(r)) => r,
            other => panic!("{k}: {other:?}"),
        }
    }

    #[test]
    fn result_functions() {
        let mut n = Negotiator::new(TargetLimits::default(), false);
        assert_eq!(reply(&mut n, "HeaderDigest", "CRC32C,None"), "CRC32C");
        assert_eq!(reply(&mut n, "DataDigest", "None"), "None");
        assert_eq!(reply(&mut n, "InitialR2T", "No"), "No");
        assert_eq!(reply(&mut n, "ImmediateData", "Yes"), "Yes");
        assert_eq!(reply(&mut n, "MaxBurstLength", "16776192"), "1048576");
        assert_eq!(reply(&mut n, "FirstBurstLength", "65536"), "65536");
        assert_eq!(reply(&mut n, "DefaultTime2Wait", "0"), "2");
        assert_eq!(reply(&mut n, "ErrorRecoveryLevel", "2"), "0");
        assert_eq!(n.offer("MaxRecvDataSegmentLength", "65536"), Some(Answer::Silent));
        let p = n.finish().clone();
        assert!(p.header_digest && !p.data_digest && !p.initial_r2t && p.immediate_data);
        assert_eq!(p.initiator_max_recv_data_segment_length, 65536);
        assert_eq!(p.max_burst_length, 1048576);
    }

    #[test]
    fn out_of_range_and_garbage_are_rejected() {
        let mut n = Negotiator::new(TargetLimits::default(), false);
        assert_eq!(reply(&mut n, "MaxBurstLength", "100"), "Reject");
        assert_eq!(reply(&mut n, "MaxRecvDataSegmentLength", "99999999999"), "Reject");
        assert_eq!(reply(&mut n, "InitialR2T", "Maybe"), "Reject");
        assert_eq!(reply(&mut n, "HeaderDigest", "MD5"), "Reject");
        assert_eq!(n.offer("X-vendor", "1"), None);
        assert_eq!(n.params, SessionParams::defaults(&TargetLimits::default()));
    }

    #[test]
    fn first_burst_clamped_to_max_burst() {
        let mut n = Negotiator::new(TargetLimits::default(), false);
        reply(&mut n, "MaxBurstLength", "4096");
        reply(&mut n, "FirstBurstLength", "65536");
        assert_eq!(n.finish().first_burst_length, 4096);
    }
}
