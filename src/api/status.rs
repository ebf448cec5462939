//! The one table from core errors to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// Field violations sent in full; the rest are counted. The message and the details both travel
/// in headers, and gRPC clients (C-core, grpcio, grpc-go) refuse more than 8 KiB of them with
/// RESOURCE_EXHAUSTED, which would hide every field error from the caller.
const MAX_VIOLATIONS: usize = 20;
/// Bytes of one field path or description; a recipient quoted in a description is caller input.
const MAX_VIOLATION_TEXT: usize = 120;
/// Violations spelled out in the status message itself.
const MESSAGE_VIOLATIONS: usize = 3;

fn clip(text: &str) -> String {
    if text.len() <= MAX_VIOLATION_TEXT {
        return text.to_string();
    }
    let mut end = MAX_VIOLATION_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub fn to_status(error: Error) -> Status {
    match error {
        Error::InvalidArgument(mut violations) => {
            metrics::counter!(crate::telemetry::INVALID).increment(1);
            let total = violations.len();
            let more = total.saturating_sub(MAX_VIOLATIONS);
            violations.truncate(MAX_VIOLATIONS);
            for v in &mut violations {
                v.field = clip(&v.field);
                v.description = clip(&v.description);
            }
            if more > 0 {
                violations.push(crate::error::FieldViolation::new(
                    "request",
                    format!("{more} more problems not listed; fix these and send again"),
                ));
            }
            let mut details = ErrorDetails::new();
            for v in &violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            // The message names the first few; the details hold the rest.
            let shown = total.min(MESSAGE_VIOLATIONS);
            let mut message = Error::InvalidArgument(violations[..shown].to_vec()).to_string();
            if total > shown {
                message.push_str(&format!(" (and {} more)", total - shown));
            }
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::Conflict(message) => Status::already_exists(message),
        Error::NotFound(message) => Status::not_found(message),
        Error::PermissionDenied(message) => Status::permission_denied(message),
        Error::Unavailable(message) => Status::unavailable(message),
        Error::Internal(e) => {
            // The chain may hold paths and SQL; the caller gets none of it, the log gets all of it.
            tracing::error!(error = format!("{e:#}"), "internal error");
            Status::internal("internal error; the server log has the details")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldViolation;

    #[test]
    fn many_long_violations_fit_the_default_metadata_limit() {
        let violations = (0..100)
            .map(|i| {
                FieldViolation::new(
                    format!("notifications[0].email.recipients_email[{i}]"),
                    format!("{:?} is not an email address", "x".repeat(1000)),
                )
            })
            .collect();
        let status = to_status(Error::InvalidArgument(violations));
        let details = status.get_details_bad_request().unwrap();
        assert_eq!(details.field_violations.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            details.field_violations[MAX_VIOLATIONS].description,
            "80 more problems not listed; fix these and send again"
        );
        // grpc-message and grpc-status-details-bin, as they go on the wire (the details base64).
        let wire = status.message().len() + status.details().len() * 4 / 3;
        assert!(wire < 7 * 1024, "{wire} bytes of headers");
    }
}
