//! Parsing of S3's `x-amz-restore` header.

use super::RestoreStatus;

/// Interprets `x-amz-restore` for an object in an archive class.
///
/// S3 sends `ongoing-request="true"` while a restore runs and
/// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`
/// once the copy is readable. No header means no restore was requested.
/// An unrecognised value is treated as "not readable yet" so that a GET is
/// never attempted on the strength of a header we did not understand.
pub fn parse_restore_header(header: Option<&str>) -> RestoreStatus {
    let Some(header) = header else {
        return RestoreStatus::Archived;
    };
    let ongoing = field(header, "ongoing-request");
    match ongoing.as_deref() {
        Some("false") => RestoreStatus::Restored {
            expiry: field(header, "expiry-date"),
        },
        Some("true") => RestoreStatus::InProgress,
        _ => RestoreStatus::InProgress,
    }
}

/// The quoted value of `name="value"` in a comma-separated header. Dates
/// contain commas, so values are found by their quotes, not by splitting.
fn field(header: &str, name: &str) -> Option<String> {
    let mut rest = header;
    while let Some(at) = rest.find(name) {
        let after = rest[at + name.len()..].trim_start();
        let at_start = at == 0 || matches!(rest.as_bytes()[at - 1], b' ' | b',');
        if let (true, Some(value)) = (at_start, after.strip_prefix('=')) {
            let value = value.trim_start().strip_prefix('"')?;
            let end = value.find('"')?;
            return Some(value[..end].to_owned());
        }
        rest = &rest[at + name.len()..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_header_means_archived() {
        assert_eq!(parse_restore_header(None), RestoreStatus::Archived);
    }

    #[test]
    fn ongoing_restore() {
        assert_eq!(
            parse_restore_header(Some("ongoing-request=\"true\"")),
            RestoreStatus::InProgress
        );
    }

    #[test]
    fn finished_restore_keeps_expiry_with_commas() {
        let status = parse_restore_header(Some(
            "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"",
        ));
        assert_eq!(
            status,
            RestoreStatus::Restored {
                expiry: Some("Fri, 21 Dec 2012 00:00:00 GMT".into())
            }
        );
    }

    #[test]
    fn unknown_value_is_not_readable() {
        assert!(!parse_restore_header(Some("something-else")).is_readable());
        assert!(!parse_restore_header(Some("ongoing-request=\"maybe\"")).is_readable());
    }
}
