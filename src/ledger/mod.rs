//! The ledger: the source of truth for every delivery that was accepted and what became of it.
//!
//! A delivery is inserted (with the request that produced it, for idempotency) in one transaction
//! before Enqueue answers, and leaves the pending list only when a send succeeded or it was given up
//! as dead. Queue backends only carry work between replicas; they never own state.
//!
//! The ledger owns its clock: creation times, lease expiry and retry times are all taken from it,
//! never from a caller, so that replicas with skewed clocks still agree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

pub mod filters;
pub mod page_token;
pub mod postgres;
pub mod sqlite;
pub mod wakeups;

pub use filters::{Filter, FilterField, FilterOp};
pub use page_token::{DeliveredCursor, PageToken};

use crate::delivery::{Channel, DeliveryRef, Outcome, Payload};

/// The non-terminal phases (QUEUED, RUNNING, SUCCEEDING, FAILING, ABORTING) as an SQL list: a
/// delivery recorded with one of them is a stuck-run deadline's alert.
pub(crate) const ARMING_PHASES: &str = "(1, 2, 3, 5, 9)";

/// Milliseconds since the Unix epoch: portable across SQLite and PostgreSQL and trivially ordered.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Accepted, not tried yet (or being tried now).
    Pending,
    /// A retryable failure; tried again at next_attempt_at.
    Retrying,
    /// Given up: a permanent failure or no attempts left.
    Dead,
    /// Sent. Kept as a notification log, never listed as pending.
    Delivered,
    /// Dead, then set aside by an operator: no longer listed as pending, still in the log.
    Discarded,
    /// A silence matched it when it was due: not sent. Final, unless its silence says
    /// deliver_after, in which case it is pending again when the silence ends. Listed only when a
    /// filter asks for it (`eq(state,silenced)`).
    Silenced,
    /// A deadline's alert whose execution reached a terminal phase first: never sent.
    Disarmed,
    /// A member of a group, waiting for its digest (`digest_id`) to go; it is then recorded
    /// delivered (or discarded, or silenced) with the digest. Never leased on its own.
    Grouped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Retrying => "retrying",
            State::Dead => "dead",
            State::Delivered => "delivered",
            State::Discarded => "discarded",
            State::Silenced => "silenced",
            State::Disarmed => "disarmed",
            State::Grouped => "grouped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(State::Pending),
            "retrying" => Some(State::Retrying),
            "dead" => Some(State::Dead),
            "delivered" => Some(State::Delivered),
            "discarded" => Some(State::Discarded),
            "silenced" => Some(State::Silenced),
            "disarmed" => Some(State::Disarmed),
            "grouped" => Some(State::Grouped),
            _ => None,
        }
    }
}

/// The execution a delivery belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionKey {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub org: String,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub notification_index: u32,
    pub phase: i32,
    pub payload: Payload,
    /// The group it joins instead of going on its own; only for deliveries due now.
    pub group: Option<Grouping>,
}

/// A delivery's group: it is recorded `grouped` and joins the group's open digest (the first
/// member creates one, due `wait` from now, or `interval` after the group's previous digest was
/// due if that is later). A digest takes at most `max_members`; the next member opens another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// The channel, the recipients and the groupBy labels' values: equal keys, one digest.
    pub key: String,
    pub wait: Duration,
    pub interval: Duration,
    pub max_members: u32,
}

/// A member of a leased digest, with what it needs to be rendered as one row of it.
#[derive(Debug, Clone)]
pub struct DigestMember {
    pub id: String,
    pub execution: ExecutionKey,
    pub phase: i32,
    /// The member's request's execution context (protobuf), or why it cannot be read.
    pub context: Result<Arc<[u8]>, String>,
}

/// Everything one Enqueue call records, atomically.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub request_id: String,
    /// A digest of the request's content: the same request_id with other content is a conflict.
    pub fingerprint: String,
    pub unmatched: u32,
    pub execution_key: ExecutionKey,
    /// The request's execution context, protobuf-encoded: stored once, shared by its deliveries.
    pub execution: Vec<u8>,
    pub deliveries: Vec<NewDelivery>,
    /// How long from now the deliveries are first due: zero, or a stuck-run deadline, whose
    /// alerts wait in the ledger like any scheduled retry (durable, and sent once by whichever
    /// replica leases them).
    pub due_in: Duration,
    /// A terminal phase: the same execution's deadline alerts that have not gone out yet are
    /// disarmed, in the transaction that records this request.
    pub disarms_deadlines: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted {
        delivery_ids: Vec<String>,
    },
    /// The request_id was seen before with the same content: nothing new was recorded.
    Duplicate {
        delivery_ids: Vec<String>,
        unmatched: u32,
    },
    /// The request_id was seen before with different content.
    Conflict,
}

/// A delivery as ListPending shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub id: String,
    pub request_id: String,
    pub execution: ExecutionKey,
    pub phase: i32,
    pub channel: Option<Channel>,
    pub state: State,
    /// Attempts whose outcome was recorded.
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_error: String,
    pub created_at: Millis,
    /// Err when the stored payload cannot be decoded; such a row dies alone when leased.
    pub payload: Result<Payload, String>,
    /// A group member: the digest it is waiting in, or went out in.
    pub digest_id: Option<String>,
}

/// A delivery handed to a worker: the lease it holds and what it needs to render and send.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub delivery: DeliveryRef,
    pub execution: ExecutionKey,
    /// The payload and the request's execution context (protobuf), or why they cannot be read:
    /// the worker records such a delivery dead with that reason and the others go on.
    pub content: Result<(Payload, Arc<[u8]>), String>,
    /// A digest's members, oldest first (empty for any other delivery): fixed once the digest is
    /// first leased, so every attempt sends the same ones.
    pub members: Vec<DigestMember>,
    /// When it was accepted, on this process's monotonic clock: the ledger's own reading of its
    /// age at lease time, so that a replica's clock skew does not enter enqueue-to-delivered.
    pub accepted_at: Instant,
}

/// `age` ago on this process's monotonic clock (now, if the clock does not reach back that far).
pub fn instant_of_age(age_millis: Millis) -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_millis(age_millis.max(0) as u64))
        .unwrap_or(now)
}

/// What the store holds that is not yet settled: the metrics' gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Accepted and not tried yet, or being tried now.
    pub pending: u64,
    /// Waiting for their next attempt.
    pub retrying: u64,
    /// Given up, waiting for an operator (redrive or discard).
    pub dead: u64,
    /// How long ago the oldest pending or retrying delivery was accepted, by the ledger's clock;
    /// None when there is none.
    pub oldest_pending_age: Option<Duration>,
}

/// Outcomes recorded in one time bucket, for the console's chart: deliveries that went out and
/// attempts that failed (a failure that gave up, `dead`, counts as one too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivityBucket {
    /// Where the bucket begins: `since` plus a whole number of buckets.
    pub start: Millis,
    pub delivered: u64,
    pub failed: u64,
}

/// What `record` did with each outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Outcomes refused because their lease was no longer current: another attempt owns the
    /// delivery now, and its outcome is the one that counts.
    pub stale: Vec<String>,
    /// Silenced outcomes refused because their silence was no longer active by the ledger's
    /// clock (it ended or was expired meanwhile): the lease is given back and the delivery is due
    /// again at once.
    pub unsilenced: Vec<String>,
}

/// A silence as an operator asks for it. The matcher is stored as given and parsed again when
/// read, so its syntax stays the filter module's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    pub id: String,
    pub matcher: String,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub created_by: String,
    pub comment: String,
    pub deliver_after: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// Starts later.
    Pending,
    Active,
    /// Ended or expired; listed until the retention period is over.
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// A stored silence, with its state by the ledger's clock when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub id: String,
    pub matcher: String,
    pub starts_at: Millis,
    pub ends_at: Millis,
    pub created_by: String,
    pub comment: String,
    pub deliver_after: bool,
    pub created_at: Millis,
    pub state: SilenceState,
}

/// The state of a silence between `starts_at` and `ends_at` at `now`.
pub fn silence_state(starts_at: Millis, ends_at: Millis, now: Millis) -> SilenceState {
    if ends_at <= now {
        SilenceState::Expired
    } else if starts_at > now {
        SilenceState::Pending
    } else {
        SilenceState::Active
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatedSilence {
    Created(Silence),
    /// There are already this many silences not yet ended (pending or active); the bound is
    /// checked in the same transaction as the insert.
    TooMany(u64),
}

/// Where a watched launch plan stands (flyteNotify.expectations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectationState {
    /// Succeeding on schedule.
    Ok,
    /// No success in time: the alert was recorded.
    Missed,
    /// A success came after the alert: the recovery is to be recorded.
    Recovering,
}

impl ExpectationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpectationState::Ok => "ok",
            ExpectationState::Missed => "missed",
            ExpectationState::Recovering => "recovering",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => ExpectationState::Ok,
            "missed" => ExpectationState::Missed,
            "recovering" => ExpectationState::Recovering,
            _ => return None,
        })
    }
}

/// A watched launch plan, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectationRow {
    /// `project/domain/name`
    pub launch_plan: String,
    pub watched_since: Millis,
    pub last_success_at: Option<Millis>,
    pub state: ExpectationState,
    /// The due time of the alert of the current (or last) miss: it names the miss, so that its
    /// alert and its recovery are each recorded once whichever replica gets there.
    pub missed_deadline: Option<Millis>,
}

/// A change to the watched launch plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectationWrite {
    /// Begin watching these (from now); those already watched keep what they have.
    Watch(Vec<String>),
    /// A success of this launch plan, now: an alerted miss becomes Recovering.
    Success(String),
    /// `from` becomes `to`, if it still is `from` (another replica may have been first); a miss
    /// records its deadline.
    Transition {
        launch_plan: String,
        from: ExpectationState,
        to: ExpectationState,
        missed_deadline: Option<Millis>,
    },
}

/// What `settle_silences` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettledSilences {
    /// Deliveries that ended deliver_after silences held, pending again now.
    pub released: u64,
    /// Expired silences removed after the retention period.
    pub pruned: u64,
}

#[derive(Debug, Clone, Default)]
pub struct PendingQuery {
    pub limit: u32,
    /// Where the page starts: the previous page's `next`; None for the first page.
    pub after: Option<PageToken>,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Default)]
pub struct PendingPage {
    pub deliveries: Vec<StoredDelivery>,
    /// Where the next page starts; None on the last page.
    pub next: Option<PageToken>,
}

/// The most rows one `recently_delivered` call returns.
pub const MAX_RECENT: u32 = 500;

/// Deliveries that went out, newest first (the console's "delivered recently").
#[derive(Debug, Clone, Default)]
pub struct RecentQuery {
    /// At most [`MAX_RECENT`]; 0 is taken as 1.
    pub limit: u32,
    /// Only deliveries delivered at or after this time. It bounds the work: the store reads the
    /// delivery events from here on and nothing older, whatever the filters.
    pub since: Millis,
    /// Where the page starts: the previous page's `next`; None for the newest.
    pub before: Option<DeliveredCursor>,
    /// ListPending's filters on project, domain, name and channel, and the caller's scope
    /// ([`filters::in_scope`]). A state term matches nothing: every row here is delivered.
    pub filters: Vec<Filter>,
}

/// A delivery that went out, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRow {
    pub delivery: StoredDelivery,
    /// The time of its (latest) delivered event, by the ledger's clock.
    pub delivered_at: Millis,
}

#[derive(Debug, Clone, Default)]
pub struct RecentPage {
    /// Newest first.
    pub deliveries: Vec<DeliveredRow>,
    /// Where the next (older) page starts; None on the last page.
    pub next: Option<DeliveredCursor>,
}

/// What an operator does to dead deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    /// Back to pending, due now, with a fresh attempt budget.
    Redrive,
    /// Out of the pending list; kept in the log with its history.
    Discard,
}

/// Which deliveries an operator action applies to. Only dead ones are ever changed.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These ids, in this order; an id that is not dead is reported, not changed.
    Ids(Vec<String>),
    /// The dead deliveries the filters match, oldest first, at most `limit` of them.
    Filter { filters: Vec<Filter>, limit: u32 },
}

/// Why a selected id was left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NotFound,
    NotDead(State),
}

/// What an operator action did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acted {
    /// The deliveries changed, in selection order.
    pub changed: Vec<String>,
    pub skipped: Vec<(String, Skip)>,
    /// A filter matched more dead deliveries than the limit; the same call again takes the next.
    pub more: bool,
}

/// One thing that happened to a delivery after it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A send failed and will be tried again.
    Failed,
    /// A send failed for good, or the last attempt did.
    Dead,
    Delivered,
    Redriven,
    Discarded,
    /// Not sent: a silence matched it (the detail names the silence).
    Silenced,
    /// Its deliver_after silence ended: pending again.
    Unsilenced,
    /// A deadline's alert, disarmed by a terminal phase of its execution.
    Disarmed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Failed => "failed",
            EventKind::Dead => "dead",
            EventKind::Delivered => "delivered",
            EventKind::Redriven => "redriven",
            EventKind::Discarded => "discarded",
            EventKind::Silenced => "silenced",
            EventKind::Unsilenced => "unsilenced",
            EventKind::Disarmed => "disarmed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "failed" => EventKind::Failed,
            "dead" => EventKind::Dead,
            "delivered" => EventKind::Delivered,
            "redriven" => EventKind::Redriven,
            "discarded" => EventKind::Discarded,
            "silenced" => EventKind::Silenced,
            "unsilenced" => EventKind::Unsilenced,
            "disarmed" => EventKind::Disarmed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    pub at: Millis,
    pub kind: EventKind,
    /// Attempts recorded when it happened.
    pub attempts: u32,
    /// The error of a failed attempt, or the operator's note.
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite ledger's writer, which calls SQLite directly.
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Locked(String),
    /// The store cannot write now (disk full, I/O failure, its file gone); retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    #[error("the ledger is closed")]
    Closed,
    #[error("ledger I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One implementation per store; every implementation passes tests/ledger_conformance.rs.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Records a request and its deliveries atomically and durably, or reports it as a duplicate.
    async fn accept(&self, request: NewRequest) -> Result<AcceptOutcome, LedgerError>;

    /// Pending, retrying and dead deliveries, oldest first.
    async fn list_pending(&self, query: PendingQuery) -> Result<PendingPage, LedgerError>;

    /// Deliveries in state delivered whose delivered event is at or after `query.since`, newest
    /// delivery first; each appears once, at its latest delivered event. Read from the delivery
    /// events' time index, so the cost follows the events in the window, not the ledger's size.
    async fn recently_delivered(&self, query: RecentQuery) -> Result<RecentPage, LedgerError>;

    /// Takes up to `max` deliveries that are due and not leased, and leases each for `lease_for`
    /// under a fresh token, so no other worker sends them meanwhile. A lease that runs out (the
    /// worker died) makes the delivery due again: at least once, never lost.
    async fn lease_due(
        &self,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<LeasedDelivery>, LedgerError>;

    /// Records what sends came to and ends their leases. An outcome whose lease token is no
    /// longer current is refused (and reported), never applied.
    async fn record(&self, outcomes: Vec<(DeliveryRef, Outcome)>) -> Result<Recorded, LedgerError>;

    /// Gives a lease back unrecorded: the delivery is due again after `delay`, and the attempt
    /// does not count as a failure. A no-op when the lease is no longer current.
    async fn release(&self, delivery: &DeliveryRef, delay: Duration) -> Result<(), LedgerError>;

    /// How long until the earliest delivery waiting to be sent is due (zero when one is due now).
    async fn next_due(&self) -> Result<Option<Duration>, LedgerError>;

    /// Redrives or discards the selected dead deliveries, each with an event in its history.
    /// Deliveries in any other state are reported and left alone.
    async fn act(
        &self,
        action: OperatorAction,
        selection: Selection,
        note: String,
    ) -> Result<Acted, LedgerError>;

    /// One delivery in any state, with its history oldest first; None when no such id exists.
    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<(StoredDelivery, Vec<HistoryEvent>)>, LedgerError>;

    /// How many deliveries are pending, retrying and dead, and the oldest pending one's age. Read
    /// on each metrics scrape: a count over the open deliveries' index, not a cached figure, so
    /// that every replica reports the same.
    async fn stats(&self) -> Result<LedgerStats, LedgerError>;

    /// Delivered and failed outcomes from `since` on, counted per `bucket` (buckets start at
    /// `since`), oldest first; buckets with nothing in them are left out.
    async fn activity(
        &self,
        since: Millis,
        bucket: Duration,
    ) -> Result<Vec<ActivityBucket>, LedgerError>;

    /// The execution context (protobuf) recorded with the request `request_id`, None when the
    /// ledger holds no such request or none was recorded with it (content from a queue).
    async fn request_context(&self, request_id: &str) -> Result<Option<Vec<u8>>, LedgerError>;

    /// Stores a silence unless `max_open` silences that have not ended exist already.
    async fn create_silence(
        &self,
        silence: NewSilence,
        max_open: u32,
    ) -> Result<CreatedSilence, LedgerError>;

    /// Silences that have not ended (pending and active), and with `include_expired` the ended
    /// ones still kept, oldest first.
    async fn list_silences(&self, include_expired: bool) -> Result<Vec<Silence>, LedgerError>;

    /// Ends a silence now (a no-op for one already ended); with deliver_after its held deliveries
    /// are pending again in the same transaction. None when no such id is kept.
    async fn expire_silence(&self, id: &str) -> Result<Option<Silence>, LedgerError>;

    /// The housekeeping any replica may run at any time, idempotently: the held deliveries of
    /// deliver_after silences that have ended are pending again (each once, with an event), and
    /// silences ended longer than `retention` ago are removed.
    async fn settle_silences(&self, retention: Duration) -> Result<SettledSilences, LedgerError>;

    /// Applies `write`; true when it changed something (for a Transition: this caller made it).
    async fn write_expectation(&self, write: ExpectationWrite) -> Result<bool, LedgerError>;

    /// Every watched launch plan.
    async fn expectations(&self) -> Result<Vec<ExpectationRow>, LedgerError>;

    /// Why the store cannot write, while it cannot: health reports NOT_SERVING meanwhile.
    fn trouble(&self) -> Option<String>;

    /// Flushes and stops; later calls fail with `Closed`.
    async fn close(&self);
}
