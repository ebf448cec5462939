//! The delivery loop: lease due deliveries, send each, record the outcome, acknowledge.
//!
//! A delivery is only marked delivered after its send succeeded, and only acknowledged on the queue
//! after the ledger recorded the outcome. A crash anywhere in between leaves the lease to run out,
//! and the delivery is sent again: at least once, never lost.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::channels::health::SenderHealth;
use crate::channels::rate_limit::RateLimiter;
use crate::channels::{Router, SendError};
use crate::config::RetryPolicy;
use crate::delivery::{Content, DeliveryRef, Outcome, Rendered};
use crate::ledger::filters::Subject;
use crate::ledger::{LeasedDelivery, Ledger, LedgerError};
use crate::notify::render::Renderer;
use crate::notify::silences::ActiveSilences;
use crate::queue::{AckHandle, Queue, QueueError, QueueItem, Work};
use crate::telemetry;

/// With sends in flight, how long a free slot waits for more to free up before the worker
/// leases: under load sends finish one at a time, and leasing for each alone would cost the
/// ledger a write per delivery. A moment is enough for many to finish when sends are quick, and
/// nothing worth counting when they are slow.
const LEASE_GATHER: Duration = Duration::from_millis(2);

/// The most outcomes one `record` call takes.
const MAX_RECORD_BATCH: usize = 256;

/// How soon work that could not be recorded is offered again.
const UNRECORDED_RETRY: Duration = Duration::from_secs(5);

/// The longest a send waits in the worker for its destination's rate-limit slot. A longer wait
/// puts the delivery back in the ledger until its slot, so that a busy destination does not hold
/// worker slots that other destinations' deliveries need (and the wait stays well inside the
/// lease, which is sendTimeout + 30 s).
const MAX_RATE_WAIT: Duration = Duration::from_secs(5);

/// How long, after `shutdownGrace`, the sends that were cut off have to hand their deliveries
/// back to the ledger.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub renderer: Arc<Renderer>,
    pub ledger: Arc<dyn Ledger>,
    pub router: Router,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    pub send_timeout: Duration,
    pub poll_interval: Duration,
    /// Told every send's result: a sender failing again and again is reported by health.
    pub sender_health: Arc<SenderHealth>,
    /// Per process with the embedded store; shared by the replicas on PostgreSQL.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// A delivery one of these matches when it is due is recorded silenced, not sent.
    pub silences: Arc<ActiveSilences>,
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

/// Completes when the worker cuts sends off at the end of the shutdown grace.
async fn cut_off(cut: &mut watch::Receiver<bool>) {
    // The guard wait_for returns must not live across the select's other branch.
    let _ = cut.wait_for(|cut| *cut).await.map(|_| ());
}

/// One worker slot counted busy in `flyte_notify_worker_slots_busy` while this lives: dropped
/// with its send task, also when the task is aborted at the end of a shutdown.
struct BusySlot;

impl BusySlot {
    fn take() -> Self {
        metrics::gauge!(telemetry::WORKER_SLOTS_BUSY).increment(1.0);
        BusySlot
    }
}

impl Drop for BusySlot {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::WORKER_SLOTS_BUSY).decrement(1.0);
    }
}

/// What became of one outcome handed to the recorder.
#[derive(Debug, PartialEq)]
enum Applied {
    Recorded,
    /// Another attempt owns the delivery now; its worker settles the item.
    Stale,
    /// A silenced outcome whose silence had ended: the delivery is due again.
    Unsilenced,
}

/// An outcome on its way to the ledger, and who waits to hear it was written.
struct ToRecord {
    delivery: DeliveryRef,
    outcome: Outcome,
    done: oneshot::Sender<Result<Applied, String>>,
}

/// Records outcomes in batches: each `record` takes every outcome that came in while the one
/// before it was written, so under load many sends share one ledger write (and, on PostgreSQL,
/// one commit) instead of one each. If a batch fails while the ledger can write, each outcome is
/// tried again alone, so one that cannot be written fails only its own send.
async fn record_in_batches(ledger: Arc<dyn Ledger>, mut rx: mpsc::Receiver<ToRecord>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_RECORD_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        metrics::histogram!(telemetry::WORKER_BATCH_SIZE, "op" => "record")
            .record(batch.len() as f64);
        let outcomes = batch
            .iter()
            .map(|r| (r.delivery.clone(), r.outcome.clone()))
            .collect();
        match ledger.record(outcomes).await {
            Ok(recorded) => {
                for r in batch {
                    let _ = r.done.send(Ok(applied(&recorded, &r.delivery.id)));
                }
            }
            // Alone, or the ledger cannot write at all now: retrying each outcome alone would only
            // fail as many times (each after the store's timeout, while it is still finding out),
            // so every caller gets this error at once and its lease brings the delivery back.
            Err(e)
                if batch.len() == 1
                    || matches!(e, LedgerError::Unavailable(_) | LedgerError::Closed) =>
            {
                let reason = e.to_string();
                for r in batch {
                    let _ = r.done.send(Err(reason.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "recording a batch of outcomes failed; recording them one by one");
                for r in batch {
                    let alone = ledger
                        .record(vec![(r.delivery.clone(), r.outcome.clone())])
                        .await
                        .map(|recorded| applied(&recorded, &r.delivery.id))
                        .map_err(|e| e.to_string());
                    let _ = r.done.send(alone);
                }
            }
        }
    }
}

/// What `record` did with the outcome for delivery `id`.
fn applied(recorded: &crate::ledger::Recorded, id: &str) -> Applied {
    if recorded.stale.iter().any(|s| s == id) {
        Applied::Stale
    } else if recorded.unsilenced.iter().any(|s| s == id) {
        Applied::Unsilenced
    } else {
        Applied::Recorded
    }
}

/// Hands `outcome` to the recorder and waits until it is written.
async fn record(
    records: &mpsc::Sender<ToRecord>,
    delivery: DeliveryRef,
    outcome: Outcome,
) -> Result<Applied, String> {
    let (done, written) = oneshot::channel();
    records
        .send(ToRecord {
            delivery,
            outcome,
            done,
        })
        .await
        .map_err(|_| "the recorder stopped".to_string())?;
    written
        .await
        .map_err(|_| "the recorder stopped".to_string())?
}

/// Decides what attempt number `attempt` (1 for the first) came to.
pub fn outcome(
    policy: &RetryPolicy,
    attempt: u32,
    result: Result<(), SendError>,
    rng: &mut impl Rng,
) -> Outcome {
    match result {
        Ok(()) => Outcome::Delivered,
        // A deferral is no attempt that failed: even the last attempt's deferral waits.
        Err(SendError::Deferred { retry_after }) => Outcome::Retry {
            delay: retry_after,
            error: format!("attempt {attempt}: waiting for the destination's rate limit"),
        },
        Err(SendError::Permanent { message }) => Outcome::Dead {
            error: format!("permanent failure on attempt {attempt}: {message}"),
        },
        Err(SendError::Retryable { message, .. }) if attempt >= policy.max_attempts => {
            Outcome::Dead {
                error: format!("gave up after {attempt} attempts: {message}"),
            }
        }
        Err(SendError::Retryable {
            message,
            retry_after,
        }) => Outcome::Retry {
            // The peer's own Retry-After wins over our schedule (bounded to a day).
            delay: retry_after
                .map(|d| d.min(Duration::from_secs(86_400)))
                .unwrap_or_else(|| backoff(policy, attempt, rng)),
            error: format!("attempt {attempt}: {message}"),
        },
    }
}

impl Worker {
    /// Runs until `shutdown` turns true; then leases nothing more and lets sends in flight finish
    /// for up to `grace`. A send still running then is cut off and its delivery handed back at
    /// once (its lease released, no attempt counted), so that another replica, or this one's
    /// next start, sends it without waiting for the lease to run out.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let this = Arc::new(self);
        let (records, to_record) = mpsc::channel(MAX_RECORD_BATCH);
        let recorder = tokio::spawn(record_in_batches(this.ledger.clone(), to_record));
        let permits = Arc::new(Semaphore::new(this.concurrency));
        metrics::gauge!(telemetry::WORKER_SLOTS).set(this.concurrency as f64);
        let (cut_off, cut) = watch::channel(false);
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
            // With sends in flight, gather the slots that free up in a moment, so that one
            // lease takes many deliveries.
            let mut gathered = Vec::new();
            let wanted = (this.concurrency / 2).max(1);
            if permits.available_permits() + 1 < wanted {
                let gather = tokio::time::sleep(LEASE_GATHER);
                tokio::pin!(gather);
                while gathered.len() + 1 < wanted {
                    tokio::select! {
                        permit = permits.clone().acquire_owned() => {
                            gathered.push(permit.expect("semaphore never closes"));
                        }
                        _ = &mut gather => break,
                    }
                }
            }
            let free = permits.available_permits() + 1 + gathered.len();
            // Not cut short by shutdown: a receive cancelled after its lease committed would drop
            // leased items, and they would wait for their lease to run out. It returns within
            // pollInterval; what it brings is sent within the grace.
            let received = this.queue.receive(free, this.poll_interval).await;
            let items = match received {
                Ok(items) => items,
                Err(QueueError::Ledger(LedgerError::Unavailable(_))) => {
                    // The ledger has said so once, loudly; the worker waits it out quietly.
                    drop((first, gathered));
                    tokio::time::sleep(this.poll_interval).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot receive deliveries; retrying shortly");
                    drop((first, gathered));
                    tokio::time::sleep(this.poll_interval).await;
                    continue;
                }
            };
            if !items.is_empty() {
                metrics::histogram!(telemetry::WORKER_BATCH_SIZE, "op" => "lease")
                    .record(items.len() as f64);
            }
            let mut held = gathered;
            held.push(first);
            for item in items {
                // At most `free` items came, so these permits are held or free now: no wait.
                let permit = match held.pop() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closes"),
                };
                let this = this.clone();
                let (cut, records) = (cut.clone(), records.clone());
                let busy = BusySlot::take();
                in_flight.spawn(async move {
                    this.handle(item, cut, &records).await;
                    drop((permit, busy));
                });
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            grace = %humantime::format_duration(grace),
            "worker stopping; letting sends in flight finish"
        );
        let drained = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                cut_off = in_flight.len(),
                "shutdownGrace is over; sends still running are cut off and handed back for \
                 another replica or the next start"
            );
            let _ = cut_off.send(true);
            // Handing back is one ledger write each; a ledger that does not answer even that
            // leaves the leases to run out, which loses nothing either.
            let handed_back = tokio::time::timeout(HAND_BACK_TIMEOUT, async {
                while in_flight.join_next().await.is_some() {}
            })
            .await;
            if handed_back.is_err() {
                tracing::warn!(
                    left = in_flight.len(),
                    "cannot hand every delivery back; their leases run out and they go out then"
                );
                in_flight.abort_all();
            }
        }
        // Every send has handed its outcome over or been cut off: the recorder writes what it
        // holds and ends.
        drop(records);
        let _ = recorder.await;
    }

    async fn handle(
        &self,
        item: QueueItem,
        cut: watch::Receiver<bool>,
        records: &mpsc::Sender<ToRecord>,
    ) {
        let QueueItem { handle, work } = item;
        match work {
            Work::Leased(leased) => {
                let span = tracing::info_span!(
                    "delivery",
                    id = %leased.delivery.id,
                    execution = %telemetry::log_safe(&[
                        &leased.execution.project,
                        &leased.execution.domain,
                        &leased.execution.name,
                    ]),
                    attempt = leased.delivery.attempt,
                );
                self.deliver(&handle, leased, cut, records)
                    .instrument(span)
                    .await
            }
        }
    }

    /// Renders for the sender the router picks, sends, records, then settles the queue item. A
    /// send cut off at shutdown (`cut` turns true) hands the item back instead: nothing is
    /// recorded, since nobody knows whether it arrived.
    async fn deliver(
        &self,
        handle: &AckHandle,
        leased: LeasedDelivery,
        mut cut: watch::Receiver<bool>,
        records: &mpsc::Sender<ToRecord>,
    ) {
        let delivery = leased.delivery;
        // The execution context, decoded once: the silences, the rendering and the metrics
        // read it.
        let content = leased.content.and_then(|(payload, bytes)| {
            let execution = crate::notify::stored_context(&payload, &bytes)?;
            Ok((payload, execution))
        });
        let channel = content.as_ref().ok().map(|(payload, _)| payload.channel);
        let stuck = content
            .as_ref()
            .is_ok_and(|(_, execution)| execution.still_running_after.is_some());
        if let (Some(channel), Ok((payload, execution))) = (channel, content.as_ref())
            && !self.silences.is_empty()
        {
            let id_of = |id: Option<&crate::proto::flyteidl::core::Identifier>| {
                id.filter(|id| !id.name.is_empty())
                    .map(|id| format!("{}/{}/{}", id.project, id.domain, id.name))
                    .unwrap_or_default()
            };
            let launch_plan = id_of(execution.launch_plan.as_ref());
            let workflow = id_of(execution.workflow.as_ref());
            let phase =
                crate::proto::flyteidl::core::workflow_execution::Phase::try_from(execution.phase)
                    .map_or("", |p| p.as_str_name());
            let subject = Subject {
                project: &leased.execution.project,
                domain: &leased.execution.domain,
                name: &leased.execution.name,
                channel,
                launch_plan: &launch_plan,
                workflow: &workflow,
                phase,
                destinations: &payload.recipients,
            };
            if let Some(silence_id) = self.silences.matching(&subject) {
                return self
                    .silence(handle, delivery, silence_id, channel, records)
                    .await;
            }
        }
        let members = &leased.members;
        let routed = content.and_then(|(payload, execution)| {
            let sender = self
                .router
                .route(payload.channel, &payload.recipients)
                .ok_or_else(|| {
                    format!("no sender is configured for {} deliveries", payload.channel)
                })?;
            let rendered = if payload.content == Content::Digest {
                crate::notify::digest::render_digest(
                    &self.renderer,
                    sender.channel(),
                    &payload,
                    &delivery.id,
                    members,
                )?
            } else {
                crate::notify::render_stored(
                    &self.renderer,
                    sender.channel(),
                    &payload,
                    &execution,
                )?
            };
            Ok((sender.clone(), rendered))
        });
        let (sender_name, result) = match routed {
            // A row that cannot be read or routed: no retry can mend it.
            Err(e) => ("none", Err(SendError::permanent(e))),
            Ok((sender, rendered)) => {
                let result = tokio::select! {
                    r = self.send(sender.as_ref(), &delivery, &rendered) => r,
                    _ = cut_off(&mut cut) => {
                        if let Err(e) = self.queue.nack(handle, Duration::ZERO).await {
                            tracing::warn!(error = %e, "cannot hand the delivery back; its lease runs out");
                        } else {
                            tracing::info!(sender = sender.name(), "send cut off at shutdown; handed back");
                        }
                        return;
                    }
                };
                self.sender_health.record(sender.name(), &result);
                (sender.name(), result)
            }
        };
        match &result {
            Ok(()) => tracing::info!(sender = sender_name, "delivered"),
            Err(e) => tracing::warn!(sender = sender_name, error = %e, "send failed"),
        }
        let outcome = outcome(&self.retry, delivery.attempt, result, &mut rand::rng());
        let kind = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { error } => {
                tracing::error!(%error, "delivery is dead; it stays listed by ListPending");
                "dead"
            }
            Outcome::Silenced { .. } => "silenced",
        };
        metrics::counter!(telemetry::ATTEMPTS, "sender" => sender_name, "outcome" => kind)
            .increment(1);
        if let (Outcome::Delivered, Some(channel)) = (&outcome, channel) {
            metrics::histogram!(telemetry::ENQUEUE_TO_DELIVERED, "channel" => channel.as_str())
                .record(leased.accepted_at.elapsed().as_secs_f64());
            if !leased.members.is_empty() {
                metrics::histogram!(telemetry::GROUP_SIZE, "channel" => channel.as_str())
                    .record(leased.members.len() as f64);
            }
            if stuck {
                metrics::counter!(telemetry::DEADLINES_FIRED, "channel" => channel.as_str())
                    .increment(1);
            }
        }
        let retry_in = match &outcome {
            Outcome::Retry { delay, .. } => Some(*delay),
            _ => None,
        };
        let settle = match record(records, delivery, outcome).await {
            // Another attempt owns the delivery now; its worker settles the item.
            Ok(Applied::Stale) => return,
            Ok(_) => match retry_in {
                Some(delay) => self.queue.nack(handle, delay).await,
                None => self.queue.ack(handle).await,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot record the outcome; the delivery will be retried");
                self.queue.nack(handle, UNRECORDED_RETRY).await
            }
        };
        if let Err(e) = settle {
            tracing::warn!(error = %e, "cannot settle the item on the queue");
        }
    }

    /// Records a due delivery as silenced instead of sending it. The ledger applies that only
    /// while the silence is still active by its clock; otherwise it gives the lease back and the
    /// delivery is due again shortly, to be sent once this replica's copy has caught up.
    async fn silence(
        &self,
        handle: &AckHandle,
        delivery: DeliveryRef,
        silence_id: String,
        channel: crate::delivery::Channel,
        records: &mpsc::Sender<ToRecord>,
    ) {
        let outcome = Outcome::Silenced {
            silence_id: silence_id.clone(),
        };
        let settle = match record(records, delivery, outcome).await {
            Ok(Applied::Stale) => return,
            Ok(Applied::Unsilenced) => {
                tracing::info!(silence = %silence_id, "the silence ended meanwhile; sending shortly");
                self.queue.ack(handle).await
            }
            Ok(Applied::Recorded) => {
                tracing::info!(silence = %silence_id, "silenced; not sent");
                metrics::counter!(telemetry::SILENCED, "channel" => channel.as_str()).increment(1);
                self.queue.ack(handle).await
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the delivery silenced; it will be tried again");
                self.queue.nack(handle, UNRECORDED_RETRY).await
            }
        };
        if let Err(e) = settle {
            tracing::warn!(error = %e, "cannot settle the item on the queue");
        }
    }

    async fn send(
        &self,
        sender: &dyn crate::channels::Sender,
        delivery: &DeliveryRef,
        rendered: &Rendered,
    ) -> Result<(), SendError> {
        let destination = sender.destination(rendered);
        if let Some(d) = &destination {
            let wait = self.rate_limiter.reserve(d).await;
            if wait > MAX_RATE_WAIT {
                self.rate_limiter.release(d).await;
                metrics::counter!(telemetry::RATE_LIMITED, "sender" => sender.name()).increment(1);
                return Err(SendError::Deferred { retry_after: wait });
            }
            if !wait.is_zero() {
                metrics::counter!(telemetry::RATE_LIMITED, "sender" => sender.name()).increment(1);
                tokio::time::sleep(wait).await;
            }
        }
        // A webhook may set its own timeout (at most a minute, which the lease allows for).
        let timeout = match rendered {
            Rendered::Webhook(w) => w.timeout.unwrap_or(self.send_timeout),
            _ => self.send_timeout,
        };
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(timeout, sender.send(delivery, rendered)).await;
        metrics::histogram!(telemetry::SEND_SECONDS, "sender" => sender.name())
            .record(started.elapsed().as_secs_f64());
        let result = sent.unwrap_or_else(|_| {
            Err(SendError::retryable(format!(
                "{} send timed out after {}",
                sender.name(),
                humantime::format_duration(timeout)
            )))
        });
        // The destination said when it takes more: every delivery to it waits until then.
        if let (
            Some(d),
            Err(SendError::Retryable {
                retry_after: Some(wait),
                ..
            }),
        ) = (&destination, &result)
        {
            self.rate_limiter.pause(d, *wait).await;
        }
        result
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
        assert_eq!(outcome(&p, 1, Ok(()), &mut rng), Outcome::Delivered);
        match outcome(
            &p,
            1,
            Err(SendError::permanent("550 no such user")),
            &mut rng,
        ) {
            Outcome::Dead { error } => assert!(error.contains("550 no such user")),
            o => panic!("{o:?}"),
        }
        match outcome(&p, 2, Err(SendError::retryable("refused")), &mut rng) {
            Outcome::Retry { delay, error } => {
                assert!(
                    (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&delay),
                    "{delay:?}"
                );
                assert_eq!(error, "attempt 2: refused");
            }
            o => panic!("{o:?}"),
        }
        match outcome(&p, 4, Err(SendError::retryable("refused")), &mut rng) {
            Outcome::Dead { error } => assert_eq!(error, "gave up after 4 attempts: refused"),
            o => panic!("{o:?}"),
        }
        let hinted = SendError::Retryable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(120)),
        };
        match outcome(&p, 1, Err(hinted), &mut rng) {
            Outcome::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(120)),
            o => panic!("{o:?}"),
        }
    }
}
