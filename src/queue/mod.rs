//! The queue seam: how accepted work reaches the workers. The ledger stays the source of truth;
//! a queue only carries "this delivery is due" between replicas. The embedded default needs no
//! separate queue at all (the ledger's rows are the queue); SQS/SNS, Pub/Sub and PostgreSQL
//! queues implement the same trait and pass the same tests.

use std::time::Duration;

use async_trait::async_trait;

use crate::ledger::{LedgerError, StoredDelivery};

pub mod embedded;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Announces deliveries the ledger has just committed.
    async fn publish(&self, delivery_ids: &[String]) -> Result<(), LedgerError>;

    /// Waits at most `wait` for due work and leases up to `max` deliveries. An empty result is
    /// normal: nothing was due in time.
    async fn receive(&self, max: usize, wait: Duration)
    -> Result<Vec<StoredDelivery>, LedgerError>;

    /// The ledger has recorded the outcome of this delivery; the queue may forget it. A delivery
    /// that is never acknowledged comes back once its lease runs out.
    async fn ack(&self, delivery_id: &str) -> Result<(), LedgerError>;
}
