//! How object keys map to paths in the local store.
//!
//! Each `/`-separated key segment becomes one path component, percent-encoded
//! except for `[A-Za-z0-9_-]`. Object files get the suffix `.o`; directory
//! names never contain a dot (it is encoded), so the key `a` (file `a.o`)
//! and the key `a/b` (directory `a`) never collide, and `..` cannot appear.

use std::path::{Path, PathBuf};

pub const OBJECT_SUFFIX: &str = ".o";

fn keep(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes a name made by [`encode_segment`]; `None` for anything else
/// (stray files are ignored, not misread).
pub fn decode_segment(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if keep(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The relative path of an object file, or `None` if the key is not valid
/// (empty, or with an empty segment).
pub fn object_path(key: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    let mut segments = key.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            return None;
        }
        if segments.peek().is_some() {
            path.push(encode_segment(segment));
        } else {
            path.push(format!("{}{OBJECT_SUFFIX}", encode_segment(segment)));
        }
    }
    Some(path)
}

/// The sidecar that records restore state, next to nothing else so that
/// listings never see it.
pub fn sidecar_path(root: &Path, key_path: &Path) -> PathBuf {
    root.join("restore").join(key_path).with_extension("r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in ["abc", "a.b", "..", "with space", "ünï", "%", "A-Z_09"] {
            let encoded = encode_segment(s);
            assert!(!encoded.contains('.') && !encoded.contains('/'));
            assert_eq!(decode_segment(&encoded).as_deref(), Some(s));
        }
        assert_eq!(decode_segment("a.o"), None);
        assert_eq!(decode_segment("%G0"), None);
    }

    #[test]
    fn file_and_directory_never_collide() {
        assert_eq!(object_path("a").unwrap(), PathBuf::from("a.o"));
        assert_eq!(object_path("a/b").unwrap(), PathBuf::from("a/b.o"));
        assert_eq!(object_path("a.o/b").unwrap(), PathBuf::from("a%2Eo/b.o"));
        assert_eq!(object_path("../x").unwrap(), PathBuf::from("%2E%2E/x.o"));
    }

    #[test]
    fn invalid_keys() {
        assert_eq!(object_path(""), None);
        assert_eq!(object_path("a//b"), None);
        assert_eq!(object_path("a/"), None);
        assert_eq!(object_path("/a"), None);
    }
}
