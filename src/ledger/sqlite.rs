//! The embedded ledger: one SQLite file in WAL mode, fsynced on every commit.
//!
//! All writes go through one writer task that drains whatever calls are waiting and commits them in
//! one transaction (group commit): under load, many Enqueue calls share one fsync and a few
//! multi-row statements. Reads use a separate pool, which WAL lets run beside the writer.
//!
//! The store belongs to one process: `open` takes an exclusive lock beside the file, and so any
//! lease found in it at open was left by a process that died; `open` ends them all.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::{
    AcceptOutcome, ExecutionKey, FilterOp, LeasedDelivery, Ledger, LedgerError, Millis, NewRequest,
    PageToken, PendingPage, PendingQuery, Recorded, State, StoredDelivery,
};
use crate::delivery::{Channel, DeliveryRef, LeaseToken, Outcome, Payload};

/// How many calls one transaction takes at most; bounds the time one commit holds the writer.
const MAX_BATCH: usize = 1024;

/// The name of the lock file in the ledger's directory.
pub const LOCK_FILE: &str = "flyte-notify.lock";

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

enum Op {
    Accept(Box<NewRequest>, Reply<AcceptOutcome>),
    Record(Vec<(DeliveryRef, Outcome)>, Reply<Recorded>),
    Lease {
        max: usize,
        lease_for: Duration,
        reply: Reply<Vec<LeasedRow>>,
    },
    Release(DeliveryRef, Duration, Reply<()>),
}

pub struct SqliteLedger {
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    readers: SqlitePool,
    /// Held while the store is open; the OS drops it when the process ends, even by SIGKILL.
    lock: Mutex<Option<std::fs::File>>,
}

/// The process clock. The single writer is the only place a write takes the time, so the times in
/// one store never come from two clocks.
fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const COLUMNS: &str = "seq, id, request_id, project, domain, name, org, channel, phase, state, \
                       attempts, next_attempt_at, last_error, created_at, payload";

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
            // multi-row statements here are long, and the writer thread is the bottleneck.
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
        .await?
        .rows_affected();
        if released > 0 {
            tracing::warn!(
                released,
                "resuming deliveries a previous run left in the middle of a send; they go out again"
            );
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(writer_loop(conn, rx));
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            writer_task: Mutex::new(Some(task)),
            readers,
            lock: Mutex::new(Some(lock)),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, LedgerError> {
        let sender = self
            .writer
            .lock()
            .expect("writer lock poisoned")
            .clone()
            .ok_or(LedgerError::Closed)?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(make(reply))
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }
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
             (the embedded ledger is single-process; several replicas need the PostgreSQL ledger)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::Io(e)),
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn accept(&self, request: NewRequest) -> Result<AcceptOutcome, LedgerError> {
        self.call(|reply| Op::Accept(Box::new(request), reply))
            .await
    }

    async fn list_pending(&self, query: PendingQuery) -> Result<PendingPage, LedgerError> {
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE state <> 'delivered'"
        ));
        // Keyset paging on seq never skips a row that commits after a page was read: seq is
        // assigned by the one writer inside its serialized transactions, so seq order is commit
        // order, and a row a later page could miss would need a seq below one already listed.
        // (PostgreSQL hands out sequence numbers before commit, out of commit order; its store
        // must not return a row past one whose transaction might still be in flight.)
        if let Some(PageToken::After { seq }) = query.after {
            sql.push(" AND seq > ").push_bind(seq);
        }
        for filter in &query.filters {
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
            }
        }
        // One row more than asked tells whether another page exists.
        let limit = query.limit.max(1);
        sql.push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = sql.build().fetch_all(&self.readers).await?;
        let mut deliveries = rows
            .iter()
            .map(decode_listed)
            .collect::<Result<Vec<_>, _>>()?;
        let more = deliveries.len() > limit as usize;
        deliveries.truncate(limit as usize);
        let next = if more {
            deliveries
                .last()
                .map(|(seq, _)| PageToken::After { seq: *seq })
        } else {
            None
        };
        Ok(PendingPage {
            deliveries: deliveries.into_iter().map(|(_, d)| d).collect(),
            next,
        })
    }

    async fn lease_due(
        &self,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<LeasedDelivery>, LedgerError> {
        let rows = self
            .call(|reply| Op::Lease {
                max,
                lease_for,
                reply,
            })
            .await?;
        with_contexts(&self.readers, rows).await
    }

    async fn record(&self, outcomes: Vec<(DeliveryRef, Outcome)>) -> Result<Recorded, LedgerError> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        self.call(|reply| Op::Record(outcomes, reply)).await
    }

    async fn release(&self, delivery: &DeliveryRef, delay: Duration) -> Result<(), LedgerError> {
        let delivery = delivery.clone();
        self.call(|reply| Op::Release(delivery, delay, reply)).await
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

    async fn close(&self) {
        // Dropping the last sender lets the writer finish what is queued, then stop.
        self.writer.lock().expect("writer lock poisoned").take();
        let task = self
            .writer_task
            .lock()
            .expect("writer lock poisoned")
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.readers.close().await;
        self.lock.lock().expect("lock poisoned").take();
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let size = batch.len();
        metrics::histogram!(crate::telemetry::BATCH_SIZE).record(size as f64);
        let started = std::time::Instant::now();
        apply_batch(&mut conn, &mut batch).await;
        tracing::trace!(
            size,
            micros = started.elapsed().as_micros() as u64,
            "ledger batch committed"
        );
    }
    let _ = conn.close().await;
}

/// Applies a whole batch in one transaction, with a handful of statements whatever its size:
/// every statement is a round trip to SQLite's worker thread, and that, not the disk, is what
/// bounds a per-call design. Nobody hears "accepted" before the commit is on disk; if any
/// statement fails, the batch is rolled back and every call in it gets the error.
async fn apply_batch(conn: &mut SqliteConnection, batch: &mut Vec<Op>) {
    let mut accepts = Vec::new();
    let mut records = Vec::new();
    let mut leases = Vec::new();
    let mut releases = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::Accept(request, reply) => accepts.push((request, reply)),
            Op::Record(outcomes, reply) => records.push((outcomes, reply)),
            Op::Lease {
                max,
                lease_for,
                reply,
            } => leases.push(((max, lease_for), reply)),
            Op::Release(delivery, delay, reply) => releases.push(((delivery, delay), reply)),
        }
    }
    let now = now_millis();
    let work = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let requests: Vec<&NewRequest> = accepts.iter().map(|(r, _)| &**r).collect();
        let accepted = accept_all(conn, &requests, now).await?;
        // Outcomes before leases: a retry recorded in this batch is not leased again in it.
        let outcomes: Vec<&(DeliveryRef, Outcome)> =
            records.iter().flat_map(|(o, _)| o.iter()).collect();
        let stale = record_all(conn, &outcomes, now).await?;
        for ((delivery, delay), _) in &releases {
            release(conn, delivery, *delay, now).await?;
        }
        let mut leased = Vec::with_capacity(leases.len());
        for ((max, lease_for), _) in &leases {
            leased.push(lease(conn, *max, *lease_for, now).await?);
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok::<_, LedgerError>((accepted, stale, leased))
    };
    match work.await {
        Ok((accepted, stale, leased)) => {
            for ((_, reply), outcome) in accepts.into_iter().zip(accepted) {
                let _ = reply.send(Ok(outcome));
            }
            for (outcomes, reply) in records {
                let mine = outcomes
                    .iter()
                    .filter(|(d, _)| stale.contains(&d.id))
                    .map(|(d, _)| d.id.clone())
                    .collect();
                let _ = reply.send(Ok(Recorded { stale: mine }));
            }
            for (_, reply) in releases {
                let _ = reply.send(Ok(()));
            }
            for ((_, reply), rows) in leases.into_iter().zip(leased) {
                let _ = reply.send(Ok(rows));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "ledger: batch failed and was rolled back");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            let err =
                || LedgerError::Database(sqlx::Error::Protocol(format!("batch rolled back: {e}")));
            for (_, reply) in accepts {
                let _ = reply.send(Err(err()));
            }
            for (_, reply) in records {
                let _ = reply.send(Err(err()));
            }
            for (_, reply) in releases {
                let _ = reply.send(Err(err()));
            }
            for (_, reply) in leases {
                let _ = reply.send(Err(err()));
            }
        }
    }
}

/// Rows per multi-row statement, well under SQLite's 32766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

async fn accept_all(
    conn: &mut SqliteConnection,
    requests: &[&NewRequest],
    now: Millis,
) -> Result<Vec<AcceptOutcome>, LedgerError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    // Only the first call with a given request_id in this batch may insert it; later ones (and
    // ids recorded before) are resolved against what is stored once the inserts are done.
    let mut first = HashSet::new();
    let candidates: Vec<&NewRequest> = requests
        .iter()
        .copied()
        .filter(|r| first.insert(r.request_id.as_str()))
        .collect();
    let mut inserted = HashSet::new();
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO requests (request_id, fingerprint, unmatched, created_at, execution) ",
        );
        sql.push_values(chunk, |mut row, r| {
            row.push_bind(&r.request_id)
                .push_bind(&r.fingerprint)
                .push_bind(i64::from(r.unmatched))
                .push_bind(now)
                .push_bind(&r.execution);
        });
        sql.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
        for row in sql.build().fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    let new_deliveries: Vec<(&NewRequest, &super::NewDelivery)> = candidates
        .iter()
        .filter(|r| inserted.contains(&r.request_id))
        .flat_map(|r| r.deliveries.iter().map(move |d| (*r, d)))
        .collect();
    for chunk in new_deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, \
             org, channel, phase, state, attempts, next_attempt_at, created_at, updated_at, payload) ",
        );
        sql.push_values(chunk, |mut row, (r, d)| {
            row.push_bind(&d.id)
                .push_bind(&r.request_id)
                .push_bind(i64::from(d.notification_index))
                .push_bind(&r.execution_key.project)
                .push_bind(&r.execution_key.domain)
                .push_bind(&r.execution_key.name)
                .push_bind(&r.execution_key.org)
                .push_bind(d.payload.channel.as_str())
                .push_bind(i64::from(d.phase))
                .push_bind(State::Pending.as_str())
                .push_bind(0i64)
                .push_bind(now)
                .push_bind(now)
                .push_bind(now)
                .push_bind(d.payload.encode());
        });
        sql.build().execute(&mut *conn).await?;
    }
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut claimed = HashSet::new();
    for r in requests {
        // The call that inserted a request_id is the one that owns it; every other call with
        // that id (in this batch or later) is a duplicate or a conflict.
        if inserted.contains(&r.request_id) && claimed.insert(r.request_id.as_str()) {
            outcomes.push(AcceptOutcome::Accepted {
                delivery_ids: r.deliveries.iter().map(|d| d.id.clone()).collect(),
            });
        } else {
            outcomes.push(existing(conn, r).await?);
        }
    }
    Ok(outcomes)
}

/// What a request_id that is already recorded comes to for `request`.
async fn existing(
    conn: &mut SqliteConnection,
    request: &NewRequest,
) -> Result<AcceptOutcome, LedgerError> {
    let row = sqlx::query("SELECT fingerprint, unmatched FROM requests WHERE request_id = ?")
        .bind(&request.request_id)
        .fetch_one(&mut *conn)
        .await?;
    let fingerprint: String = row.try_get(0)?;
    if fingerprint != request.fingerprint {
        return Ok(AcceptOutcome::Conflict);
    }
    let unmatched: i64 = row.try_get(1)?;
    let delivery_ids = sqlx::query_scalar::<_, String>(
        "SELECT id FROM deliveries WHERE request_id = ? ORDER BY notification_index",
    )
    .bind(&request.request_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(AcceptOutcome::Duplicate {
        delivery_ids,
        unmatched: unmatched as u32,
    })
}

/// Applies the outcomes whose lease token is still current; returns the ids of those refused.
async fn record_all(
    conn: &mut SqliteConnection,
    outcomes: &[&(DeliveryRef, Outcome)],
    now: Millis,
) -> Result<HashSet<String>, LedgerError> {
    let mut applied = HashSet::new();
    for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "UPDATE deliveries SET state = v.column3, attempts = attempts + 1, \
             next_attempt_at = v.column4, last_error = v.column5, lease_until = NULL, \
             lease_token = NULL, updated_at = ",
        );
        sql.push_bind(now).push(" FROM (");
        sql.push_values(chunk, |mut row, (delivery, outcome)| {
            let (state, next, error) = match outcome {
                Outcome::Delivered => (State::Delivered, None, ""),
                Outcome::Retry { delay, error } => (
                    State::Retrying,
                    Some(now.saturating_add(millis(*delay))),
                    error.as_str(),
                ),
                Outcome::Dead { error } => (State::Dead, None, error.as_str()),
            };
            row.push_bind(&delivery.id)
                .push_bind(delivery.lease.0)
                .push_bind(state.as_str())
                .push_bind(next)
                .push_bind(error);
        });
        sql.push(
            ") AS v WHERE deliveries.id = v.column1 AND deliveries.lease_token = v.column2 \
             RETURNING deliveries.id",
        );
        for row in sql.build().fetch_all(&mut *conn).await? {
            applied.insert(row.try_get::<String, _>(0)?);
        }
    }
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
    Ok(stale)
}

async fn release(
    conn: &mut SqliteConnection,
    delivery: &DeliveryRef,
    delay: Duration,
    now: Millis,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, next_attempt_at = ?1, \
         updated_at = ?2 WHERE id = ?3 AND lease_token = ?4",
    )
    .bind(now.saturating_add(millis(delay)))
    .bind(now)
    .bind(&delivery.id)
    .bind(delivery.lease.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A leased row as the writer read it; its request's execution context is read after the commit.
struct LeasedRow {
    seq: i64,
    delivery: DeliveryRef,
    execution: Result<ExecutionKey, String>,
    /// The payload, and the context when the payload carries its own (version 1).
    content: Result<(Payload, Option<Vec<u8>>), String>,
}

async fn lease(
    conn: &mut SqliteConnection,
    max: usize,
    lease_for: Duration,
    now: Millis,
) -> Result<Vec<LeasedRow>, LedgerError> {
    // random(): a fresh token per row and per lease; only equality with the current one matters.
    let rows = sqlx::query(
        "UPDATE deliveries SET lease_until = ?1, lease_token = random(), leases = leases + 1 \
         WHERE seq IN ( \
             SELECT seq FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?2 \
               AND (lease_until IS NULL OR lease_until <= ?2) \
             ORDER BY next_attempt_at, seq LIMIT ?3) \
         RETURNING seq, id, request_id, project, domain, name, org, leases, lease_token, payload",
    )
    .bind(now.saturating_add(millis(lease_for)))
    .bind(now)
    .bind(max as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = Vec::with_capacity(rows.len());
    for row in &rows {
        leased.push(LeasedRow {
            seq: row.try_get("seq")?,
            delivery: DeliveryRef {
                id: row.try_get("id")?,
                request_id: row.try_get("request_id")?,
                attempt: row.try_get::<i64, _>("leases")? as u32,
                lease: LeaseToken(row.try_get("lease_token")?),
            },
            execution: execution_key(row)
                .map_err(|e| format!("the stored execution id cannot be read: {e}")),
            // A row this binary cannot read (written by a newer version, or damaged) must not
            // stop every other lease: it travels as an error, and the worker records it dead.
            content: row
                .try_get::<String, _>("payload")
                .map_err(|e| format!("the stored payload is not text: {e}"))
                .and_then(|p| Payload::decode(&p)),
        });
    }
    leased.sort_by_key(|r| r.seq);
    Ok(leased)
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
            contexts.insert(row.try_get(0)?, bytes.map(Arc::from));
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
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
            }
        })
        .collect())
}

fn execution_key(row: &SqliteRow) -> Result<ExecutionKey, sqlx::Error> {
    Ok(ExecutionKey {
        project: row.try_get("project")?,
        domain: row.try_get("domain")?,
        name: row.try_get("name")?,
        org: row.try_get("org")?,
    })
}

fn decode_listed(row: &SqliteRow) -> Result<(i64, StoredDelivery), LedgerError> {
    let payload: String = row.try_get("payload")?;
    // A row this binary cannot read shows as what can be read, with the reason.
    let payload = Payload::decode(&payload).map(|(p, _)| p);
    let state: String = row.try_get("state")?;
    let channel: String = row.try_get("channel")?;
    let delivery = StoredDelivery {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        execution: execution_key(row)?,
        phase: row.try_get::<i64, _>("phase")? as i32,
        channel: Channel::parse(&channel),
        state: State::parse(&state).unwrap_or(State::Pending),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        payload,
    };
    Ok((row.try_get("seq")?, delivery))
}
