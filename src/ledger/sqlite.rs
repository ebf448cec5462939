//! The embedded ledger: one SQLite file in WAL mode, fsynced on every commit.
//!
//! All writes go through one writer thread that drains whatever calls are waiting and commits them
//! in one transaction (group commit): under load, many Enqueue calls share one fsync. The writer
//! calls SQLite directly (rusqlite) with cached single-row statements; reads use a separate sqlx
//! pool, which WAL lets run beside the writer.
//!
//! The store belongs to one process: `open` takes an exclusive lock beside the file, and so any
//! lease found in it at open was left by a process that died; `open` ends them all.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection as _, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::page_token;
use super::{
    ARMING_PHASES, AcceptOutcome, Acted, DigestMember, EventKind, ExecutionKey, ExpectationRow,
    ExpectationState, ExpectationWrite, FilterOp, Grouping, HistoryEvent, LeasedDelivery, Ledger,
    LedgerError, LedgerStats, Millis, NewDelivery, NewRequest, OperatorAction, PageToken,
    PendingPage, PendingQuery, Recorded, Selection, Skip, State, StoredDelivery, instant_of_age,
};
use super::{
    ActivityBucket, CreatedSilence, DeliveredCursor, NewSilence, RecentPage, RecentQuery,
    SettledSilences, Silence, silence_state,
};
use crate::delivery::{Channel, Content, DeliveryRef, LeaseToken, Outcome, Payload};

/// How many calls one transaction takes at most; bounds the time one commit holds the writer.
const MAX_BATCH: usize = 1024;

/// The name of the lock file in the ledger's directory.
pub const LOCK_FILE: &str = "flyte-notify.lock";

/// One write a caller asked for.
enum Work {
    Accept(Box<NewRequest>),
    Record(Vec<(DeliveryRef, Outcome)>),
    Lease { max: usize, lease_for: Duration },
    Release(DeliveryRef, Duration),
    Act(OperatorAction, Selection, String),
    CreateSilence(NewSilence, u32),
    ExpireSilence(String),
    SettleSilences(Duration),
    Expectation(ExpectationWrite),
}

/// What a write came to, in the same shape.
enum Done {
    Accept(AcceptOutcome),
    Record(Recorded),
    Lease(Vec<LeasedRow>),
    Release,
    Act(Acted),
    CreateSilence(CreatedSilence),
    ExpireSilence(Option<Silence>),
    SettleSilences(SettledSilences),
    Expectation(bool),
}

type Reply = oneshot::Sender<Result<Done, LedgerError>>;

struct Op {
    work: Work,
    reply: Reply,
}

/// What is wrong with the store, when writes cannot succeed: shared by the writer, which finds
/// out, and health, which reports it.
#[derive(Debug, Clone)]
struct Problem {
    reason: String,
    /// A full disk: a small write may still fit while an Enqueue does not, so this clears only
    /// when space is seen to be back, never by one write that happened to fit.
    needs_space: bool,
}

type Trouble = Arc<Mutex<Option<Problem>>>;

/// Space that must be free before a full disk counts as having room again.
const SPACE_PROBE_BYTES: usize = 256 * 1024;

pub struct SqliteLedger {
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    /// Answers (by closing) when the writer's thread has finished what was queued.
    writer_done: Mutex<Option<oneshot::Receiver<()>>>,
    readers: SqlitePool,
    /// Held while the store is open; the OS drops it when the process ends, even by SIGKILL.
    lock: Mutex<Option<std::fs::File>>,
    trouble: Trouble,
    dir: std::path::PathBuf,
    last_space_probe: Mutex<Option<std::time::Instant>>,
}

/// The process clock. The single writer is the only place a write takes the time, so the times in
/// one store never come from two clocks.
fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The states ListPending shows: the deliveries_open index's condition, term for term (migration
/// 0009). ORs rather than an IN list: SQLite builds a temporary b-tree for an IN list of three or
/// more values each time a statement evaluates it, and it evaluates this one on every insert and
/// update of a delivery.
const OPEN: &str =
    "(state = 'pending' OR state = 'retrying' OR state = 'dead' OR state = 'grouped')";

/// An armed stuck-run deadline: the deliveries_armed index's condition, term for term (migration
/// 0009); its phases are ARMING_PHASES, as ORs for the reason given at OPEN.
const ARMED: &str = "(phase = 1 OR phase = 2 OR phase = 3 OR phase = 5 OR phase = 9) \
                     AND state IN ('pending', 'silenced') AND attempts = 0";

/// A new delivery, one per notification of an accepted request.
const INSERT_DELIVERY: &str = "INSERT INTO deliveries (id, request_id, notification_index, \
     project, domain, name, org, channel, phase, state, attempts, next_attempt_at, created_at, \
     updated_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?12, ?13)";

/// A send's outcome, applied while its lease token is current.
const RECORD_OUTCOME: &str = "UPDATE deliveries SET state = ?1, attempts = attempts + 1, \
     next_attempt_at = ?2, last_error = ?3, lease_until = NULL, lease_token = NULL, \
     updated_at = ?4 WHERE id = ?5 AND lease_token = ?6 \
     RETURNING attempts, state, last_error, digest_members IS NOT NULL";

/// How soon a delivery whose silence ended between the worker's look and the record is due
/// again: soon, but not in a tight loop while a replica's copy of the silences catches up.
const UNSILENCED_DELAY: Millis = 1000;

/// What ListPending shows when a filter asks for silenced deliveries among others (no index has
/// this condition: such a listing reads the table in seq order).
const OPEN_OR_SILENCED: &str = "state IN ('pending', 'retrying', 'dead', 'grouped', 'silenced')";

const SILENCE_COLUMNS: &str =
    "id, matcher, starts_at, ends_at, created_by, comment, deliver_after, created_at";

const COLUMNS: &str = "seq, id, request_id, project, domain, name, org, channel, phase, state, \
                       attempts, next_attempt_at, last_error, created_at, payload, digest_id";

/// COLUMNS of `d`, beside delivery_events `e`, which has a seq and attempts of its own.
const JOINED_COLUMNS: &str = "d.seq, d.id, d.request_id, d.project, d.domain, d.name, d.org, \
                              d.channel, d.phase, d.state, d.attempts, d.next_attempt_at, \
                              d.last_error, d.created_at, d.payload, d.digest_id";

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file, takes the process lock, brings the schema up to
    /// date, and ends every lease a previous process left.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before Enqueue answers.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // sqlx formats every statement for its debug log when any trace is enabled; the
            // readers' IN lists can be long.
            .disable_statement_logging();
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("src/ledger/migrations/sqlite")
            .run(&mut conn)
            .await?;
        let released = sqlx::query(
            "UPDATE deliveries SET lease_until = NULL, lease_token = NULL \
             WHERE lease_until IS NOT NULL OR lease_token IS NOT NULL",
        )
        .execute(&mut conn)
        .await;
        match released.map(|r| r.rows_affected()) {
            Ok(0) => {}
            Ok(released) => tracing::warn!(
                released,
                "resuming deliveries a previous run left in the middle of a send; they go out again"
            ),
            // On a full disk the store still opens, to serve reads; the leases run out by
            // themselves and those deliveries go out then.
            Err(e) => tracing::warn!(
                error = %e,
                "cannot end the leases a previous run left; they go out when the leases run out"
            ),
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        conn.close().await?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let trouble = Trouble::default();
        let writer = Writer {
            conn: write_connection(path)?,
            file: FileIdentity::of(path)?,
            path: path.to_owned(),
            trouble: trouble.clone(),
        };
        let (done, writer_done) = oneshot::channel();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                writer.run(rx);
                drop(done);
            })?;
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            writer_done: Mutex::new(Some(writer_done)),
            readers,
            lock: Mutex::new(Some(lock)),
            trouble,
            dir: dir.to_owned(),
            last_space_probe: Mutex::new(None),
        })
    }

    /// Whether SPACE_PROBE_BYTES can be written beside the ledger again; tried at most once a
    /// second, the file removed at once.
    fn space_is_back(&self) -> bool {
        let mut last = self.last_space_probe.lock().expect("probe lock poisoned");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        let probe = self.dir.join(".flyte-notify-space-probe");
        let fits = std::fs::write(&probe, vec![0u8; SPACE_PROBE_BYTES]).is_ok();
        let _ = std::fs::remove_file(&probe);
        fits
    }

    async fn call(&self, work: Work) -> Result<Done, LedgerError> {
        let sender = self
            .writer
            .lock()
            .expect("writer lock poisoned")
            .clone()
            .ok_or(LedgerError::Closed)?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(Op { work, reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }
}

/// The writer's connection, with the same durability as the readers' options: WAL, and every
/// commit fsynced (synchronous FULL) before it is acknowledged.
fn write_connection(path: &Path) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Unavailable(format!(
            "the ledger {} cannot be put in WAL mode (it is in {mode} mode)",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// An exclusive lock on the lock file in `dir`: a second process on the same store would release
/// the first one's leases and send everything twice.
fn lock(dir: &Path) -> Result<std::fs::File, LedgerError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked(format!(
            "another flyte-notify is running on the data dir {}; each process needs its own \
             (the embedded SQLite ledger serves one process; stop the other one or give this one \
             another --data-dir)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::Io(e)),
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn accept(&self, request: NewRequest) -> Result<AcceptOutcome, LedgerError> {
        match self.call(Work::Accept(Box::new(request))).await? {
            Done::Accept(outcome) => Ok(outcome),
            _ => unreachable!("the writer answers an accept with an accept"),
        }
    }

    async fn list_pending(&self, query: PendingQuery) -> Result<PendingPage, LedgerError> {
        // Each base condition is a partial index's own (deliveries_open, deliveries_silenced_seq),
        // so that SQLite uses it.
        let base = if super::filters::only_silenced(&query.filters) {
            "state = 'silenced'"
        } else if super::filters::wants_silenced(&query.filters) {
            OPEN_OR_SILENCED
        } else {
            OPEN
        };
        let mut sql =
            QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM deliveries WHERE {base}"));
        // Keyset paging on seq never skips a row that commits after a page was read: seq is
        // assigned by the one writer inside its serialized transactions, so seq order is commit
        // order, and a row a later page could miss would need a seq below one already listed.
        // (PostgreSQL hands out sequence numbers before commit, out of commit order; its store
        // must not return a row past one whose transaction might still be in flight.) A token
        // only PostgreSQL returns still carries the seq it ended at.
        if let Some(token) = query.after {
            sql.push(" AND seq > ").push_bind(token.seq());
        }
        push_filters(&mut sql, &query.filters);
        // One row more than asked tells whether another page exists.
        let limit = query.limit.max(1);
        sql.push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = sql.build().fetch_all(&self.readers).await?;
        let deliveries = rows
            .iter()
            .map(|row| decode_listed(row).map(|(seq, d)| (PageToken::After { seq }, d)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page_token::page(deliveries, limit))
    }

    async fn recently_delivered(&self, query: RecentQuery) -> Result<RecentPage, LedgerError> {
        // Plan (EXPLAIN QUERY PLAN): SEARCH e USING INDEX delivery_events_by_time (at>? AND at<?),
        // read backwards, so ORDER BY needs no sort (the index's entries are in (at, rowid) order
        // and seq is the rowid); then d by its unique id and the correlated NOT EXISTS by
        // delivery_events_by_delivery (delivery_id=? AND seq>?). Each row costs two index probes
        // and the scan stops at LIMIT, or at `since` when the filters match little. CROSS JOIN
        // keeps e the outer loop whatever the statistics: no index on deliveries can serve the
        // filters, so driving from deliveries would read the whole table.
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT e.seq AS event_seq, e.at AS delivered_at, {JOINED_COLUMNS} \
             FROM delivery_events AS e CROSS JOIN deliveries AS d ON d.id = e.delivery_id \
             WHERE e.kind = 'delivered' AND d.state = 'delivered' AND e.at >= "
        ));
        sql.push_bind(query.since);
        if let Some(DeliveredCursor { at, seq }) = query.before {
            // `at <=` alone bounds the index range; the OR is checked on the rows in it.
            sql.push(" AND e.at <= ")
                .push_bind(at)
                .push(" AND (e.at < ")
                .push_bind(at)
                .push(" OR e.seq < ")
                .push_bind(seq)
                .push(")");
        }
        // A delivery is listed at its latest delivered event only, so that it is shown once
        // however many times it went out, and where it went out last.
        sql.push(
            " AND NOT EXISTS (SELECT 1 FROM delivery_events AS later \
             WHERE later.delivery_id = e.delivery_id AND later.seq > e.seq \
             AND later.kind = 'delivered')",
        );
        // The filters' columns (project, domain, name, channel, state) are only d's.
        push_filters(&mut sql, &query.filters);
        let limit = query.limit.clamp(1, super::MAX_RECENT);
        sql.push(" ORDER BY e.at DESC, e.seq DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = sql.build().fetch_all(&self.readers).await?;
        let deliveries = rows
            .iter()
            .map(|row| {
                let cursor = DeliveredCursor {
                    at: row.try_get("delivered_at")?,
                    seq: row.try_get("event_seq")?,
                };
                Ok((cursor, decode_listed(row)?.1))
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok(page_token::recent_page(deliveries, limit))
    }

    async fn lease_due(
        &self,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<LeasedDelivery>, LedgerError> {
        match self.call(Work::Lease { max, lease_for }).await? {
            Done::Lease(rows) => with_contexts(&self.readers, rows).await,
            _ => unreachable!("the writer answers a lease with a lease"),
        }
    }

    async fn record(&self, outcomes: Vec<(DeliveryRef, Outcome)>) -> Result<Recorded, LedgerError> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        match self.call(Work::Record(outcomes)).await? {
            Done::Record(recorded) => Ok(recorded),
            _ => unreachable!("the writer answers a record with a record"),
        }
    }

    async fn release(&self, delivery: &DeliveryRef, delay: Duration) -> Result<(), LedgerError> {
        match self.call(Work::Release(delivery.clone(), delay)).await? {
            Done::Release => Ok(()),
            _ => unreachable!("the writer answers a release with a release"),
        }
    }

    fn trouble(&self) -> Option<String> {
        let mut trouble = self.trouble.lock().expect("trouble lock poisoned");
        if trouble.as_ref().is_some_and(|p| p.needs_space) && self.space_is_back() {
            tracing::warn!("the ledger's disk has room again; accepting notifications");
            *trouble = None;
        }
        trouble.as_ref().map(|p| p.reason.clone())
    }

    async fn act(
        &self,
        action: OperatorAction,
        selection: Selection,
        note: String,
    ) -> Result<Acted, LedgerError> {
        match self.call(Work::Act(action, selection, note)).await? {
            Done::Act(acted) => Ok(acted),
            _ => unreachable!("the writer answers an action with an action"),
        }
    }

    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<(StoredDelivery, Vec<HistoryEvent>)>, LedgerError> {
        let mut sql =
            QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM deliveries WHERE id = "));
        sql.push_bind(id);
        let Some(row) = sql.build().fetch_optional(&self.readers).await? else {
            return Ok(None);
        };
        let (_, delivery) = decode_listed(&row)?;
        let rows = sqlx::query(
            "SELECT at, kind, attempts, detail FROM delivery_events WHERE delivery_id = ? \
             ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.readers)
        .await?;
        let mut history = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get(1)?;
            // Only this binary writes events; a kind it does not know is from a newer one.
            let Some(kind) = EventKind::parse(&kind) else {
                continue;
            };
            history.push(HistoryEvent {
                at: row.try_get(0)?,
                kind,
                attempts: row.try_get::<i64, _>(2)?.max(0) as u32,
                detail: row.try_get(3)?,
            });
        }
        Ok(Some((delivery, history)))
    }

    async fn activity(
        &self,
        since: Millis,
        bucket: Duration,
    ) -> Result<Vec<ActivityBucket>, LedgerError> {
        let width = (bucket.as_millis() as i64).max(1);
        // Read from the reader pool: a chart must not queue behind the writer's batches.
        let rows = sqlx::query(
            "SELECT (at - ?1) / ?2 AS b, \
                    SUM(kind = 'delivered'), SUM(kind IN ('failed', 'dead')) \
             FROM delivery_events WHERE at >= ?1 GROUP BY b ORDER BY b",
        )
        .bind(since)
        .bind(width)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                let count = |i| row.try_get::<i64, _>(i).map(|n| n.max(0) as u64);
                Ok(ActivityBucket {
                    start: since + row.try_get::<i64, _>(0)? * width,
                    delivered: count(1)?,
                    failed: count(2)?,
                })
            })
            .filter(|b: &Result<ActivityBucket, LedgerError>| {
                b.as_ref().map_or(true, |b| b.delivered + b.failed > 0)
            })
            .collect()
    }

    async fn request_context(&self, request_id: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let bytes: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT execution FROM requests WHERE request_id = ?1")
                .bind(request_id)
                .fetch_optional(&self.readers)
                .await?;
        Ok(bytes.flatten())
    }

    async fn create_silence(
        &self,
        silence: NewSilence,
        max_open: u32,
    ) -> Result<CreatedSilence, LedgerError> {
        match self.call(Work::CreateSilence(silence, max_open)).await? {
            Done::CreateSilence(created) => Ok(created),
            _ => unreachable!("the writer answers a silence with a silence"),
        }
    }

    async fn list_silences(&self, include_expired: bool) -> Result<Vec<Silence>, LedgerError> {
        let now = now_millis();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > ?1 OR ?2 \
             ORDER BY created_at, id"
        )))
        .bind(now)
        .bind(include_expired)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                let (starts_at, ends_at) = (row.try_get("starts_at")?, row.try_get("ends_at")?);
                Ok(Silence {
                    id: row.try_get("id")?,
                    matcher: row.try_get("matcher")?,
                    starts_at,
                    ends_at,
                    created_by: row.try_get("created_by")?,
                    comment: row.try_get("comment")?,
                    deliver_after: row.try_get("deliver_after")?,
                    created_at: row.try_get("created_at")?,
                    state: silence_state(starts_at, ends_at, now),
                })
            })
            .collect()
    }

    async fn expire_silence(&self, id: &str) -> Result<Option<Silence>, LedgerError> {
        match self.call(Work::ExpireSilence(id.to_string())).await? {
            Done::ExpireSilence(silence) => Ok(silence),
            _ => unreachable!("the writer answers a silence with a silence"),
        }
    }

    async fn settle_silences(&self, retention: Duration) -> Result<SettledSilences, LedgerError> {
        match self.call(Work::SettleSilences(retention)).await? {
            Done::SettleSilences(settled) => Ok(settled),
            _ => unreachable!("the writer answers a silence with a silence"),
        }
    }

    async fn write_expectation(&self, write: ExpectationWrite) -> Result<bool, LedgerError> {
        match self.call(Work::Expectation(write)).await? {
            Done::Expectation(changed) => Ok(changed),
            _ => unreachable!("the writer answers an expectation with an expectation"),
        }
    }

    async fn expectations(&self) -> Result<Vec<ExpectationRow>, LedgerError> {
        let rows = sqlx::query(
            "SELECT launch_plan, watched_since, last_success_at, state, missed_deadline \
             FROM expectations ORDER BY launch_plan",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(3)?;
                Ok(ExpectationRow {
                    launch_plan: row.try_get(0)?,
                    watched_since: row.try_get(1)?,
                    last_success_at: row.try_get(2)?,
                    state: ExpectationState::parse(&state).unwrap_or(ExpectationState::Ok),
                    missed_deadline: row.try_get(4)?,
                })
            })
            .collect()
    }

    async fn next_due(&self) -> Result<Option<Duration>, LedgerError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND lease_until IS NULL",
        )
        .fetch_one(&self.readers)
        .await?;
        let at: Option<i64> = row.try_get(0)?;
        Ok(at.map(|at| Duration::from_millis((at - now_millis()).max(0) as u64)))
    }

    async fn stats(&self) -> Result<LedgerStats, LedgerError> {
        // Both statements name the deliveries_open index's own condition (OPEN), so that SQLite
        // uses it.
        let counts = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT state, COUNT(*) FROM deliveries WHERE {OPEN} GROUP BY state"
        )))
        .fetch_all(&self.readers)
        .await?;
        let mut stats = LedgerStats::default();
        for row in counts {
            let count = u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0);
            match State::parse(&row.try_get::<String, _>(0)?) {
                Some(State::Pending) => stats.pending = count,
                Some(State::Retrying) => stats.retrying = count,
                Some(State::Dead) => stats.dead = count,
                _ => {}
            }
        }
        // A deadline's alert waiting for its time is not late: it is left out until due.
        let oldest: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT created_at FROM deliveries WHERE {OPEN} \
             AND state IN ('pending', 'retrying') \
             AND NOT (phase IN {ARMING_PHASES} AND attempts = 0 AND next_attempt_at > ?1) \
             ORDER BY seq LIMIT 1"
        )))
        .bind(now_millis())
        .fetch_optional(&self.readers)
        .await?;
        stats.oldest_pending_age =
            oldest.map(|at| Duration::from_millis((now_millis() - at).max(0) as u64));
        Ok(stats)
    }

    async fn close(&self) {
        // Dropping the last sender lets the writer finish what is queued, then stop.
        self.writer.lock().expect("writer lock poisoned").take();
        let done = self
            .writer_done
            .lock()
            .expect("writer lock poisoned")
            .take();
        if let Some(done) = done {
            let _ = done.await;
        }
        self.readers.close().await;
        self.lock.lock().expect("lock poisoned").take();
    }
}

/// The file the store opened, to notice when it is deleted or replaced underneath: SQLite would go
/// on writing into the unlinked file, and everything acknowledged would vanish at the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

/// The one connection that writes, and what it knows about the store's health. It runs on a thread
/// of its own and calls SQLite directly: a batch's statements cost no hand-off between threads, so
/// on a busy machine the writer waits for the scheduler once per batch rather than once per
/// statement (through sqlx each statement was a round trip to its SQLite thread, about 1 ms each
/// under load, more than SQLite's own work).
struct Writer {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
    file: FileIdentity,
    trouble: Trouble,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            metrics::histogram!(crate::telemetry::BATCH_SIZE).record(batch.len() as f64);
            self.apply(std::mem::take(&mut batch));
        }
    }

    fn rollback(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    /// Applies a whole batch in one transaction. Nobody hears "accepted" before the commit is on
    /// disk. If the batch fails, each op is tried again alone, so one op that cannot be applied
    /// fails only its own caller; when the store itself cannot write (disk full, I/O), everyone
    /// hears so at once.
    fn apply(&mut self, ops: Vec<Op>) {
        if let Some(problem) = self.file_problem() {
            self.set_trouble(problem.clone(), false);
            for op in ops {
                let _ = op
                    .reply
                    .send(Err(LedgerError::Unavailable(problem.clone())));
            }
            return;
        }
        let now = now_millis();
        let works: Vec<&Work> = ops.iter().map(|op| &op.work).collect();
        match execute(&self.conn, &works, now) {
            Ok(done) => {
                self.wrote(&works, &done);
                for (op, done) in ops.into_iter().zip(done) {
                    let _ = op.reply.send(Ok(done));
                }
            }
            Err(e) => {
                self.rollback();
                if let Some((problem, needs_space)) = storage_problem(&e) {
                    self.set_trouble(problem.clone(), needs_space);
                    for op in ops {
                        let _ = op
                            .reply
                            .send(Err(LedgerError::Unavailable(problem.clone())));
                    }
                    return;
                }
                if ops.len() > 1 {
                    tracing::warn!(error = %e, size = ops.len(), "ledger batch failed; applying its calls one by one");
                }
                for op in ops {
                    let result = match execute(&self.conn, &[&op.work], now) {
                        Ok(mut done) => {
                            self.wrote(&[&op.work], &done);
                            Ok(done.remove(0))
                        }
                        Err(e) => {
                            self.rollback();
                            tracing::error!(error = %e, "ledger: a call failed and was rolled back");
                            Err(match storage_problem(&e) {
                                Some((problem, needs_space)) => {
                                    self.set_trouble(problem.clone(), needs_space);
                                    LedgerError::Unavailable(problem)
                                }
                                None => e,
                            })
                        }
                    };
                    let _ = op.reply.send(result);
                }
            }
        }
    }

    /// After a commit: a committed Enqueue proves the store can take new work again; any other
    /// write proves it for every trouble but a full disk (where a small write may still fit).
    fn wrote(&self, works: &[&Work], done: &[Done]) {
        let accepted = works.iter().any(|w| matches!(w, Work::Accept(_)));
        let wrote = accepted
            || works
                .iter()
                .any(|w| !matches!(w, Work::Lease { .. } | Work::SettleSilences(_)))
            || done
                .iter()
                .any(|d| matches!(d, Done::Lease(rows) if !rows.is_empty()));
        if wrote {
            let mut trouble = self.trouble.lock().expect("trouble lock poisoned");
            if trouble.as_ref().is_some_and(|p| accepted || !p.needs_space) {
                *trouble = None;
                tracing::warn!("the ledger can write again; accepting notifications");
            }
        }
    }

    /// Logged when it starts, not at every refused call.
    fn set_trouble(&self, reason: String, needs_space: bool) {
        let mut trouble = self.trouble.lock().expect("trouble lock poisoned");
        if trouble.as_ref().map(|p| p.reason.as_str()) != Some(reason.as_str()) {
            tracing::error!(problem = %reason, "the ledger cannot write; refusing Enqueue with UNAVAILABLE until it can");
            *trouble = Some(Problem {
                reason,
                needs_space,
            });
        }
    }

    fn file_problem(&self) -> Option<String> {
        match FileIdentity::of(&self.path) {
            Ok(now) if now == self.file => None,
            Ok(_) => Some(format!(
                "the ledger file {} was replaced while flyte-notify was running; what it accepted \
                 since is in the old file. Stop flyte-notify and restore the right file",
                self.path.display()
            )),
            Err(e) => Some(format!(
                "the ledger file {} is gone ({e}) while flyte-notify is running; stop it and \
                 restore the file from a backup before anything else is accepted",
                self.path.display()
            )),
        }
    }
}

/// A short, actionable reason when `e` means the store cannot write at all (rather than that one
/// call was wrong): the caller should retry later, so it answers UNAVAILABLE. True when the cause
/// is a full disk.
fn storage_problem(e: &LedgerError) -> Option<(String, bool)> {
    let code = match e {
        LedgerError::Database(sqlx::Error::Database(db)) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        LedgerError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.extended_code & 0xff),
        LedgerError::Database(sqlx::Error::Io(_)) | LedgerError::Io(_) => Some(10),
        _ => None,
    }?;
    let reason = match code {
        13 => "the ledger's disk is full",
        10 => "the ledger's disk failed a read or write",
        5 | 6 => "the ledger is busy",
        8 => "the ledger is read-only",
        14 => "the ledger file cannot be opened",
        _ => return None,
    };
    Some((reason.to_string(), code == 13))
}

/// ` AND ...` for each filter; values are bound, never spliced.
fn push_filters(sql: &mut QueryBuilder<Sqlite>, filters: &[super::Filter]) {
    for filter in filters {
        let column = filter.field.column();
        match filter.op {
            FilterOp::Eq => {
                sql.push(format!(" AND {column} = "))
                    .push_bind(filter.values[0].clone());
            }
            FilterOp::Ne => {
                sql.push(format!(" AND {column} <> "))
                    .push_bind(filter.values[0].clone());
            }
            FilterOp::Contains => {
                // instr, not LIKE: the value is taken literally, % and _ included.
                sql.push(format!(" AND instr({column}, "))
                    .push_bind(filter.values[0].clone())
                    .push(") > 0");
            }
            FilterOp::ValueIn => {
                sql.push(format!(" AND {column} IN ("));
                let mut list = sql.separated(", ");
                for v in &filter.values {
                    list.push_bind(v.clone());
                }
                sql.push(")");
            }
            FilterOp::InScope => {
                // (project = ? AND domain = ?) OR ...; `1 = 0` first, so that no pairs is nothing.
                sql.push(" AND (1 = 0");
                for (project, domain) in super::filters::scope_pairs(filter) {
                    sql.push(" OR (1 = 1");
                    if let Some(p) = project {
                        sql.push(" AND project = ").push_bind(p.to_string());
                    }
                    if let Some(d) = domain {
                        sql.push(" AND domain = ").push_bind(d.to_string());
                    }
                    sql.push(")");
                }
                sql.push(")");
            }
        }
    }
}

/// Values per IN list of the reader's context query, well under SQLite's 32766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// ` AND ...` for each filter, with `?` for the values, which go in `values`; never spliced.
fn filter_sql(filters: &[super::Filter], sql: &mut String, values: &mut Vec<String>) {
    for filter in filters {
        let column = filter.field.column();
        match filter.op {
            FilterOp::Eq => sql.push_str(&format!(" AND {column} = ?")),
            FilterOp::Ne => sql.push_str(&format!(" AND {column} <> ?")),
            // instr, not LIKE: the value is taken literally, % and _ included.
            FilterOp::Contains => sql.push_str(&format!(" AND instr({column}, ?) > 0")),
            FilterOp::ValueIn => {
                let marks = vec!["?"; filter.values.len()].join(", ");
                sql.push_str(&format!(" AND {column} IN ({marks})"));
            }
            FilterOp::InScope => {
                sql.push_str(" AND (1 = 0");
                for (project, domain) in super::filters::scope_pairs(filter) {
                    sql.push_str(" OR (1 = 1");
                    if let Some(p) = project {
                        sql.push_str(" AND project = ?");
                        values.push(p.to_string());
                    }
                    if let Some(d) = domain {
                        sql.push_str(" AND domain = ?");
                        values.push(d.to_string());
                    }
                    sql.push(')');
                }
                sql.push(')');
                continue;
            }
        }
        match filter.op {
            FilterOp::ValueIn => values.extend(filter.values.iter().cloned()),
            _ => values.push(filter.values[0].clone()),
        }
    }
}

/// Runs `works` in one transaction and returns what each came to, in order.
fn execute(conn: &Connection, works: &[&Work], now: Millis) -> Result<Vec<Done>, LedgerError> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let requests: Vec<&NewRequest> = works
        .iter()
        .filter_map(|w| match w {
            Work::Accept(r) => Some(&**r),
            _ => None,
        })
        .collect();
    let mut accepted = accept_all(conn, &requests, now)?.into_iter();
    // Outcomes before leases: a retry recorded in this batch is not leased again in it.
    let outcomes: Vec<&(DeliveryRef, Outcome)> = works
        .iter()
        .filter_map(|w| match w {
            Work::Record(o) => Some(o.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let (stale, unsilenced) = record_all(conn, &outcomes, now)?;
    let mut done = Vec::with_capacity(works.len());
    for work in works {
        done.push(match work {
            Work::Accept(_) => Done::Accept(accepted.next().expect("one outcome per accept")),
            Work::Record(outcomes) => Done::Record(Recorded {
                stale: outcomes
                    .iter()
                    .filter(|(d, _)| stale.contains(&d.id))
                    .map(|(d, _)| d.id.clone())
                    .collect(),
                unsilenced: outcomes
                    .iter()
                    .filter(|(d, _)| unsilenced.contains(&d.id))
                    .map(|(d, _)| d.id.clone())
                    .collect(),
            }),
            Work::CreateSilence(silence, max_open) => {
                Done::CreateSilence(create_silence(conn, silence, *max_open, now)?)
            }
            Work::ExpireSilence(id) => Done::ExpireSilence(expire_silence(conn, id, now)?),
            Work::SettleSilences(retention) => {
                Done::SettleSilences(settle_silences(conn, *retention, now)?)
            }
            Work::Expectation(write) => Done::Expectation(write_expectation(conn, write, now)?),
            Work::Release(delivery, delay) => {
                release(conn, delivery, *delay, now)?;
                Done::Release
            }
            Work::Lease { .. } => Done::Lease(Vec::new()),
            Work::Act(action, selection, note) => {
                Done::Act(act(conn, *action, selection, note, now)?)
            }
        });
    }
    for (work, done) in works.iter().zip(done.iter_mut()) {
        if let Work::Lease { max, lease_for } = work {
            *done = Done::Lease(lease(conn, *max, *lease_for, now)?);
        }
    }
    conn.prepare_cached("COMMIT")?.execute([])?;
    Ok(done)
}

/// One prepared statement per kind of row, run once per row: with no thread hand-off per
/// statement, that is cheaper than building and preparing a multi-row statement per batch size.
fn accept_all(
    conn: &Connection,
    requests: &[&NewRequest],
    now: Millis,
) -> Result<Vec<AcceptOutcome>, LedgerError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    // Only the first call with a given request_id in this batch may insert it; later ones (and
    // ids recorded before) are resolved against what is stored once the inserts are done.
    let mut first = HashSet::new();
    let mut inserted = HashSet::new();
    {
        let mut insert_request = conn.prepare_cached(
            "INSERT INTO requests (request_id, fingerprint, unmatched, created_at, execution) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (request_id) DO NOTHING",
        )?;
        let mut insert_delivery = conn.prepare_cached(INSERT_DELIVERY)?;
        for r in requests {
            if !first.insert(r.request_id.as_str()) {
                continue;
            }
            let rows = insert_request.execute(rusqlite::params![
                r.request_id,
                r.fingerprint,
                i64::from(r.unmatched),
                now,
                r.execution,
            ])?;
            if rows == 0 {
                continue;
            }
            inserted.insert(r.request_id.as_str());
            if r.disarms_deadlines {
                disarm_deadlines(conn, r, now)?;
            }
            let due = now.saturating_add(millis(r.due_in));
            for d in &r.deliveries {
                if let (Some(group), true) = (&d.group, r.due_in.is_zero()) {
                    join_group(conn, r, d, group, now)?;
                    continue;
                }
                insert_delivery.execute(rusqlite::params![
                    d.id,
                    r.request_id,
                    i64::from(d.notification_index),
                    r.execution_key.project,
                    r.execution_key.domain,
                    r.execution_key.name,
                    r.execution_key.org,
                    d.payload.channel.as_str(),
                    i64::from(d.phase),
                    State::Pending.as_str(),
                    due,
                    now,
                    d.payload.encode(),
                ])?;
            }
        }
    }
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut claimed = HashSet::new();
    for r in requests {
        // The call that inserted a request_id is the one that owns it; every other call with
        // that id (in this batch or later) is a duplicate or a conflict.
        if inserted.contains(r.request_id.as_str()) && claimed.insert(r.request_id.as_str()) {
            outcomes.push(AcceptOutcome::Accepted {
                delivery_ids: r.deliveries.iter().map(|d| d.id.clone()).collect(),
            });
        } else {
            outcomes.push(existing(conn, r)?);
        }
    }
    Ok(outcomes)
}

/// Records `d` as a member of its group: it joins the group's open digest, or opens one (due
/// `wait` from now, and no sooner than `interval` after the group's previous digest was due).
/// The digest that takes its last member is closed; the next member opens another.
fn join_group(
    conn: &Connection,
    r: &NewRequest,
    d: &NewDelivery,
    group: &Grouping,
    now: Millis,
) -> Result<(), LedgerError> {
    let wait = millis(group.wait);
    let previous: Option<i64> = conn
        .prepare_cached(
            "SELECT MAX(created_at) FROM deliveries \
             WHERE group_key = ?1 AND digest_members IS NOT NULL",
        )?
        .query_row([&group.key], |row| row.get(0))?;
    let due = previous
        .map(|at| {
            at.saturating_add(wait)
                .saturating_add(millis(group.interval))
        })
        .unwrap_or(0)
        .max(now.saturating_add(wait));
    let digest = Payload {
        channel: d.payload.channel,
        recipients: d.payload.recipients.clone(),
        content: Content::Digest,
    };
    let max = i64::from(group.max_members);
    let digest_id: String = conn
        .prepare_cached(
            "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, \
             org, channel, phase, state, attempts, next_attempt_at, created_at, updated_at, \
             payload, group_key, digest_open, digest_members) \
             VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, ?8, 'pending', 0, ?9, ?10, ?10, ?11, ?12, \
                     CASE WHEN 1 < ?13 THEN 1 ELSE 0 END, 1) \
             ON CONFLICT (group_key) WHERE digest_open = 1 DO UPDATE SET \
                 digest_members = digest_members + 1, \
                 digest_open = CASE WHEN digest_members + 1 < ?13 THEN 1 ELSE 0 END \
             RETURNING id",
        )?
        .query_row(
            rusqlite::params![
                uuid::Uuid::now_v7().to_string(),
                r.request_id,
                i64::from(d.notification_index),
                r.execution_key.project,
                r.execution_key.domain,
                r.execution_key.org,
                d.payload.channel.as_str(),
                i64::from(d.phase),
                due,
                now,
                digest.encode(),
                group.key,
                max,
            ],
            |row| row.get(0),
        )?;
    conn.prepare_cached(
        "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
         channel, phase, state, attempts, next_attempt_at, created_at, updated_at, payload, \
         group_key, digest_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'grouped', 0, NULL, ?10, ?10, ?11, ?12, ?13)",
    )?
    .execute(rusqlite::params![
        d.id,
        r.request_id,
        i64::from(d.notification_index),
        r.execution_key.project,
        r.execution_key.domain,
        r.execution_key.name,
        r.execution_key.org,
        d.payload.channel.as_str(),
        i64::from(d.phase),
        now,
        d.payload.encode(),
        group.key,
        digest_id,
    ])?;
    Ok(())
}

/// A digest's members follow it into `state` (delivered, silenced, discarded), each with an event
/// naming the digest. Returns their (id, attempts) for those events.
fn settle_members(
    conn: &Connection,
    digest_id: &str,
    state: State,
    silence_id: Option<&str>,
    now: Millis,
) -> Result<Vec<(String, i64)>, LedgerError> {
    let from = match state {
        // Released with their digest when its deliver_after silence ends.
        State::Delivered | State::Discarded => "('grouped', 'silenced')",
        _ => "('grouped')",
    };
    Ok(conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = ?1, silence_id = COALESCE(?2, silence_id), \
             updated_at = ?3 WHERE digest_id = ?4 AND state IN {from} RETURNING id, attempts"
        ))?
        .query_map(
            rusqlite::params![state.as_str(), silence_id, now, digest_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<Result<_, _>>()?)
}

/// Whether an execution has armed deadlines that disarm_statement would disarm.
fn armed_lookup() -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM deliveries \
         WHERE project = ?2 AND domain = ?3 AND name = ?4 AND org = ?5 AND {ARMED} \
           AND (lease_until IS NULL OR lease_until <= ?1))"
    )
}

/// Disarms an execution's armed deadlines. Its condition is the index deliveries_armed's (ARMED),
/// so that SQLite looks them up instead of scanning every delivery.
fn disarm_statement() -> String {
    format!(
        "UPDATE deliveries SET state = 'disarmed', next_attempt_at = NULL, updated_at = ?1 \
         WHERE project = ?2 AND domain = ?3 AND name = ?4 AND org = ?5 AND {ARMED} \
           AND (lease_until IS NULL OR lease_until <= ?1) \
         RETURNING id"
    )
}

/// The deadline alerts of `request`'s execution that have not gone out (pending, never tried,
/// not leased): disarmed, each with an event naming the request that ended them. One that is
/// being sent right now is left to go; a terminal phase that arrives that late is news after the
/// alert, and is sent too.
fn disarm_deadlines(
    conn: &Connection,
    request: &NewRequest,
    now: Millis,
) -> Result<(), LedgerError> {
    let key = &request.execution_key;
    // Most executions arm no deadline: a look first, as an UPDATE (with its RETURNING) builds
    // temporary b-trees on every run, whether or not it finds a row, and a SELECT builds none.
    let armed = conn.prepare_cached(&armed_lookup())?.query_row(
        rusqlite::params![now, key.project, key.domain, key.name, key.org],
        |row| row.get::<_, bool>(0),
    )?;
    if !armed {
        return Ok(());
    }
    let ids: Vec<String> = conn
        .prepare_cached(&disarm_statement())?
        .query_map(
            rusqlite::params![now, key.project, key.domain, key.name, key.org],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let detail = format!(
        "disarmed: the execution reached a terminal phase first (request {})",
        request.request_id
    );
    let events: Vec<(String, EventKind, i64, String)> = ids
        .into_iter()
        .map(|id| (id, EventKind::Disarmed, 0, detail.clone()))
        .collect();
    insert_events(conn, &events, now)
}

/// One change to the watched launch plans (see ExpectationWrite).
fn write_expectation(
    conn: &Connection,
    write: &ExpectationWrite,
    now: Millis,
) -> Result<bool, LedgerError> {
    let changed = match write {
        ExpectationWrite::Watch(launch_plans) => {
            let mut insert = conn.prepare_cached(
                "INSERT INTO expectations (launch_plan, watched_since, state, updated_at) \
                 VALUES (?1, ?2, 'ok', ?2) ON CONFLICT (launch_plan) DO NOTHING",
            )?;
            let mut added = 0;
            for lp in launch_plans {
                added += insert.execute(rusqlite::params![lp, now])?;
            }
            added
        }
        ExpectationWrite::Success(lp) => conn
            .prepare_cached(
                "UPDATE expectations SET last_success_at = ?2, updated_at = ?2, \
                 state = CASE state WHEN 'missed' THEN 'recovering' ELSE state END \
                 WHERE launch_plan = ?1",
            )?
            .execute(rusqlite::params![lp, now])?,
        ExpectationWrite::Transition {
            launch_plan,
            from,
            to,
            missed_deadline,
        } => conn
            .prepare_cached(
                "UPDATE expectations SET state = ?3, updated_at = ?4, \
                 missed_deadline = COALESCE(?5, missed_deadline) \
                 WHERE launch_plan = ?1 AND state = ?2",
            )?
            .execute(rusqlite::params![
                launch_plan,
                from.as_str(),
                to.as_str(),
                now,
                missed_deadline
            ])?,
    };
    Ok(changed > 0)
}

/// What a request_id that is already recorded comes to for `request`.
fn existing(conn: &Connection, request: &NewRequest) -> Result<AcceptOutcome, LedgerError> {
    let (fingerprint, unmatched): (String, i64) = conn
        .prepare_cached("SELECT fingerprint, unmatched FROM requests WHERE request_id = ?1")?
        .query_row([&request.request_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if fingerprint != request.fingerprint {
        return Ok(AcceptOutcome::Conflict);
    }
    let delivery_ids = conn
        .prepare_cached(
            "SELECT id FROM deliveries WHERE request_id = ?1 AND digest_members IS NULL \
             ORDER BY notification_index",
        )?
        .query_map([&request.request_id], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AcceptOutcome::Duplicate {
        delivery_ids,
        unmatched: unmatched as u32,
    })
}

/// Applies the outcomes whose lease token is still current; returns the ids of those refused,
/// and of the silenced outcomes whose silence is over (their leases given back).
fn record_all(
    conn: &Connection,
    outcomes: &[&(DeliveryRef, Outcome)],
    now: Millis,
) -> Result<(HashSet<String>, HashSet<String>), LedgerError> {
    if outcomes.is_empty() {
        return Ok((HashSet::new(), HashSet::new()));
    }
    let mut applied = HashSet::new();
    let mut unsilenced = HashSet::new();
    let mut events = Vec::new();
    {
        // Silenced only while the silence is active by this ledger's clock: a worker's cache may
        // be a second behind an expiry.
        let mut silence = conn.prepare_cached(
            "UPDATE deliveries SET state = 'silenced', silence_id = ?1, next_attempt_at = NULL, \
             last_error = ?2, lease_until = NULL, lease_token = NULL, updated_at = ?3 \
             WHERE id = ?4 AND lease_token = ?5 AND EXISTS ( \
                 SELECT 1 FROM silences WHERE id = ?1 AND starts_at <= ?3 AND ends_at > ?3) \
             RETURNING attempts",
        )?;
        let mut give_back = conn.prepare_cached(
            "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, next_attempt_at = ?1, \
             updated_at = ?2 WHERE id = ?3 AND lease_token = ?4",
        )?;
        for (delivery, outcome) in outcomes {
            let Outcome::Silenced { silence_id } = outcome else {
                continue;
            };
            let mut rows = silence.query(rusqlite::params![
                silence_id,
                format!("silenced by silence {silence_id}"),
                now,
                delivery.id,
                delivery.lease.0,
            ])?;
            if let Some(row) = rows.next()? {
                events.push((
                    delivery.id.clone(),
                    EventKind::Silenced,
                    row.get::<_, i64>(0)?,
                    silence_id.clone(),
                ));
                applied.insert(delivery.id.clone());
                drop(rows);
                let members =
                    settle_members(conn, &delivery.id, State::Silenced, Some(silence_id), now)?;
                for (id, attempts) in members {
                    let detail = format!("{silence_id} (with digest {})", delivery.id);
                    events.push((id, EventKind::Silenced, attempts, detail));
                }
            } else if give_back.execute(rusqlite::params![
                now.saturating_add(UNSILENCED_DELAY),
                now,
                delivery.id,
                delivery.lease.0
            ])? > 0
            {
                unsilenced.insert(delivery.id.clone());
                applied.insert(delivery.id.clone());
            }
        }
    }
    {
        let mut update = conn.prepare_cached(RECORD_OUTCOME)?;
        for (delivery, outcome) in outcomes {
            let (state, next, error) = match outcome {
                Outcome::Delivered => (State::Delivered, None, ""),
                Outcome::Retry { delay, error } => (
                    State::Retrying,
                    Some(now.saturating_add(millis(*delay))),
                    error.as_str(),
                ),
                Outcome::Dead { error } => (State::Dead, None, error.as_str()),
                Outcome::Silenced { .. } => continue,
            };
            let mut rows = update.query(rusqlite::params![
                state.as_str(),
                next,
                error,
                now,
                delivery.id,
                delivery.lease.0,
            ])?;
            if let Some(row) = rows.next()? {
                let kind = match row.get_ref(1)?.as_str().unwrap_or_default() {
                    "delivered" => EventKind::Delivered,
                    "retrying" => EventKind::Failed,
                    _ => EventKind::Dead,
                };
                events.push((
                    delivery.id.clone(),
                    kind,
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(2)?,
                ));
                applied.insert(delivery.id.clone());
                let is_digest: bool = row.get(3)?;
                drop(rows);
                // Only a digest has members to settle; asking for every delivery would cost each
                // a statement that builds two temporary b-trees.
                if kind == EventKind::Delivered && is_digest {
                    let members = settle_members(conn, &delivery.id, State::Delivered, None, now)?;
                    for (id, attempts) in members {
                        let detail = format!("sent in digest {}", delivery.id);
                        events.push((id, EventKind::Delivered, attempts, detail));
                    }
                }
            }
        }
    }
    insert_events(conn, &events, now)?;
    let stale: HashSet<String> = outcomes
        .iter()
        .map(|(d, _)| &d.id)
        .filter(|id| !applied.contains(*id))
        .cloned()
        .collect();
    if !stale.is_empty() {
        metrics::counter!(crate::telemetry::STALE_RECORDS).increment(stale.len() as u64);
        tracing::warn!(
            ids = ?stale,
            "refused outcomes from lost leases: another attempt owns these deliveries now"
        );
    }
    Ok((stale, unsilenced))
}

fn read_silence(conn: &Connection, id: &str, now: Millis) -> Result<Option<Silence>, LedgerError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"
        ))?
        .query_row([id], |row| {
            let (starts_at, ends_at) = (row.get(2)?, row.get(3)?);
            Ok(Silence {
                id: row.get(0)?,
                matcher: row.get(1)?,
                starts_at,
                ends_at,
                created_by: row.get(4)?,
                comment: row.get(5)?,
                deliver_after: row.get(6)?,
                created_at: row.get(7)?,
                state: silence_state(starts_at, ends_at, now),
            })
        })
        .optional()?)
}

fn create_silence(
    conn: &Connection,
    silence: &NewSilence,
    max_open: u32,
    now: Millis,
) -> Result<CreatedSilence, LedgerError> {
    let open: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM silences WHERE ends_at > ?1")?
        .query_row([now], |row| row.get(0))?;
    if open >= i64::from(max_open) {
        return Ok(CreatedSilence::TooMany(open.max(0) as u64));
    }
    conn.prepare_cached(
        "INSERT INTO silences (id, matcher, starts_at, ends_at, created_by, comment, \
         deliver_after, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        silence.id,
        silence.matcher,
        silence.starts_at,
        silence.ends_at,
        silence.created_by,
        silence.comment,
        silence.deliver_after,
        now,
    ])?;
    let stored = read_silence(conn, &silence.id, now)?.expect("inserted in this transaction");
    Ok(CreatedSilence::Created(stored))
}

fn expire_silence(
    conn: &Connection,
    id: &str,
    now: Millis,
) -> Result<Option<Silence>, LedgerError> {
    conn.prepare_cached("UPDATE silences SET ends_at = ?1 WHERE id = ?2 AND ends_at > ?1")?
        .execute(rusqlite::params![now, id])?;
    settle_ended(conn, now)?;
    read_silence(conn, id, now)
}

/// Handles the end of every silence that ended and was not handled yet: with deliver_after, its
/// held deliveries are pending again, due now. Returns how many.
fn settle_ended(conn: &Connection, now: Millis) -> Result<u64, LedgerError> {
    let ended: Vec<(String, bool)> = conn
        .prepare_cached(
            "UPDATE silences SET settled = 1 WHERE settled = 0 AND ends_at <= ?1 \
             RETURNING id, deliver_after",
        )?
        .query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut events = Vec::new();
    {
        // The attempt count a sender is told restarts from the recorded attempts: a silenced
        // lease was no attempt.
        let mut release = conn.prepare_cached(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?1, leases = attempts, \
             last_error = '', updated_at = ?1 WHERE state = 'silenced' AND silence_id = ?2 \
               AND digest_id IS NULL \
             RETURNING id, attempts",
        )?;
        for (id, _) in ended.iter().filter(|(_, after)| *after) {
            let mut rows = release.query(rusqlite::params![now, id])?;
            while let Some(row) = rows.next()? {
                events.push((
                    row.get::<_, String>(0)?,
                    EventKind::Unsilenced,
                    row.get::<_, i64>(1)?,
                    format!("silence {id} ended; sending (deliver_after)"),
                ));
            }
        }
    }
    insert_events(conn, &events, now)?;
    Ok(events.len() as u64)
}

fn settle_silences(
    conn: &Connection,
    retention: Duration,
    now: Millis,
) -> Result<SettledSilences, LedgerError> {
    let released = settle_ended(conn, now)?;
    let pruned = conn
        .prepare_cached("DELETE FROM silences WHERE settled = 1 AND ends_at <= ?1")?
        .execute([now.saturating_sub(millis(retention))])?;
    Ok(SettledSilences {
        released,
        pruned: pruned as u64,
    })
}

/// Appends to deliveries' histories: (delivery id, kind, attempts, detail).
fn insert_events(
    conn: &Connection,
    events: &[(String, EventKind, i64, String)],
    now: Millis,
) -> Result<(), LedgerError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (id, kind, attempts, detail) in events {
        insert.execute(rusqlite::params![id, now, kind.as_str(), attempts, detail])?;
    }
    Ok(())
}

/// Redrive or discard: in the writer, so that no lease or outcome interleaves with it.
fn act(
    conn: &Connection,
    action: OperatorAction,
    selection: &Selection,
    note: &str,
    now: Millis,
) -> Result<Acted, LedgerError> {
    let mut acted = Acted::default();
    // (id, its state and attempts, or None when there is no such id), in selection order.
    let mut found: Vec<(String, Option<(String, i64)>)> = Vec::new();
    match selection {
        Selection::Ids(ids) => {
            let mut seen = HashSet::new();
            let mut select =
                conn.prepare_cached("SELECT state, attempts FROM deliveries WHERE id = ?1")?;
            for id in ids.iter().filter(|id| seen.insert(*id)) {
                let row = select
                    .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                found.push((id.clone(), row));
            }
        }
        Selection::Filter { filters, limit } => {
            let mut sql = format!(
                "SELECT id, state, attempts FROM deliveries WHERE {OPEN} AND state = 'dead'"
            );
            let mut values = Vec::new();
            filter_sql(filters, &mut sql, &mut values);
            sql.push_str(&format!(" ORDER BY seq LIMIT {}", i64::from(*limit) + 1));
            let mut select = conn.prepare(&sql)?;
            let mut rows = select.query(rusqlite::params_from_iter(values.iter()))?;
            while let Some(row) = rows.next()? {
                found.push((row.get(0)?, Some((row.get(1)?, row.get(2)?))));
            }
            acted.more = found.len() > *limit as usize;
            found.truncate(*limit as usize);
        }
    }
    let mut events = Vec::new();
    for (id, row) in found {
        let Some((state, attempts)) = row else {
            acted.skipped.push((id, Skip::NotFound));
            continue;
        };
        if state != State::Dead.as_str() {
            let state = State::parse(&state).unwrap_or(State::Dead);
            acted.skipped.push((id, Skip::NotDead(state)));
            continue;
        }
        let kind = match action {
            OperatorAction::Redrive => EventKind::Redriven,
            OperatorAction::Discard => EventKind::Discarded,
        };
        events.push((id.clone(), kind, attempts, note.to_string()));
        acted.changed.push(id);
    }
    let mut update = conn.prepare_cached(match action {
        // A fresh budget: the attempt count restarts; the history keeps the old attempts.
        OperatorAction::Redrive => {
            "UPDATE deliveries SET state = 'pending', attempts = 0, leases = 0, last_error = '', \
             lease_until = NULL, lease_token = NULL, next_attempt_at = ?1, updated_at = ?1 \
             WHERE state = 'dead' AND id = ?2"
        }
        OperatorAction::Discard => {
            "UPDATE deliveries SET state = 'discarded', next_attempt_at = NULL, updated_at = ?1 \
             WHERE state = 'dead' AND id = ?2"
        }
    })?;
    for id in &acted.changed {
        update.execute(rusqlite::params![now, id])?;
    }
    drop(update);
    if action == OperatorAction::Discard {
        for id in &acted.changed {
            for (member, attempts) in settle_members(conn, id, State::Discarded, None, now)? {
                events.push((
                    member,
                    EventKind::Discarded,
                    attempts,
                    format!("with digest {id}"),
                ));
            }
        }
    }
    insert_events(conn, &events, now)?;
    Ok(acted)
}

fn release(
    conn: &Connection,
    delivery: &DeliveryRef,
    delay: Duration,
    now: Millis,
) -> Result<(), LedgerError> {
    conn.prepare_cached(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, next_attempt_at = ?1, \
         updated_at = ?2 WHERE id = ?3 AND lease_token = ?4",
    )?
    .execute(rusqlite::params![
        now.saturating_add(millis(delay)),
        now,
        delivery.id,
        delivery.lease.0,
    ])?;
    Ok(())
}

/// A leased row as the writer read it; its request's execution context is read after the commit.
struct LeasedRow {
    seq: i64,
    delivery: DeliveryRef,
    execution: Result<ExecutionKey, String>,
    /// The payload, and the context when the payload carries its own (version 1).
    content: Result<(Payload, Option<Vec<u8>>), String>,
    accepted_at: std::time::Instant,
}

fn lease(
    conn: &Connection,
    max: usize,
    lease_for: Duration,
    now: Millis,
) -> Result<Vec<LeasedRow>, LedgerError> {
    let mut leased = Vec::new();
    let mut unreadable = Vec::new();
    {
        // random(): a fresh token per row and per lease; only equality with the current one
        // matters.
        let mut statement = conn.prepare_cached(
            "UPDATE deliveries SET lease_until = ?1, lease_token = random(), leases = leases + 1, \
               digest_open = NULL \
             WHERE seq IN ( \
                 SELECT seq FROM deliveries \
                 WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?2 \
                   AND (lease_until IS NULL OR lease_until <= ?2) \
                 ORDER BY next_attempt_at, seq LIMIT ?3) \
             RETURNING seq, id, request_id, project, domain, name, org, leases, lease_token, \
               payload, created_at",
        )?;
        let mut rows = statement.query(rusqlite::params![
            now.saturating_add(millis(lease_for)),
            now,
            max as i64,
        ])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get("seq")?;
            let mut problems = Vec::new();
            let id = cell_text(row, "id", &mut problems);
            let request_id = cell_text(row, "request_id", &mut problems);
            let attempt = cell_integer(row, "leases", &mut problems);
            let lease = cell_integer(row, "lease_token", &mut problems);
            let (Some(id), Some(request_id), Some(attempt), Some(lease), true) =
                (id, request_id, attempt, lease, problems.is_empty())
            else {
                // Without its exact id no outcome could ever be recorded for it: the ledger
                // records it dead itself, and the rest of the batch goes on.
                unreadable.push((seq, problems.join("; ")));
                continue;
            };
            let mut execution_problems = Vec::new();
            let mut get =
                |column| cell_text(row, column, &mut execution_problems).unwrap_or_default();
            let execution = ExecutionKey {
                project: get("project"),
                domain: get("domain"),
                name: get("name"),
                org: get("org"),
            };
            leased.push(LeasedRow {
                seq,
                delivery: DeliveryRef {
                    id,
                    request_id,
                    attempt: attempt as u32,
                    lease: LeaseToken(lease),
                },
                execution: if execution_problems.is_empty() {
                    Ok(execution)
                } else {
                    Err(format!(
                        "the stored execution id cannot be read: {}",
                        execution_problems.join("; ")
                    ))
                },
                // A row this binary cannot read (written by a newer version, or damaged) must not
                // stop every other lease: it travels as an error, and the worker records it dead.
                content: cell_text(row, "payload", &mut Vec::new())
                    .ok_or_else(|| "the stored payload cannot be read".to_string())
                    .and_then(|p| Payload::decode(&p)),
                accepted_at: instant_of_age(
                    now - cell_integer(row, "created_at", &mut Vec::new()).unwrap_or(now),
                ),
            });
        }
    }
    for (seq, reason) in unreadable {
        tracing::error!(seq, %reason, "a ledger row cannot be read; recording it dead");
        conn.prepare_cached(
            "UPDATE deliveries SET state = 'dead', last_error = ?1, lease_until = NULL, \
             lease_token = NULL, updated_at = ?2 WHERE seq = ?3",
        )?
        .execute(rusqlite::params![
            format!("the stored row cannot be read: {reason}"),
            now,
            seq,
        ])?;
    }
    leased.sort_by_key(|r| r.seq);
    Ok(leased)
}

/// `text` for a row the writer read.
fn cell_text(row: &rusqlite::Row, column: &str, problems: &mut Vec<String>) -> Option<String> {
    let lossy = |bytes: &[u8], problems: &mut Vec<String>| {
        problems.push(format!("{column} is not UTF-8 text"));
        Some(String::from_utf8_lossy(bytes).into_owned())
    };
    match row.get_ref(column) {
        Ok(ValueRef::Text(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => Some(text.to_owned()),
            Err(_) => lossy(bytes, problems),
        },
        Ok(ValueRef::Blob(bytes)) => lossy(bytes, problems),
        Ok(ValueRef::Integer(number)) => {
            problems.push(format!("{column} is a number, not text"));
            Some(number.to_string())
        }
        Ok(ValueRef::Real(number)) => {
            problems.push(format!("{column} is a number, not text"));
            Some(number.to_string())
        }
        Ok(ValueRef::Null) | Err(_) => {
            problems.push(format!("{column} cannot be read"));
            None
        }
    }
}

/// `integer` for a row the writer read.
fn cell_integer(row: &rusqlite::Row, column: &str, problems: &mut Vec<String>) -> Option<i64> {
    match row.get_ref(column) {
        Ok(ValueRef::Integer(value)) => Some(value),
        Ok(ValueRef::Null) => None,
        _ => {
            let parsed = cell_text(row, column, problems).and_then(|t| t.trim().parse().ok());
            if parsed.is_none() {
                problems.push(format!("{column} is not a number"));
            }
            parsed
        }
    }
}

/// Completes leased rows with their requests' execution contexts, read through the reader pool:
/// a request row is immutable and committed before any of its deliveries can be leased, so this
/// need not (and, to keep statements off the one writer, should not) run in the lease's
/// transaction. Deliveries of one request share one copy.
async fn with_contexts(
    readers: &SqlitePool,
    rows: Vec<LeasedRow>,
) -> Result<Vec<LeasedDelivery>, LedgerError> {
    let wanted: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.content, Ok((_, None))))
        .map(|r| r.delivery.request_id.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut contexts: HashMap<String, Option<Arc<[u8]>>> = HashMap::new();
    for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT request_id, execution FROM requests WHERE request_id IN (",
        );
        let mut list = sql.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        sql.push(")");
        for row in sql.build().fetch_all(readers).await? {
            let bytes: Option<Vec<u8>> = row.try_get(1).ok().flatten();
            if let Ok(request_id) = row.try_get::<String, _>(0) {
                contexts.insert(request_id, bytes.map(Arc::from));
            }
        }
    }
    let mut members: HashMap<String, Vec<DigestMember>> = HashMap::new();
    for row in &rows {
        if matches!(
            row.content,
            Ok((
                Payload {
                    content: Content::Digest,
                    ..
                },
                _
            ))
        ) {
            let id = row.delivery.id.clone();
            members.insert(id.clone(), digest_members(readers, &id).await?);
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let members = members.remove(&row.delivery.id).unwrap_or_default();
            let request_id = &row.delivery.request_id;
            let content = row.content.and_then(|(payload, own)| {
                let context = match own {
                    Some(bytes) => Arc::from(bytes),
                    None => contexts.get(request_id).cloned().flatten().ok_or_else(|| {
                        format!("request {request_id} has no stored execution context")
                    })?,
                };
                Ok((payload, context))
            });
            let (execution, content) = match row.execution {
                Ok(key) => (key, content),
                Err(e) => (ExecutionKey::default(), Err(e)),
            };
            LeasedDelivery {
                delivery: row.delivery,
                execution,
                content,
                members,
                accepted_at: row.accepted_at,
            }
        })
        .collect())
}

/// A leased digest's members with their requests' execution contexts. They are fixed: a digest
/// takes members only until its first lease commits (the lease closes it in the same write).
async fn digest_members(
    readers: &SqlitePool,
    digest_id: &str,
) -> Result<Vec<DigestMember>, LedgerError> {
    let rows = sqlx::query(
        "SELECT d.id, d.project, d.domain, d.name, d.org, d.phase, r.execution \
         FROM deliveries d LEFT JOIN requests r ON r.request_id = d.request_id \
         WHERE d.digest_id = ?1 ORDER BY d.seq",
    )
    .bind(digest_id)
    .fetch_all(readers)
    .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut problems = Vec::new();
            let id = text(row, "id", &mut problems).unwrap_or_default();
            let execution = execution_key(row, &mut problems);
            let phase = integer(row, "phase", &mut problems).unwrap_or(0) as i32;
            let context = match row.try_get::<Option<Vec<u8>>, _>("execution") {
                Ok(Some(bytes)) if problems.is_empty() => Ok(Arc::from(bytes)),
                _ => Err(format!(
                    "the member's execution context cannot be read {}",
                    problems.join("; ")
                )),
            };
            DigestMember {
                id,
                execution,
                phase,
                context,
            }
        })
        .collect())
}

/// A text column as well as it can be read: a damaged value (not UTF-8, a blob, a number) comes
/// back as its lossy text with the problem noted, so that one damaged row never fails a whole
/// read. None when nothing can be made of it.
fn text(row: &SqliteRow, column: &str, problems: &mut Vec<String>) -> Option<String> {
    if let Ok(text) = row.try_get::<String, _>(column) {
        return Some(text);
    }
    if let Ok(Some(bytes)) = row.try_get_unchecked::<Option<Vec<u8>>, _>(column) {
        problems.push(format!("{column} is not UTF-8 text"));
        return Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    if let Ok(number) = row.try_get_unchecked::<i64, _>(column) {
        problems.push(format!("{column} is a number, not text"));
        return Some(number.to_string());
    }
    problems.push(format!("{column} cannot be read"));
    None
}

/// An integer column as well as it can be read (see `text`).
fn integer(row: &SqliteRow, column: &str, problems: &mut Vec<String>) -> Option<i64> {
    if let Ok(value) = row.try_get::<Option<i64>, _>(column) {
        return value;
    }
    let parsed = text(row, column, problems).and_then(|t| t.trim().parse().ok());
    if parsed.is_none() {
        problems.push(format!("{column} is not a number"));
    }
    parsed
}

fn execution_key(row: &SqliteRow, problems: &mut Vec<String>) -> ExecutionKey {
    let mut get = |column| text(row, column, problems).unwrap_or_default();
    ExecutionKey {
        project: get("project"),
        domain: get("domain"),
        name: get("name"),
        org: get("org"),
    }
}

/// One row for ListPending, whatever state it is in: what can be read is shown, and what cannot
/// makes the row's payload an error that says why.
fn decode_listed(row: &SqliteRow) -> Result<(i64, StoredDelivery), LedgerError> {
    // seq is the rowid: always an integer.
    let seq: i64 = row.try_get("seq")?;
    let mut problems = Vec::new();
    let id = text(row, "id", &mut problems).unwrap_or_else(|| format!("unreadable-{seq}"));
    let payload = text(row, "payload", &mut problems)
        .ok_or_else(|| "the stored payload cannot be read".to_string())
        .and_then(|p| Payload::decode(&p).map(|(p, _)| p));
    let state = text(row, "state", &mut problems);
    let state = match state.as_deref().and_then(State::parse) {
        Some(state) => state,
        None => {
            problems.push(format!("state {state:?} is not a state"));
            State::Dead
        }
    };
    let channel = text(row, "channel", &mut problems);
    let delivery = StoredDelivery {
        request_id: text(row, "request_id", &mut problems).unwrap_or_default(),
        execution: execution_key(row, &mut problems),
        phase: integer(row, "phase", &mut problems).unwrap_or(0) as i32,
        channel: channel.as_deref().and_then(Channel::parse),
        state,
        attempts: integer(row, "attempts", &mut problems).unwrap_or(0) as u32,
        next_attempt_at: integer(row, "next_attempt_at", &mut problems),
        last_error: text(row, "last_error", &mut problems).unwrap_or_default(),
        created_at: integer(row, "created_at", &mut problems).unwrap_or(0),
        payload: if problems.is_empty() {
            payload
        } else {
            Err(format!(
                "the stored row cannot be read: {}",
                problems.join("; ")
            ))
        },
        digest_id: row.try_get::<Option<String>, _>("digest_id").ok().flatten(),
        id,
    };
    Ok((seq, delivery))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Enqueue of a terminal phase runs this: a scan would cost it the whole ledger.
    #[tokio::test]
    async fn disarming_deadlines_looks_them_up_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let ledger = SqliteLedger::open(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        for statement in [armed_lookup(), disarm_statement()] {
            let plan = query_plan(&conn, &statement);
            assert!(
                plan.iter()
                    .any(|step| step.contains("USING INDEX deliveries_armed")),
                "{statement}: {plan:?}"
            );
        }
        // The look that spares most terminal Enqueues the UPDATE builds no temporary b-tree.
        assert_eq!(temporary_btrees(&conn, &armed_lookup()), 0);
        ledger.close().await;
    }

    /// Column `column` of every row `EXPLAIN` (or `EXPLAIN QUERY PLAN`, as `explain`) gives for
    /// `sql`. Unbound parameters are NULL: EXPLAIN only compiles the statement.
    fn explained(conn: &Connection, explain: &str, sql: &str, column: usize) -> Vec<String> {
        let mut statement = conn.prepare(&format!("{explain} {sql}")).unwrap();
        let mut rows = statement.raw_query();
        let mut cells = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            cells.push(row.get::<_, String>(column).unwrap());
        }
        cells
    }

    /// The steps of `sql`'s query plan.
    fn query_plan(conn: &Connection, sql: &str) -> Vec<String> {
        explained(conn, "EXPLAIN QUERY PLAN", sql, 3)
    }

    /// How many temporary b-trees one run of `sql` builds (OpenEphemeral opcodes).
    fn temporary_btrees(conn: &Connection, sql: &str) -> usize {
        explained(conn, "EXPLAIN", sql, 1)
            .iter()
            .filter(|op| *op == "OpenEphemeral")
            .count()
    }

    /// SQLite checks each partial index's condition on every insert and update of a delivery; an
    /// IN list of three or more values there costs a temporary b-tree each time (migration 0009).
    #[tokio::test]
    async fn the_writers_statements_build_no_temporary_btree_for_index_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let ledger = SqliteLedger::open(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        assert_eq!(temporary_btrees(&conn, INSERT_DELIVERY), 0);
        // One: RETURNING collects its rows in one.
        assert_eq!(temporary_btrees(&conn, RECORD_OUTCOME), 1);
        // ListPending still finds its rows through the index whose condition OPEN names.
        let plan = query_plan(
            &conn,
            &format!("SELECT seq FROM deliveries WHERE {OPEN} AND seq > 5 ORDER BY seq LIMIT 10"),
        );
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX deliveries_open")),
            "{plan:?}"
        );
        ledger.close().await;
    }

    /// ARMED spells out ARMING_PHASES as ORs: the same phases.
    #[test]
    fn armed_names_the_arming_phases() {
        let listed: Vec<String> = ARMING_PHASES
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|p| format!("phase = {p}"))
            .collect();
        assert!(
            ARMED.starts_with(&format!("({})", listed.join(" OR "))),
            "{ARMED}"
        );
    }
}
