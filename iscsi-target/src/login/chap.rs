//! CHAP authentication with MD5 (RFC 1994, RFC 7143 §12.1.3), one-way and
//! mutual. Pure: randomness comes in from the caller.

use md5::{Digest, Md5};

/// A CHAP name and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: String,
}

/// A target's CHAP policy: the initiator must prove `initiator`; with
/// `mutual`, the target proves itself back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapConfig {
    pub initiator: ChapCredentials,
    pub mutual: Option<ChapCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChapError {
    #[error("CHAP_A offers no supported algorithm (MD5 = 5)")]
    NoAlgorithm,
    #[error("missing CHAP key {0}")]
    Missing(&'static str),
    #[error("malformed CHAP value for {0}")]
    Malformed(&'static str),
    #[error("CHAP authentication failed")]
    Failed,
    #[error("mutual CHAP requested but not configured, or configured but not requested")]
    MutualMismatch,
}

/// Where a CHAP exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChapState {
    /// Waiting for CHAP_A.
    AwaitAlgorithm,
    /// Challenge sent; waiting for CHAP_N/CHAP_R.
    AwaitResponse { id: u8, challenge: Vec<u8> },
    Done,
}

pub struct ChapExchange {
    config: ChapConfig,
    pub state: ChapState,
}

fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Decodes a CHAP binary value: `0x` hex or `0b` base64 (RFC 7143 §6.1).
pub fn decode_binary(v: &str, what: &'static str) -> Result<Vec<u8>, ChapError> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h = if h.len() % 2 == 1 { format!("0{h}") } else { h.to_string() };
        hex::decode(h).map_err(|_| ChapError::Malformed(what))
    } else if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(b).map_err(|_| ChapError::Malformed(what))
    } else {
        Err(ChapError::Malformed(what))
    }
}

fn lookup<'a>(keys: &'a [(String, String)], k: &'static str) -> Result<&'a str, ChapError> {
    keys.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).ok_or(ChapError::Missing(k))
}

impl ChapExchange {
    pub fn new(config: ChapConfig) -> Self {
        ChapExchange { config, state: ChapState::AwaitAlgorithm }
    }

    /// Handles CHAP_A; returns the keys to send (CHAP_A, CHAP_I, CHAP_C).
    /// `id` and `challenge` are fresh random values from the caller.
    pub fn on_algorithm(
        &mut self,
        chap_a: &str,
        id: u8,
        challenge: Vec<u8>,
    ) -> Result<Vec<(String, String)>, ChapError> {
        if !chap_a.split(',').any(|a| a.trim() == "5") {
            return Err(ChapError::NoAlgorithm);
        }
        let out = vec![
            ("CHAP_A".to_string(), "5".to_string()),
            ("CHAP_I".to_string(), id.to_string()),
            ("CHAP_C".to_string(), format!("0x{}", hex::encode(&challenge))),
        ];
        self.state = ChapState::AwaitResponse { id, challenge };
        Ok(out)
    }

    /// Verifies CHAP_N/CHAP_R and, for mutual CHAP, answers the initiator's
    /// CHAP_I/CHAP_C with our CHAP_N/CHAP_R.
    pub fn on_response(&mut self, keys: &[(String, String)]) -> Result<Vec<(String, String)>, ChapError> {
        let ChapState::AwaitResponse { id, challenge } = &self.state else {
            return Err(ChapError::Missing("CHAP_A"));
        };
        let name = lookup(keys, "CHAP_N")?;
        let got = decode_binary(lookup(keys, "CHAP_R")?, "CHAP_R")?;
        let want = response(*id, self.config.initiator.secret.as_bytes(), challenge);
        // Compare without an early exit so timing does not leak the secret.
        let same = got.len() == want.len() && got.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if name != self.config.initiator.user || !same {
            return Err(ChapError::Failed);
        }
        let their_id = keys.iter().find(|(k, _)| k == "CHAP_I");
        let their_c = keys.iter().find(|(k, _)| k == "CHAP_C");
        let out = match (&self.config.mutual, their_id, their_c) {
            (None, None, None) => Vec::new(),
            (Some(m), Some((_, i)), Some((_, c))) => {
                let i: u8 = i.parse().map_err(|_| ChapError::Malformed("CHAP_I"))?;
                let c = decode_binary(c, "CHAP_C")?;
                // A reflected challenge would let an attacker replay our own
                // response (RFC 7143 §12.1.3).
                if c == *challenge || c.is_empty() {
                    return Err(ChapError::Failed);
                }
                let r = response(i, m.secret.as_bytes(), &c);
                vec![("CHAP_N".to_string(), m.user.clone()), ("CHAP_R".to_string(), format!("0x{}", hex::encode(r)))]
            }
            _ => return Err(ChapError::MutualMismatch),
        };
        self.state = ChapState::Done;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mutual: bool) -> ChapConfig {
        ChapConfig {
            initiator: ChapCredentials { user: "alice".into(), secret: "secret12345678".into() },
            mutual: mutual.then(|| ChapCredentials { user: "tgt".into(), secret: "tsecret1234567".into() }),
        }
    }

    fn kv(pairs: &[(&str, String)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn one_way_success_and_failure() {
        let mut x = ChapExchange::new(cfg(false));
        let sent = x.on_algorithm("7,5", 9, vec![1, 2, 3, 4]).unwrap();
        assert_eq!(sent[2].1, "0x01020304");
        let r = response(9, b"secret12345678", &[1, 2, 3, 4]);
        let ok = kv(&[("CHAP_N", "alice".into()), ("CHAP_R", format!("0x{}", hex::encode(r)))]);
        assert_eq!(x.on_response(&ok).unwrap(), vec![]);

        let mut y = ChapExchange::new(cfg(false));
        y.on_algorithm("5", 9, vec![1, 2, 3, 4]).unwrap();
        let bad = kv(&[("CHAP_N", "alice".into()), ("CHAP_R", format!("0x{}", hex::encode([0u8; 16])))]);
        assert_eq!(y.on_response(&bad), Err(ChapError::Failed));
    }

    #[test]
    fn mutual_answers_the_initiator_challenge() {
        let mut x = ChapExchange::new(cfg(true));
        x.on_algorithm("5", 1, vec![7; 16]).unwrap();
        let r = response(1, b"secret12345678", &[7; 16]);
        let keys = kv(&[
            ("CHAP_N", "alice".into()),
            ("CHAP_R", format!("0x{}", hex::encode(r))),
            ("CHAP_I", "3".into()),
            ("CHAP_C", "0x0a0b0c".into()),
        ]);
        let out = x.on_response(&keys).unwrap();
        assert_eq!(out[0], ("CHAP_N".into(), "tgt".into()));
        assert_eq!(out[1].1, format!("0x{}", hex::encode(response(3, b"tsecret1234567", &[10, 11, 12]))));
    }

    #[test]
    fn algorithm_and_encoding_errors() {
        let mut x = ChapExchange::new(cfg(false));
        assert_eq!(x.on_algorithm("7", 1, vec![1]), Err(ChapError::NoAlgorithm));
        assert_eq!(decode_binary("zz", "CHAP_R"), Err(ChapError::Malformed("CHAP_R")));
        assert_eq!(decode_binary("0bAQI=", "CHAP_R").unwrap(), vec![1, 2]);
    }
}
