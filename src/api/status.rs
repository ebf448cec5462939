//! The one table from core errors to gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

pub fn to_status(error: Error) -> Status {
    match error {
        Error::InvalidArgument(violations) => {
            metrics::counter!(crate::telemetry::INVALID).increment(1);
            let mut details = ErrorDetails::new();
            for v in &violations {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            let message = Error::InvalidArgument(violations).to_string();
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::Conflict(message) => Status::already_exists(message),
        Error::Unavailable(message) => Status::unavailable(message),
        Error::Internal(e) => {
            // The chain may hold paths and SQL; the caller gets none of it, the log gets all of it.
            tracing::error!(error = format!("{e:#}"), "internal error");
            Status::internal("internal error; the server log has the details")
        }
    }
}
