//! The embedded queue: the ledger's own rows, leased with a time limit. `publish` only wakes the
//! worker so that a fresh delivery goes out at once instead of at the next poll.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{AckHandle, Announcement, Queue, QueueError, QueueItem, Work};
use crate::ledger::Ledger;

pub struct EmbeddedQueue {
    ledger: Arc<dyn Ledger>,
    wake: Notify,
    /// Longer than any send may take (the send timeout plus a margin), so a live lease never expires.
    lease_for: Duration,
}

impl EmbeddedQueue {
    pub fn new(ledger: Arc<dyn Ledger>, lease_for: Duration) -> Self {
        Self {
            ledger,
            wake: Notify::new(),
            lease_for,
        }
    }

    /// Makes a waiting `receive` look for due work now: new deliveries were recorded.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn lease(&self, max: usize) -> Result<Vec<QueueItem>, QueueError> {
        let leased = self.ledger.lease_due(max, self.lease_for).await?;
        Ok(leased
            .into_iter()
            .map(|d| QueueItem {
                handle: AckHandle::Lease(d.delivery.clone()),
                work: Work::Leased(d),
            })
            .collect())
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn publish(&self, _announced: &[Announcement]) -> Result<(), QueueError> {
        self.wake();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueItem>, QueueError> {
        let items = self.lease(max).await?;
        if !items.is_empty() {
            return Ok(items);
        }
        // Sleep until woken, the earliest retry is due, or `wait` passes, whichever comes first.
        let wait = match self.ledger.next_due().await? {
            Some(until) => until.min(wait),
            None => wait,
        };
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        self.lease(max).await
    }

    async fn ack(&self, _handle: &AckHandle) -> Result<(), QueueError> {
        // Recording the outcome in the ledger already ended the lease.
        Ok(())
    }

    async fn nack(&self, handle: &AckHandle, delay: Duration) -> Result<(), QueueError> {
        // After a recorded retry the lease is already over and this changes nothing; after work
        // that was not recorded, the delivery is due again after `delay` instead of at lease end.
        match handle {
            AckHandle::Lease(delivery) => Ok(self.ledger.release(delivery, delay).await?),
            AckHandle::Receipt(_) => Err(QueueError::Broker(
                "the embedded queue was handed a broker receipt".into(),
            )),
        }
    }
}
