//! From what an S3 service answered to an [`ErrorKind`].

use crate::cloud::error::ErrorKind;

/// Classifies an S3 error response by its error code first (the precise
/// signal) and its HTTP status second (HEAD responses carry no body, hence
/// no code).
pub fn classify_s3_error(status: Option<u16>, code: Option<&str>) -> ErrorKind {
    match code {
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload") => return ErrorKind::NotFound,
        Some("InvalidObjectState") => return ErrorKind::NotRestored,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "AccountProblem",
        ) => return ErrorKind::Auth,
        Some(
            "SlowDown"
            | "RequestTimeout"
            | "InternalError"
            | "ServiceUnavailable"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeTooSkewed"
            | "OperationAborted",
        ) => return ErrorKind::Transient,
        Some(
            "NoSuchBucket" | "InvalidRange" | "EntityTooSmall" | "InvalidPart" | "InvalidPartOrder",
        ) => return ErrorKind::Permanent,
        _ => {}
    }
    match status {
        Some(404) => ErrorKind::NotFound,
        Some(401 | 403) => ErrorKind::Auth,
        Some(408 | 429) => ErrorKind::Transient,
        Some(s) if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_status() {
        assert_eq!(
            classify_s3_error(Some(403), Some("InvalidObjectState")),
            ErrorKind::NotRestored
        );
        assert_eq!(
            classify_s3_error(Some(503), Some("SlowDown")),
            ErrorKind::Transient
        );
        assert_eq!(
            classify_s3_error(Some(404), Some("NoSuchBucket")),
            ErrorKind::Permanent
        );
        assert_eq!(
            classify_s3_error(Some(403), Some("SignatureDoesNotMatch")),
            ErrorKind::Auth
        );
    }

    #[test]
    fn status_alone() {
        assert_eq!(classify_s3_error(Some(404), None), ErrorKind::NotFound);
        assert_eq!(classify_s3_error(Some(403), None), ErrorKind::Auth);
        assert_eq!(classify_s3_error(Some(500), None), ErrorKind::Transient);
        assert_eq!(classify_s3_error(Some(429), None), ErrorKind::Transient);
        assert_eq!(
            classify_s3_error(Some(400), Some("InvalidArgument")),
            ErrorKind::Permanent
        );
        assert_eq!(classify_s3_error(None, None), ErrorKind::Permanent);
    }
}
