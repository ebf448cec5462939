//! The one error type the core returns. `api::status` maps each kind to a gRPC code, in one place.

/// One offending field of a request, named by its path in the proto message
/// (`notifications[0].email.recipients_email[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong; retrying it unchanged cannot help.
    #[error("invalid request: {}", summary(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The request_id was used before for a different request.
    #[error("{0}")]
    Conflict(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller's permissions do not cover this action here; the message names both.
    #[error("{0}")]
    PermissionDenied(String),
    /// The service is shutting down or a dependency is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a broken dependency. Logged in full; the caller sees a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn summary(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<crate::ledger::LedgerError> for Error {
    fn from(e: crate::ledger::LedgerError) -> Self {
        match e {
            crate::ledger::LedgerError::Closed => Error::Unavailable(
                "the service is shutting down; retry on another replica or later".into(),
            ),
            crate::ledger::LedgerError::Unavailable(problem) => {
                Error::Unavailable(format!("{problem}; retry later"))
            }
            other => Error::Internal(anyhow::Error::new(other)),
        }
    }
}
