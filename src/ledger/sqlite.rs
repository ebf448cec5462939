//! The embedded ledger: one SQLite file in WAL mode, fsynced on every commit.
//!
//! All writes go through one writer task that drains whatever calls are waiting and commits them in
//! one transaction (group commit): under load, many Enqueue calls share one fsync. Each call runs
//! inside its own savepoint, so one failing call never fails the others in its batch. Reads use a
//! separate pool, which WAL lets run beside the writer.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    AcceptOutcome, ExecutionKey, FilterOp, Ledger, LedgerError, Millis, NewRequest, Outcome,
    PendingPage, PendingQuery, State, StoredDelivery, now_millis,
};

/// How many calls one transaction takes at most; bounds the time one commit holds the writer.
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

enum Op {
    Accept(Box<NewRequest>, Reply<AcceptOutcome>),
    Record(Vec<Outcome>, Reply<()>),
    Lease {
        now: Millis,
        max: usize,
        lease_for: Duration,
        reply: Reply<Vec<StoredDelivery>>,
    },
    ReleaseAll(Reply<u64>),
}

pub struct SqliteLedger {
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    writer_task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    readers: SqlitePool,
}

const COLUMNS: &str = "seq, id, request_id, project, domain, name, org, phase, state, attempts, \
                       next_attempt_at, last_error, created_at, payload";

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before Enqueue answers.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("src/ledger/migrations/sqlite")
            .run(&mut conn)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(writer_loop(conn, rx));
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            writer_task: tokio::sync::Mutex::new(Some(task)),
            readers,
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
        if let Some(after) = query.after_seq {
            sql.push(" AND seq > ").push_bind(after);
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
        let mut deliveries = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        let more = deliveries.len() > limit as usize;
        deliveries.truncate(limit as usize);
        let next_after_seq = if more {
            deliveries.last().map(|d| d.seq)
        } else {
            None
        };
        Ok(PendingPage {
            deliveries,
            next_after_seq,
        })
    }

    async fn lease_due(
        &self,
        now: Millis,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<StoredDelivery>, LedgerError> {
        self.call(|reply| Op::Lease {
            now,
            max,
            lease_for,
            reply,
        })
        .await
    }

    async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), LedgerError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.call(|reply| Op::Record(outcomes, reply)).await
    }

    async fn release_all_leases(&self) -> Result<u64, LedgerError> {
        self.call(Op::ReleaseAll).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, LedgerError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND lease_until IS NULL",
        )
        .fetch_one(&self.readers)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    async fn close(&self) {
        // Dropping the last sender lets the writer finish what is queued, then stop.
        self.writer.lock().expect("writer lock poisoned").take();
        if let Some(task) = self.writer_task.lock().await.take() {
            let _ = task.await;
        }
        self.readers.close().await;
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
        apply_batch(&mut conn, &mut batch).await;
        metrics_batch(size);
    }
    let _ = conn.close().await;
}

fn metrics_batch(size: usize) {
    tracing::trace!(size, "ledger batch committed");
}

/// Results wait here until the commit: nobody hears "accepted" before it is on disk.
enum Done {
    Accept(Reply<AcceptOutcome>, Result<AcceptOutcome, LedgerError>),
    Record(Reply<()>, Result<(), LedgerError>),
    Lease(
        Reply<Vec<StoredDelivery>>,
        Result<Vec<StoredDelivery>, LedgerError>,
    ),
    ReleaseAll(Reply<u64>, Result<u64, LedgerError>),
}

async fn apply_batch(conn: &mut SqliteConnection, batch: &mut Vec<Op>) {
    let mut done = Vec::with_capacity(batch.len());
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        tracing::error!(error = %e, "ledger: cannot begin a transaction");
        fail_all(batch.drain(..), &e);
        return;
    }
    for op in batch.drain(..) {
        if let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut *conn).await {
            fail_all(std::iter::once(op), &e);
            continue;
        }
        let item = match op {
            Op::Accept(request, reply) => Done::Accept(reply, accept(conn, &request).await),
            Op::Record(outcomes, reply) => Done::Record(reply, record(conn, &outcomes).await),
            Op::Lease {
                now,
                max,
                lease_for,
                reply,
            } => Done::Lease(reply, lease(conn, now, max, lease_for).await),
            Op::ReleaseAll(reply) => Done::ReleaseAll(reply, release_all(conn).await),
        };
        let end = if item_failed(&item) {
            "ROLLBACK TO op; RELEASE op"
        } else {
            "RELEASE op"
        };
        if let Err(e) = sqlx::raw_sql(end).execute(&mut *conn).await {
            tracing::error!(error = %e, "ledger: cannot end a savepoint");
        }
        done.push(item);
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => {
            for item in done {
                match item {
                    Done::Accept(r, v) => drop(r.send(v)),
                    Done::Record(r, v) => drop(r.send(v)),
                    Done::Lease(r, v) => drop(r.send(v)),
                    Done::ReleaseAll(r, v) => drop(r.send(v)),
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "ledger: commit failed; the batch is not recorded");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            for item in done {
                let err =
                    || LedgerError::Database(sqlx::Error::Protocol(format!("commit failed: {e}")));
                match item {
                    Done::Accept(r, _) => drop(r.send(Err(err()))),
                    Done::Record(r, _) => drop(r.send(Err(err()))),
                    Done::Lease(r, _) => drop(r.send(Err(err()))),
                    Done::ReleaseAll(r, _) => drop(r.send(Err(err()))),
                }
            }
        }
    }
}

fn item_failed(item: &Done) -> bool {
    match item {
        Done::Accept(_, v) => v.is_err(),
        Done::Record(_, v) => v.is_err(),
        Done::Lease(_, v) => v.is_err(),
        Done::ReleaseAll(_, v) => v.is_err(),
    }
}

fn fail_all(ops: impl Iterator<Item = Op>, e: &sqlx::Error) {
    let err = || LedgerError::Database(sqlx::Error::Protocol(e.to_string()));
    for op in ops {
        match op {
            Op::Accept(_, r) => drop(r.send(Err(err()))),
            Op::Record(_, r) => drop(r.send(Err(err()))),
            Op::Lease { reply, .. } => drop(reply.send(Err(err()))),
            Op::ReleaseAll(r) => drop(r.send(Err(err()))),
        }
    }
}

async fn accept(
    conn: &mut SqliteConnection,
    request: &NewRequest,
) -> Result<AcceptOutcome, LedgerError> {
    let existing = sqlx::query("SELECT fingerprint, unmatched FROM requests WHERE request_id = ?")
        .bind(&request.request_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = existing {
        let fingerprint: String = row.try_get(0)?;
        if fingerprint != request.fingerprint {
            return Ok(AcceptOutcome::Conflict);
        }
        let unmatched: i64 = row.try_get(1)?;
        let ids = sqlx::query_scalar::<_, String>(
            "SELECT id FROM deliveries WHERE request_id = ? ORDER BY notification_index",
        )
        .bind(&request.request_id)
        .fetch_all(&mut *conn)
        .await?;
        return Ok(AcceptOutcome::Duplicate {
            delivery_ids: ids,
            unmatched: unmatched as u32,
        });
    }
    sqlx::query(
        "INSERT INTO requests (request_id, fingerprint, unmatched, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&request.request_id)
    .bind(&request.fingerprint)
    .bind(i64::from(request.unmatched))
    .bind(request.created_at)
    .execute(&mut *conn)
    .await?;
    for d in &request.deliveries {
        let payload = serde_json::to_string(&d.payload).map_err(|source| LedgerError::Payload {
            id: d.id.clone(),
            source,
        })?;
        sqlx::query(
            "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
             channel, phase, state, attempts, next_attempt_at, created_at, updated_at, payload) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&request.request_id)
        .bind(i64::from(d.notification_index))
        .bind(&d.execution.project)
        .bind(&d.execution.domain)
        .bind(&d.execution.name)
        .bind(&d.execution.org)
        .bind(d.payload.message().channel.as_str())
        .bind(i64::from(d.phase))
        .bind(request.created_at)
        .bind(request.created_at)
        .bind(request.created_at)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    }
    Ok(AcceptOutcome::Accepted {
        delivery_ids: request.deliveries.iter().map(|d| d.id.clone()).collect(),
    })
}

async fn record(conn: &mut SqliteConnection, outcomes: &[Outcome]) -> Result<(), LedgerError> {
    let now = now_millis();
    for outcome in outcomes {
        let (state, next, error) = match outcome {
            Outcome::Delivered { .. } => (State::Delivered, None, ""),
            Outcome::Retry { at, error, .. } => (State::Retrying, Some(*at), error.as_str()),
            Outcome::Dead { error, .. } => (State::Dead, None, error.as_str()),
        };
        sqlx::query(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, \
             last_error = ?, lease_until = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(error)
        .bind(now)
        .bind(outcome.id())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn lease(
    conn: &mut SqliteConnection,
    now: Millis,
    max: usize,
    lease_for: Duration,
) -> Result<Vec<StoredDelivery>, LedgerError> {
    let until = now + lease_for.as_millis() as i64;
    // COLUMNS is a constant; every value is bound.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET lease_until = ?1 WHERE seq IN ( \
             SELECT seq FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?2 \
               AND (lease_until IS NULL OR lease_until <= ?2) \
             ORDER BY next_attempt_at, seq LIMIT ?3) \
         RETURNING {COLUMNS}"
    )))
    .bind(until)
    .bind(now)
    .bind(max as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
    leased.sort_by_key(|d| d.seq);
    Ok(leased)
}

async fn release_all(conn: &mut SqliteConnection) -> Result<u64, LedgerError> {
    let done =
        sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL")
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected())
}

fn decode_row(row: &SqliteRow) -> Result<StoredDelivery, LedgerError> {
    let id: String = row.try_get("id")?;
    let payload: String = row.try_get("payload")?;
    let payload = serde_json::from_str(&payload).map_err(|source| LedgerError::Payload {
        id: id.clone(),
        source,
    })?;
    let state: String = row.try_get("state")?;
    Ok(StoredDelivery {
        seq: row.try_get("seq")?,
        id,
        request_id: row.try_get("request_id")?,
        execution: ExecutionKey {
            project: row.try_get("project")?,
            domain: row.try_get("domain")?,
            name: row.try_get("name")?,
            org: row.try_get("org")?,
        },
        phase: row.try_get::<i64, _>("phase")? as i32,
        state: State::parse(&state).unwrap_or(State::Pending),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        payload,
    })
}
