//! The delivery loop: lease due deliveries, send each, record the outcome, acknowledge.
//!
//! A delivery is only marked delivered after its send succeeded, and only acknowledged on the queue
//! after the ledger recorded the outcome. A crash anywhere in between leaves the lease to run out,
//! and the delivery is sent again: at least once, never lost.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::channels::{SendError, Sender};
use crate::config::RetryPolicy;
use crate::ledger::{Ledger, Outcome, StoredDelivery, now_millis};
use crate::notify::render::Renderer;
use crate::queue::Queue;
use crate::telemetry;

pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub renderer: Arc<Renderer>,
    pub ledger: Arc<dyn Ledger>,
    pub sender: Arc<dyn Sender>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub send_timeout: Duration,
    pub poll_interval: Duration,
}

/// The delay before attempt `attempt + 1`, given that `attempt` attempts failed: exponential
/// from `base_delay`, capped at `max_delay`, with jitter so that many failures at once (the mail
/// server went down) do not all come back at the same instant.
pub fn backoff(policy: &RetryPolicy, attempt: u32, rng: &mut impl Rng) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = policy
        .base_delay
        .saturating_mul(1u32 << exp)
        .min(policy.max_delay);
    let half = full / 2;
    half + full.mul_f64(rng.random_range(0.0..=0.5))
}

/// Decides what a send came to. `attempts_before` is how many attempts had failed already.
pub fn outcome(
    policy: &RetryPolicy,
    delivery_id: &str,
    attempts_before: u32,
    result: Result<(), SendError>,
    now: i64,
    rng: &mut impl Rng,
) -> Outcome {
    let attempt = attempts_before + 1;
    let id = delivery_id.to_string();
    match result {
        Ok(()) => Outcome::Delivered { id },
        Err(SendError::Permanent { message }) => Outcome::Dead {
            id,
            error: format!("permanent failure on attempt {attempt}: {message}"),
        },
        Err(SendError::Retryable { message, .. }) if attempt >= policy.max_attempts => {
            Outcome::Dead {
                id,
                error: format!("gave up after {attempt} attempts: {message}"),
            }
        }
        Err(SendError::Retryable {
            message,
            retry_after,
        }) => {
            // The peer's own Retry-After wins over our schedule (bounded to a day).
            let delay = retry_after
                .map(|d| d.min(Duration::from_secs(86_400)))
                .unwrap_or_else(|| backoff(policy, attempt, rng));
            Outcome::Retry {
                id,
                at: now + delay.as_millis() as i64,
                error: format!("attempt {attempt}: {message}"),
            }
        }
    }
}

impl Worker {
    /// Runs until `shutdown` turns true, then lets sends in flight finish for up to `deadline`.
    /// Whatever is still unsent stays in the ledger for the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, deadline: Duration) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.concurrency));
        let mut in_flight = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Reap finished sends so the set does not grow.
            while in_flight.try_join_next().is_some() {}
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("semaphore never closes"),
                _ = shutdown.changed() => break,
            };
            let free = permits.available_permits() + 1;
            let received = tokio::select! {
                r = this.queue.receive(free, this.poll_interval) => r,
                _ = shutdown.changed() => break,
            };
            let deliveries = match received {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot lease deliveries; retrying shortly");
                    drop(first);
                    tokio::time::sleep(this.poll_interval).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for delivery in deliveries {
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closes"),
                };
                let span = tracing::info_span!(
                    "delivery",
                    id = %delivery.id,
                    execution = %format!(
                        "{}/{}/{}",
                        delivery.execution.project, delivery.execution.domain, delivery.execution.name
                    ),
                    attempt = delivery.attempts + 1,
                );
                let this = this.clone();
                in_flight.spawn(
                    async move {
                        this.deliver(delivery).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            deadline = %humantime::format_duration(deadline),
            "worker stopping; letting sends in flight finish"
        );
        let drained = tokio::time::timeout(deadline, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = in_flight.len(),
                "shutdown deadline passed; unfinished sends stay in the ledger and go out after restart"
            );
            in_flight.abort_all();
        }
    }

    async fn deliver(&self, delivery: StoredDelivery) {
        let rendered = delivery
            .payload
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|p| crate::notify::render_stored(&self.renderer, p));
        let result = match rendered {
            // Only a corrupted row gets here; no retry can mend it.
            Err(e) => Err(SendError::permanent(e)),
            Ok(message) => {
                let started = std::time::Instant::now();
                let sent =
                    tokio::time::timeout(self.send_timeout, self.sender.send(&message)).await;
                metrics::histogram!(telemetry::SEND_SECONDS, "sender" => self.sender.name())
                    .record(started.elapsed().as_secs_f64());
                match sent {
                    Ok(r) => r,
                    Err(_) => Err(SendError::retryable(format!(
                        "{} send timed out after {}",
                        self.sender.name(),
                        humantime::format_duration(self.send_timeout)
                    ))),
                }
            }
        };
        match &result {
            Ok(()) => tracing::info!(sender = self.sender.name(), "delivered"),
            Err(e) => tracing::warn!(sender = self.sender.name(), error = %e, "send failed"),
        }
        let outcome = outcome(
            &self.retry,
            &delivery.id,
            delivery.attempts,
            result,
            now_millis(),
            &mut rand::rng(),
        );
        let kind = match &outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { error, .. } => {
                tracing::error!(%error, "delivery is dead; it stays listed by ListPending");
                "dead"
            }
        };
        metrics::counter!(telemetry::ATTEMPTS, "sender" => self.sender.name(), "outcome" => kind)
            .increment(1);
        if let Err(e) = self.ledger.record(vec![outcome]).await {
            // Not acknowledged: the lease runs out and the delivery is tried again.
            tracing::error!(error = %e, "cannot record the outcome; the delivery will be retried");
            return;
        }
        if let Err(e) = self.queue.ack(&delivery.id).await {
            tracing::warn!(error = %e, "cannot acknowledge on the queue");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 4,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)] {
            for _ in 0..50 {
                let d = backoff(&policy(), attempt, &mut rng);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn outcomes_follow_the_error_kind_and_attempt_budget() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = policy();
        assert_eq!(
            outcome(&p, "a", 0, Ok(()), 0, &mut rng),
            Outcome::Delivered { id: "a".into() }
        );
        match outcome(
            &p,
            "a",
            0,
            Err(SendError::permanent("550 no such user")),
            0,
            &mut rng,
        ) {
            Outcome::Dead { error, .. } => assert!(error.contains("550 no such user")),
            o => panic!("{o:?}"),
        }
        match outcome(
            &p,
            "a",
            1,
            Err(SendError::retryable("refused")),
            1000,
            &mut rng,
        ) {
            Outcome::Retry { at, error, .. } => {
                assert!((2000..=3000).contains(&at), "{at}");
                assert_eq!(error, "attempt 2: refused");
            }
            o => panic!("{o:?}"),
        }
        match outcome(
            &p,
            "a",
            3,
            Err(SendError::retryable("refused")),
            0,
            &mut rng,
        ) {
            Outcome::Dead { error, .. } => assert_eq!(error, "gave up after 4 attempts: refused"),
            o => panic!("{o:?}"),
        }
        let hinted = SendError::Retryable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(120)),
        };
        match outcome(&p, "a", 0, Err(hinted), 0, &mut rng) {
            Outcome::Retry { at, .. } => assert_eq!(at, 120_000),
            o => panic!("{o:?}"),
        }
    }
}
