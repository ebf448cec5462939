//! Per-destination rate limits: each destination (a Slack channel, a PagerDuty routing key, a
//! webhook URL) gets a bucket of `events` sends per `per`, in bursts of up to `events`, and a
//! destination that answered 429 is paused for its Retry-After. A send over the limit waits for
//! its slot; it is never dropped.
//!
//! The buckets are GCRA (a token bucket kept as one timestamp per destination, the theoretical
//! arrival time of the next send): a send reserves the next free slot and learns how long to wait
//! for it, so concurrent workers queue up fairly without a lock held across the wait.
//!
//! Where the timestamps live is the limiter's business: in the process (`local`), which is right
//! when one process sends everything (the embedded store), or in the PostgreSQL ledger's database
//! (`postgres`), so that any number of replicas together keep to one destination's limit. Both
//! pass tests/rate_limiter_conformance.rs.

use std::time::Duration;

use async_trait::async_trait;

use super::{Destination, RateLimit};

pub mod local;
pub mod postgres;

pub use local::LocalRateLimiter;
pub use postgres::PostgresRateLimiter;

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Reserves a slot for one send to `destination`; returns how long to wait for it (zero: send
    /// now). Never fails: a limiter that cannot do better limits on its own.
    async fn reserve(&self, destination: &Destination) -> Duration;

    /// Gives back a slot reserved by `reserve` that will not be used (the send was put off).
    async fn release(&self, destination: &Destination);

    /// The destination asked us to wait (429 with Retry-After): no send to it before then.
    async fn pause(&self, destination: &Destination, wait: Duration);
}

/// The time between two sends at the steady rate.
fn interval(limit: RateLimit) -> Duration {
    limit.per / limit.events.max(1)
}
