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

pub struct CloudQueue {
    pub ledger_queue: Arc<EmbeddedQueue>,
    pub broker: Arc<dyn Broker>,
}

#[async_trait]
impl Queue for CloudQueue {
    async fn publish(&self, announced: &[Announcement]) -> Result<(), QueueError> {
        self.ledger_queue.publish(announced).await?;
        let mut failed = None;
        for a in announced {
            let outgoing = match &a.email {
                Some(message) => Outgoing::Email {
                    delivery_id: a.delivery_id.clone(),
                    message: message.clone(),
                },
                None => Outgoing::Delivery {
                    delivery_id: a.delivery_id.clone(),
                },
            };
            if let Err(e) = self.broker.publish(outgoing).await {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
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
