//! The queue seam: how accepted work reaches the workers. The ledger stays the source of truth; a
//! queue only carries "this is due" between replicas. The embedded default needs no separate queue
//! at all (the ledger's rows are the queue); SQS, Pub/Sub and PostgreSQL queues implement the same
//! trait and pass the same tests.
//!
//! Every item carries its own ack handle, because brokers acknowledge by what they handed out (an
//! SQS receipt handle, a Pub/Sub ack id), not by our delivery id. An item is acknowledged only
//! after the ledger has recorded what became of it.

use std::time::Duration;

use async_trait::async_trait;

use crate::delivery::DeliveryRef;
use crate::ledger::{LeasedDelivery, LedgerError};
use crate::proto::flyteidl::admin::EmailMessage;

pub mod broker;
pub mod cloud;
pub mod embedded;
pub mod ingest;
pub mod processor;
pub mod pubsub;
pub mod sqs;
pub mod wire;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The embedded queue is the ledger; its errors are the ledger's.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A broker refused or could not be reached; the message says which and why.
    #[error("queue: {0}")]
    Broker(String),
}

/// How to acknowledge one received item, in the terms of the queue that handed it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckHandle {
    /// The ledger's own lease (the embedded queue).
    Lease(DeliveryRef),
    /// A broker's receipt: an SQS receipt handle, a Pub/Sub ack id.
    Receipt(String),
}

/// What a received item asks the worker to do.
#[derive(Debug, Clone)]
pub enum Work {
    /// A ledger delivery, already leased: render, send, record.
    Leased(LeasedDelivery),
    // A broker message that is not a ledger row yet (FlyteAdmin's own, already rendered
    // `EmailMessage`, keyed by the broker's message id) joins here as a variant of its own: the
    // worker records it in the ledger first, then handles it as a leased delivery.
}

#[derive(Debug, Clone)]
pub struct QueueItem {
    pub handle: AckHandle,
    pub work: Work,
}

/// A delivery the ledger has just committed (or made pending again), as a queue announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub delivery_id: String,
    /// For an email delivery on a queue that carries FlyteAdmin's format (`wants_emails`): the
    /// rendered email, so that FlyteAdmin's own processor could read the message too.
    pub email: Option<EmailMessage>,
}

impl Announcement {
    pub fn id(delivery_id: impl Into<String>) -> Self {
        Self {
            delivery_id: delivery_id.into(),
            email: None,
        }
    }
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Announces deliveries the ledger has just committed. The ledger holds them already, so a
    /// failed announcement delays them at most until the worker next looks; it loses nothing.
    async fn publish(&self, announced: &[Announcement]) -> Result<(), QueueError>;

    /// Whether `publish` wants email deliveries rendered (a cloud queue publishes them in
    /// FlyteAdmin's format). Rendering costs, so only such queues ask for it.
    fn wants_emails(&self) -> bool {
        false
    }

    /// Waits at most `wait` for due work and takes up to `max` items. An empty result is normal:
    /// nothing was due in time.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueItem>, QueueError>;

    /// The ledger has recorded the item's outcome as final (delivered or dead): the queue may
    /// forget it.
    async fn ack(&self, handle: &AckHandle) -> Result<(), QueueError>;

    /// Hand the item back to be received again after `delay`: a retry the ledger has scheduled,
    /// or work this worker could not finish. An item neither acked nor nacked comes back when its
    /// lease or visibility timeout runs out.
    async fn nack(&self, handle: &AckHandle, delay: Duration) -> Result<(), QueueError>;
}
