//! Senders: one per way of delivering a rendered message. Each says whether a failure is worth
//! retrying; the worker owns the retry schedule.

use std::time::Duration;

use async_trait::async_trait;

use crate::ledger::Message;

pub mod email;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Might work later: the peer is down, busy, or said "try again".
    #[error("{message}")]
    Retryable {
        message: String,
        /// The peer's own hint (Retry-After, SMTP 4xx with a delay), honoured over the backoff.
        retry_after: Option<Duration>,
    },
    /// Will never work as it is: a rejected address, a malformed message, bad credentials.
    #[error("{message}")]
    Permanent { message: String },
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SendError::Permanent {
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait Sender: Send + Sync + 'static {
    /// A short name for logs and ListPending errors: "maildir", "smtp", ...
    fn name(&self) -> &'static str;

    async fn send(&self, message: &Message) -> Result<(), SendError>;
}
