//! The ledger: the source of truth for every delivery that was accepted and what became of it.
//!
//! A delivery is inserted (with the request that produced it, for idempotency) in one transaction
//! before Enqueue answers, and leaves the pending list only when a send succeeded or it was given up
//! as dead. Queue backends only carry work between replicas; they never own state.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod filters;
pub mod sqlite;

pub use filters::{Filter, FilterField, FilterOp};

/// Milliseconds since the Unix epoch: portable across SQLite and PostgreSQL and trivially ordered.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Which notification type a delivery came from (and, later, which native channel sends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Slack,
    Pagerduty,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
            Channel::Pagerduty => "pagerduty",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Channel::Email),
            "slack" => Some(Channel::Slack),
            "pagerduty" => Some(Channel::Pagerduty),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted, not tried yet (or being tried now).
    Pending,
    /// A retryable failure; tried again at next_attempt_at.
    Retrying,
    /// Given up: a permanent failure or no attempts left.
    Dead,
    /// Sent. Kept as a notification log, never listed as pending.
    Delivered,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Retrying => "retrying",
            State::Dead => "dead",
            State::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(State::Pending),
            "retrying" => Some(State::Retrying),
            "dead" => Some(State::Dead),
            "delivered" => Some(State::Delivered),
            _ => None,
        }
    }
}

/// A rendered message, exactly what a sender puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub channel: Channel,
    pub recipients: Vec<String>,
    pub sender: String,
    pub subject: String,
    pub html_body: String,
    pub text_body: String,
}

/// What a delivery needs to be rendered and sent. The inputs are stored rather than the rendered
/// message: a fraction of the bytes, and bytes are what the ledger's durable write path pays for.
/// Versioned so that a newer binary still sends rows an older one wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum Payload {
    #[serde(rename = "1")]
    V1 {
        channel: Channel,
        recipients: Vec<String>,
        /// The notification's own template; empty for the configured or built-in one.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        template: String,
        /// The request's `flytenotify.v1.ExecutionContext`, protobuf-encoded, base64: exactly
        /// what the caller sent, so rendering it later gives what Preview showed.
        execution: String,
    },
}

impl Payload {
    pub fn channel(&self) -> Channel {
        match self {
            Payload::V1 { channel, .. } => *channel,
        }
    }

    pub fn recipients(&self) -> &[String] {
        match self {
            Payload::V1 { recipients, .. } => recipients,
        }
    }
}

/// The execution a delivery belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionKey {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub org: String,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub notification_index: u32,
    pub execution: ExecutionKey,
    pub phase: i32,
    pub payload: Payload,
}

/// Everything one Enqueue call records, atomically.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub request_id: String,
    /// A digest of the request's content: the same request_id with other content is a conflict.
    pub fingerprint: String,
    pub unmatched: u32,
    pub deliveries: Vec<NewDelivery>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted {
        delivery_ids: Vec<String>,
    },
    /// The request_id was seen before with the same content: nothing new was recorded.
    Duplicate {
        delivery_ids: Vec<String>,
        unmatched: u32,
    },
    /// The request_id was seen before with different content.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub seq: i64,
    pub id: String,
    pub request_id: String,
    pub execution: ExecutionKey,
    pub phase: i32,
    pub state: State,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_error: String,
    pub created_at: Millis,
    /// Err when the stored payload cannot be decoded; the worker records such a row dead.
    pub payload: Result<Payload, String>,
}

/// What a send came to; the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        id: String,
    },
    Retry {
        id: String,
        at: Millis,
        error: String,
    },
    Dead {
        id: String,
        error: String,
    },
}

impl Outcome {
    pub fn id(&self) -> &str {
        match self {
            Outcome::Delivered { id } | Outcome::Retry { id, .. } | Outcome::Dead { id, .. } => id,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PendingQuery {
    pub limit: u32,
    /// Keyset paging: only rows with a larger seq. Stable while new rows arrive.
    pub after_seq: Option<i64>,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default)]
pub struct PendingPage {
    pub deliveries: Vec<StoredDelivery>,
    /// The seq to continue after, when there may be more.
    pub next_after_seq: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored payload of delivery {id} cannot be read: {source}")]
    Payload {
        id: String,
        source: serde_json::Error,
    },
    #[error("the ledger is closed")]
    Closed,
    #[error("ledger I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One implementation per store; every implementation passes tests/ledger_conformance.rs.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Records a request and its deliveries atomically and durably, or reports it as a duplicate.
    async fn accept(&self, request: NewRequest) -> Result<AcceptOutcome, LedgerError>;

    /// Pending, retrying and dead deliveries, oldest first.
    async fn list_pending(&self, query: PendingQuery) -> Result<PendingPage, LedgerError>;

    /// Takes up to `max` deliveries that are due at `now` and not leased, and leases them for
    /// `lease_for` so no other worker sends them meanwhile. A lease that runs out (the worker died)
    /// makes the delivery due again: at-least-once, never lost.
    async fn lease_due(
        &self,
        now: Millis,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<StoredDelivery>, LedgerError>;

    /// Records what sends came to and ends their leases.
    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), LedgerError>;

    /// Ends every lease. Called at start-up by a single-process store, whose leases can only be
    /// left over from a process that died.
    async fn release_all_leases(&self) -> Result<u64, LedgerError>;

    /// The earliest next_attempt_at among deliveries waiting to be sent, to sleep until then.
    async fn next_due(&self) -> Result<Option<Millis>, LedgerError>;

    /// Flushes and stops; later calls fail with `Closed`.
    async fn close(&self);
}
