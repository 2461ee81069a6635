//! The text format of Login and Text PDUs (RFC 7143 §6): `key=value` pairs,
//! each terminated by a NUL byte. Parsing is pure and bounded.

use nom::bytes::complete::{tag, take_till, take_while1};
use nom::multi::many0;
use nom::sequence::{separated_pair, terminated};
use nom::IResult;

/// RFC 7143 §6.1: key names are at most 63 bytes.
const MAX_KEY_LEN: usize = 63;
/// The longest value we accept (SendTargets lists and CHAP challenges are
/// the long ones; RFC 7143 §6.1 allows 8192 for some keys).
const MAX_VALUE_LEN: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("malformed key=value text")]
    Malformed,
    #[error("key {0} is too long or has an invalid name")]
    BadKey(String),
    #[error("value of {0} is too long")]
    ValueTooLong(String),
    #[error("key {0} sent twice")]
    Duplicate(String),
}

fn key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b".-+@_".contains(&c)
}

fn pair(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    terminated(separated_pair(take_while1(key_char), tag("="), take_till(|c| c == 0)), tag([0u8]))(i)
}

/// Parses a complete text data segment into ordered pairs. Trailing NUL
/// padding is tolerated, as some initiators send it.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    let (rest, pairs) = many0(pair)(data).map_err(|_| TextError::Malformed)?;
    if rest.iter().any(|&b| b != 0) {
        return Err(TextError::Malformed);
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let key = String::from_utf8(k.to_vec()).map_err(|_| TextError::Malformed)?;
        if key.len() > MAX_KEY_LEN {
            return Err(TextError::BadKey(key));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(TextError::ValueTooLong(key));
        }
        let value = String::from_utf8(v.to_vec()).map_err(|_| TextError::Malformed)?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(TextError::Duplicate(key));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Encodes pairs as a text data segment.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_ref().as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_in_order() {
        let p = parse(b"InitiatorName=iqn.x:y\0SessionType=Normal\0").unwrap();
        assert_eq!(p, vec![("InitiatorName".into(), "iqn.x:y".into()), ("SessionType".into(), "Normal".into())]);
    }

    #[test]
    fn empty_value_and_padding() {
        assert_eq!(parse(b"X-a=\0\0\0").unwrap(), vec![("X-a".into(), "".into())]);
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(b"NoEquals\0"), Err(TextError::Malformed));
        assert_eq!(parse(b"A=1"), Err(TextError::Malformed));
        assert_eq!(parse(b"=1\0"), Err(TextError::Malformed));
        assert_eq!(parse(b"A=1\0A=2\0"), Err(TextError::Duplicate("A".into())));
        let long = format!("{}=1\0", "K".repeat(64));
        assert!(matches!(parse(long.as_bytes()), Err(TextError::BadKey(_))));
    }

    #[test]
    fn round_trip() {
        let pairs = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "x,y".to_string())];
        assert_eq!(parse(&encode(&pairs)).unwrap(), pairs);
    }
}
