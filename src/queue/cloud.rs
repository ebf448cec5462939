//! The queue a worker uses on AWS or GCP: sending runs from the ledger exactly as with the
//! embedded queue, and the broker carries announcements between processes (and FlyteAdmin's own
//! messages into the ledger, see `processor`). A broker that cannot be reached therefore delays
//! nothing that this process accepted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::broker::{Broker, Outgoing};
use super::embedded::EmbeddedQueue;
use super::{AckHandle, Announcement, Queue, QueueError, QueueItem};

/// How long one announcement may take before it is given up (and logged).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct CloudQueue {
    pub ledger_queue: Arc<EmbeddedQueue>,
    pub broker: Arc<dyn Broker>,
}

#[async_trait]
impl Queue for CloudQueue {
    async fn publish(&self, announced: &[Announcement]) -> Result<(), QueueError> {
        self.ledger_queue.publish(announced).await?;
        // The ledger holds these already and this process sends them whatever the broker says,
        // so Enqueue does not wait for SNS or Pub/Sub: a slow or unreachable broker must not
        // hold up the answer. What the broker would have carried is a wake-up for other
        // replicas and a copy for FlyteAdmin-format consumers; a failure is logged and counted.
        let broker = self.broker.clone();
        let outgoing: Vec<Outgoing> = announced
            .iter()
            .map(|a| match &a.email {
                Some(message) => Outgoing::Email {
                    delivery_id: a.delivery_id.clone(),
                    message: message.clone(),
                },
                None => Outgoing::Delivery {
                    delivery_id: a.delivery_id.clone(),
                },
            })
            .collect();
        tokio::spawn(async move {
            for message in outgoing {
                let id = match &message {
                    Outgoing::Email { delivery_id, .. } | Outgoing::Delivery { delivery_id } => {
                        delivery_id.clone()
                    }
                };
                let result = tokio::time::timeout(PUBLISH_TIMEOUT, broker.publish(message)).await;
                let error = match result {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {PUBLISH_TIMEOUT:?}"),
                };
                metrics::counter!(crate::telemetry::ANNOUNCE_FAILED, "queue" => broker.name())
                    .increment(1);
                tracing::warn!(
                    queue = broker.name(),
                    delivery_id = %id,
                    "could not announce a delivery ({error}); this process sends it anyway"
                );
            }
        });
        Ok(())
    }

    fn wants_emails(&self) -> bool {
        true
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueItem>, QueueError> {
        self.ledger_queue.receive(max, wait).await
    }

    async fn ack(&self, handle: &AckHandle) -> Result<(), QueueError> {
        self.ledger_queue.ack(handle).await
    }

    async fn nack(&self, handle: &AckHandle, delay: Duration) -> Result<(), QueueError> {
        self.ledger_queue.nack(handle, delay).await
    }
}
