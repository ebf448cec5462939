//! The embedded ledger: one SQLite file in WAL mode, fsynced on every commit.
//!
//! All writes go through one writer task that drains whatever calls are waiting and commits them in
//! one transaction (group commit): under load, many Enqueue calls share one fsync and a few
//! multi-row statements. Reads use a separate pool, which WAL lets run beside the writer.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

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
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
            .busy_timeout(Duration::from_secs(10))
            // sqlx formats every statement for its debug log when any trace is enabled; the
            // multi-row statements here are long, and the writer thread is the bottleneck.
            .disable_statement_logging();
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
            writer_task: Mutex::new(Some(task)),
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
        let task = self
            .writer_task
            .lock()
            .expect("writer lock poisoned")
            .take();
        if let Some(task) = task {
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
                now,
                max,
                lease_for,
                reply,
            } => leases.push(((now, max, lease_for), reply)),
            Op::ReleaseAll(reply) => releases.push(reply),
        }
    }
    let work = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let requests: Vec<&NewRequest> = accepts.iter().map(|(r, _)| &**r).collect();
        let accepted = accept_all(conn, &requests).await?;
        // Outcomes before leases: a retry recorded in this batch is not leased again in it.
        let outcomes: Vec<&Outcome> = records.iter().flat_map(|(o, _)| o.iter()).collect();
        record_all(conn, &outcomes).await?;
        let mut released = 0;
        if !releases.is_empty() {
            released = release_all(conn).await?;
        }
        let mut leased = Vec::with_capacity(leases.len());
        for ((now, max, lease_for), _) in &leases {
            leased.push(lease(conn, *now, *max, *lease_for).await?);
        }
        let commit = std::time::Instant::now();
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        tracing::trace!(
            commit_micros = commit.elapsed().as_micros() as u64,
            accepts = requests.len(),
            outcomes = outcomes.len(),
            "ledger commit"
        );
        Ok::<_, LedgerError>((accepted, released, leased))
    };
    match work.await {
        Ok((accepted, released, leased)) => {
            for ((_, reply), outcome) in accepts.into_iter().zip(accepted) {
                let _ = reply.send(Ok(outcome));
            }
            for (_, reply) in records {
                let _ = reply.send(Ok(()));
            }
            for reply in releases {
                let _ = reply.send(Ok(released));
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
            for reply in releases {
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
) -> Result<Vec<AcceptOutcome>, LedgerError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    // Only the first call with a given request_id in this batch may insert it; later ones (and
    // ids recorded before) are resolved against what is stored once the inserts are done.
    let mut first = std::collections::HashSet::new();
    let candidates: Vec<&NewRequest> = requests
        .iter()
        .copied()
        .filter(|r| first.insert(r.request_id.as_str()))
        .collect();
    let mut inserted = std::collections::HashSet::new();
    for chunk in candidates.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO requests (request_id, fingerprint, unmatched, created_at) ",
        );
        sql.push_values(chunk, |mut row, r| {
            row.push_bind(&r.request_id)
                .push_bind(&r.fingerprint)
                .push_bind(i64::from(r.unmatched))
                .push_bind(r.created_at);
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
        let mut payloads = Vec::with_capacity(chunk.len());
        for (_, d) in chunk {
            payloads.push(serde_json::to_string(&d.payload).map_err(|source| {
                LedgerError::Payload {
                    id: d.id.clone(),
                    source,
                }
            })?);
        }
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, \
             org, channel, phase, state, attempts, next_attempt_at, created_at, updated_at, payload) ",
        );
        sql.push_values(chunk.iter().zip(payloads), |mut row, ((r, d), payload)| {
            row.push_bind(&d.id)
                .push_bind(&r.request_id)
                .push_bind(i64::from(d.notification_index))
                .push_bind(&d.execution.project)
                .push_bind(&d.execution.domain)
                .push_bind(&d.execution.name)
                .push_bind(&d.execution.org)
                .push_bind(d.payload.channel().as_str())
                .push_bind(i64::from(d.phase))
                .push_bind(State::Pending.as_str())
                .push_bind(0i64)
                .push_bind(r.created_at)
                .push_bind(r.created_at)
                .push_bind(r.created_at)
                .push_bind(payload);
        });
        sql.build().execute(&mut *conn).await?;
    }
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut claimed = std::collections::HashSet::new();
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

async fn record_all(conn: &mut SqliteConnection, outcomes: &[&Outcome]) -> Result<(), LedgerError> {
    let now = now_millis();
    for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "UPDATE deliveries SET state = v.column2, attempts = attempts + 1, \
             next_attempt_at = v.column3, last_error = v.column4, lease_until = NULL, updated_at = ",
        );
        sql.push_bind(now).push(" FROM (");
        sql.push_values(chunk, |mut row, outcome| {
            let (state, next, error) = match outcome {
                Outcome::Delivered { .. } => (State::Delivered, None, ""),
                Outcome::Retry { at, error, .. } => (State::Retrying, Some(*at), error.as_str()),
                Outcome::Dead { error, .. } => (State::Dead, None, error.as_str()),
            };
            row.push_bind(outcome.id())
                .push_bind(state.as_str())
                .push_bind(next)
                .push_bind(error);
        });
        sql.push(") AS v WHERE deliveries.id = v.column1");
        sql.build().execute(&mut *conn).await?;
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
    // A row this binary cannot read (written by a newer version, or damaged) must not stop the
    // reads and leases of every other row: it is carried as an error to whoever uses it.
    let payload = serde_json::from_str(&payload)
        .map_err(|e| format!("the stored payload cannot be read by this version: {e}"));
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
