//! A cloud queue (SQS fed by SNS, Pub/Sub) as the processor sees it. Every backend passes
//! tests/broker_conformance.rs.
//!
//! What travels is in FlyteAdmin's formats (see `wire`), so that FlyteAdmin can publish to a queue
//! flyte-notify consumes. A broker carries no state of ours: a received message becomes ledger
//! state (`ingest`) before it is acknowledged, and sending and retrying run from the ledger.

use std::time::Duration;

use async_trait::async_trait;

use super::QueueError;
use super::wire::Inbound;
use crate::proto::flyteidl::admin::EmailMessage;

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// An email delivery: published as FlyteAdmin publishes an email (readable by FlyteAdmin's
    /// processor), with the delivery id attached for ours.
    Email {
        delivery_id: String,
        message: EmailMessage,
    },
    /// Any other delivery: our own kind, with its id.
    Delivery { delivery_id: String },
}

/// One received message, with what it says and how to settle it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The broker's id of the message: the same on every redelivery.
    pub message_id: String,
    /// What `ack` and `nack` take: an SQS receipt handle, a Pub/Sub ack id.
    pub receipt: String,
    pub inbound: Inbound,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// "sqs" or "pubsub": names the broker in logs, and prefixes the request id that a received
    /// message is recorded under, so that two brokers' message ids never collide.
    fn name(&self) -> &'static str;

    async fn publish(&self, message: Outgoing) -> Result<(), QueueError>;

    /// Waits at most `wait` (rounded to what the broker allows) and returns up to `max` messages.
    /// A message not acked comes back after the broker's visibility timeout or ack deadline.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError>;

    /// Removes the message for good: the ledger holds what it carried.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Makes the message visible again after `delay`.
    async fn nack(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
}
