//! Rate limits shared by every replica on one PostgreSQL ledger, so that three replicas together
//! send a destination its configured rate, not three times it.
//!
//! One row per destination key in the ledger's database (`rate_limits`, created by the ledger's
//! migrations) holds GCRA's theoretical arrival time (TAT) on the database's clock. Reserving a
//! slot is one statement that moves the TAT on and returns the wait: PostgreSQL's row lock orders
//! concurrent reservations from all replicas, and no replica's clock enters the schedule, so
//! replicas with skewed clocks still share one.
//!
//! A destination whose slots come faster than one per CHUNK (over 100 a second) is reserved a
//! chunk at a time: one statement takes CHUNK's worth of consecutive slots, and this replica hands
//! them to its sends in order, each at or after its own slot's time. Each slot is used once, never
//! early, so the replicas together still keep to the limit: a slot used late can add to a burst
//! at most one chunk per replica, a hundredth of a second's worth. Without it every
//! send to a fast destination was a round trip queued on one row, and the row's millisecond clock
//! could not space slots closer than a millisecond: 1,000 a second at most, whatever the limit.
//!
//! A limit is never a reason to stop sending: when the database does not answer within
//! CALL_TIMEOUT, the process's own limiter decides instead (each replica then keeps to the limit
//! on its own, as before this was shared), with a warning, and the database is asked again after
//! RETRY_SHARED. Slots taken meanwhile are not in the row; that costs at most one burst too many
//! when it answers again.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::time::Instant;

use super::{LocalRateLimiter, RateLimiter, interval};
use crate::channels::Destination;

/// Connections of its own, apart from the ledger's pool, so that a busy ledger does not hold up
/// sends that are only waiting for a slot (and the other way round).
const MAX_CONNECTIONS: u32 = 2;

/// The longest a reservation waits for the database, connecting included, before the local
/// limiter decides. Also the statement timeout on its connections.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// After a failure, how long the local limiter decides before the database is asked again, so that
/// sends do not each wait out CALL_TIMEOUT while it is away.
const RETRY_SHARED: Duration = Duration::from_secs(5);

/// A destination's row is removed once it has been idle this long (a row whose TAT has passed
/// means a full bucket, exactly as no row does), at most once per PRUNE_EVERY per replica.
const IDLE_FORGET: Duration = Duration::from_secs(3600);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How much of a destination's schedule one reservation takes when its slots are closer together
/// than this; see the module's comment.
const CHUNK: Duration = Duration::from_millis(10);

pub struct PostgresRateLimiter {
    pool: PgPool,
    /// host:port/database, for messages (never the DSN: it may hold a password).
    target: String,
    local: LocalRateLimiter,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set since the database last failed: the local limiter decides until then, and the next
    /// answer from the database ends it.
    local_until: Option<Instant>,
    next_prune: Option<Instant>,
    /// Slots of a reserved chunk not yet handed out, by destination key.
    chunks: std::collections::HashMap<String, Chunk>,
}

/// The rest of a reserved chunk: `left` slots, `interval` apart, the next one at `next`.
struct Chunk {
    next: Instant,
    left: u32,
    interval: Duration,
}

/// How many slots one reservation takes for `limit`: one, or CHUNK's worth when they are closer.
fn chunk_slots(limit: crate::channels::RateLimit) -> u32 {
    let interval = interval(limit);
    if interval.is_zero() || interval >= CHUNK {
        return 1;
    }
    u32::try_from(CHUNK.as_nanos() / interval.as_nanos())
        .unwrap_or(u32::MAX)
        .clamp(1, limit.events.max(1))
}

/// Milliseconds, rounded up: a limit is never exceeded by rounding.
fn millis_up(d: Duration) -> i64 {
    i64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

impl PostgresRateLimiter {
    /// A limiter on the database `dsn` names (`flyteNotify.postgres.dsn`); connects when first
    /// used. Its table is the ledger's: open the ledger on the same database first.
    pub fn new(dsn: &str) -> Result<Self, String> {
        let options = PgConnectOptions::from_str(dsn)
            .map_err(|e| format!("flyteNotify.postgres.dsn: {e}"))?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let timeout = CALL_TIMEOUT.as_millis().to_string();
        // Each reservation is its own transaction, and all of a destination's queue up on its
        // row: waiting for each commit to reach the disk capped every destination at a few
        // hundred sends a second across all replicas (the bench's replicas section). A crash of
        // the database can lose only the last moments of reservations, which lets a few sends
        // through early once; what is lost is never a delivery, so these commits need not wait.
        let options = options.options([
            ("statement_timeout", timeout.as_str()),
            ("synchronous_commit", "off"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CALL_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            target,
            local: LocalRateLimiter::default(),
            state: Mutex::new(State::default()),
        })
    }

    /// Whether to ask the database now; false while the local limiter decides.
    fn shared(&self) -> bool {
        let state = self.state.lock().expect("rate limiter lock poisoned");
        state
            .local_until
            .is_none_or(|until| until <= Instant::now())
    }

    /// Runs `work` on the database within CALL_TIMEOUT; None when it failed, after saying so.
    async fn call<T>(&self, work: impl Future<Output = Result<T, sqlx::Error>>) -> Option<T> {
        let problem = match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(Ok(value)) => {
                let mut state = self.state.lock().expect("rate limiter lock poisoned");
                if state.local_until.take().is_some() {
                    tracing::info!(database = %self.target, "rate limits are shared by the replicas again");
                }
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        let mut state = self.state.lock().expect("rate limiter lock poisoned");
        if state.local_until.is_none() {
            tracing::warn!(
                database = %self.target,
                %problem,
                "cannot reach the shared rate limits; each replica limits its own sends meanwhile \
                 (together they may send a destination more than its rateLimit)"
            );
        }
        state.local_until = Some(Instant::now() + RETRY_SHARED);
        None
    }

    /// The next slot of this destination's chunk, as the wait for it (zero for a slot whose time
    /// has passed); None when no chunk is left. A chunk is used up, never dropped for being late:
    /// every slot dropped would be a slot of the destination's schedule spent on nothing, and a
    /// replica sending slower than a fast limit would spend it far ahead of the time.
    fn take_chunked_slot(&self, destination: &Destination) -> Option<Duration> {
        let mut state = self.state.lock().expect("rate limiter lock poisoned");
        let now = Instant::now();
        let chunk = state.chunks.get_mut(&destination.key)?;
        if chunk.left == 0 {
            state.chunks.remove(&destination.key);
            return None;
        }
        let wait = chunk.next.saturating_duration_since(now);
        chunk.next += chunk.interval;
        chunk.left -= 1;
        Some(wait)
    }

    /// Removes idle rows now and then; a failure only leaves them for the next time.
    async fn prune(&self) {
        let due = {
            let mut state = self.state.lock().expect("rate limiter lock poisoned");
            let now = Instant::now();
            let due = state.next_prune.is_none_or(|at| at <= now);
            if due {
                state.next_prune = Some(now + PRUNE_EVERY);
            }
            due
        };
        if due {
            let pruned = sqlx::query("DELETE FROM rate_limits WHERE tat < ledger_now() - $1")
                .bind(millis_up(IDLE_FORGET))
                .execute(&self.pool);
            if let Ok(Err(e)) = tokio::time::timeout(CALL_TIMEOUT, pruned).await {
                tracing::debug!(error = %e, "cannot remove idle rate limits; next time");
            }
        }
    }
}

#[async_trait]
impl RateLimiter for PostgresRateLimiter {
    async fn reserve(&self, destination: &Destination) -> Duration {
        if !self.shared() {
            return self.local.reserve(destination).await;
        }
        if let Some(wait) = self.take_chunked_slot(destination) {
            return wait;
        }
        let slots = chunk_slots(destination.limit);
        let one = interval(destination.limit);
        let t = millis_up(one * slots);
        // A full bucket lets `events` go at once: the burst tolerance is the rest of the period.
        let tolerance = (millis_up(destination.limit.per) - t).max(0);
        // The new TAT is max(old TAT, now) + t, so the wait, max(old TAT - tolerance, now) - now,
        // is read back from it; a new row is a full bucket (no wait).
        let reserved = sqlx::query_scalar::<_, i64>(
            "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, ledger_now() + $2) \
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, ledger_now()) + $2 \
             RETURNING GREATEST(r.tat - $2 - $3 - ledger_now(), 0)",
        )
        .bind(&destination.key)
        .bind(t)
        .bind(tolerance)
        .fetch_one(&self.pool);
        match self.call(reserved).await {
            Some(wait) => {
                self.prune().await;
                let wait = Duration::from_millis(wait.max(0) as u64);
                if slots > 1 {
                    // This send takes the chunk's first slot; the rest follow it.
                    let chunk = Chunk {
                        next: Instant::now() + wait + one,
                        left: slots - 1,
                        interval: one,
                    };
                    self.state
                        .lock()
                        .expect("rate limiter lock poisoned")
                        .chunks
                        .insert(destination.key.clone(), chunk);
                }
                wait
            }
            None => self.local.reserve(destination).await,
        }
    }

    async fn release(&self, destination: &Destination) {
        if !self.shared() {
            return self.local.release(destination).await;
        }
        if chunk_slots(destination.limit) > 1 {
            // A slot of a chunk is a fraction of the row's millisecond: it is left unused.
            return;
        }
        let released = sqlx::query("UPDATE rate_limits SET tat = tat - $2 WHERE key = $1")
            .bind(&destination.key)
            .bind(millis_up(interval(destination.limit)))
            .execute(&self.pool);
        if self.call(released).await.is_none() {
            // Its slot may be in either; giving it back here too errs towards sending.
            self.local.release(destination).await;
        }
    }

    async fn pause(&self, destination: &Destination, wait: Duration) {
        if !self.shared() {
            return self.local.pause(destination, wait).await;
        }
        // The slots in hand are before the pause's end: the next reservation learns of it.
        self.state
            .lock()
            .expect("rate limiter lock poisoned")
            .chunks
            .remove(&destination.key);
        let tolerance = destination
            .limit
            .per
            .saturating_sub(interval(destination.limit));
        let paused = sqlx::query(
            "INSERT INTO rate_limits AS r (key, tat) VALUES ($1, ledger_now() + $2) \
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, ledger_now() + $2)",
        )
        .bind(&destination.key)
        .bind(millis_up(wait + tolerance))
        .execute(&self.pool);
        if self.call(paused).await.is_none() {
            self.local.pause(destination, wait).await;
        }
    }
}
