//! The embedded queue: the ledger's own rows, leased with a time limit. `publish` only wakes the
//! worker so that a fresh delivery goes out at once instead of at the next poll.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::Queue;
use crate::ledger::{Ledger, LedgerError, StoredDelivery, now_millis};

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
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn publish(&self, _delivery_ids: &[String]) -> Result<(), LedgerError> {
        self.wake.notify_one();
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredDelivery>, LedgerError> {
        let leased = self
            .ledger
            .lease_due(now_millis(), max, self.lease_for)
            .await?;
        if !leased.is_empty() {
            return Ok(leased);
        }
        // Sleep until woken, the earliest retry is due, or `wait` passes, whichever comes first.
        let wait = match self.ledger.next_due().await? {
            Some(at) => {
                let until = Duration::from_millis((at - now_millis()).max(0) as u64);
                until.min(wait)
            }
            None => wait,
        };
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        self.ledger
            .lease_due(now_millis(), max, self.lease_for)
            .await
    }

    async fn ack(&self, _delivery_id: &str) -> Result<(), LedgerError> {
        // Recording the outcome in the ledger already ended the lease.
        Ok(())
    }
}
