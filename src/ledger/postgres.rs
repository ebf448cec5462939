//! The shared ledger: one PostgreSQL database that several replicas (processes) write at once.
//!
//! Nothing here is owned by one process, unlike the SQLite store: every lease is a row lock taken
//! with `FOR UPDATE SKIP LOCKED` and an expiry, so competing replicas never lease the same row and
//! the rows a dead replica leased become due again when their leases run out. Every time (due
//! times, lease expiries, creation, history) comes from the database's clock (`ledger_now()` in
//! the schema), never from a replica's.
//!
//! Enqueue calls go through one writer task per replica that drains whatever calls are waiting
//! and commits them in one transaction (group commit), as in the SQLite store. Everything else
//! (leases, outcomes, operator actions, reads) runs as its own short statement on the pool:
//! PostgreSQL already lets those run side by side, and flushes concurrent commits together.
//!
//! When the database cannot be reached, calls fail within a few seconds with `Unavailable` and a
//! reason, `trouble()` says so meanwhile, and a probe notices when the database is back.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::error::Elapsed;

use super::page_token;
use super::{
    ARMING_PHASES, AcceptOutcome, Acted, DigestMember, EventKind, ExecutionKey, ExpectationRow,
    ExpectationState, ExpectationWrite, Filter, FilterOp, HistoryEvent, LeasedDelivery, Ledger,
    LedgerError, LedgerStats, NewDelivery, NewRequest, OperatorAction, PageToken, PendingPage,
    PendingQuery, Recorded, Selection, Skip, State, StoredDelivery, instant_of_age,
};
use super::{
    ActivityBucket, CreatedSilence, Millis, NewSilence, SettledSilences, Silence, silence_state,
};
use super::{DeliveredCursor, RecentPage, RecentQuery};
use crate::delivery::{Channel, Content, DeliveryRef, LeaseToken, Outcome, Payload};

/// How a replica talks to the database.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections this replica opens at most (the writer takes one per batch).
    pub max_connections: u32,
    /// How long a call waits for a connection, connecting included, before it fails with
    /// `Unavailable`.
    pub connect_timeout: Duration,
    /// How long one statement (and one whole transaction, on the client's side) may take before
    /// the call fails with `Unavailable`. Also the server's `idle_in_transaction_session_timeout`,
    /// so that a replica cut off in the middle of a transaction cannot hold its locks for long.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// How many Enqueue calls one transaction takes at most; bounds the time one commit takes.
const MAX_BATCH: usize = 1024;

/// How often the probe checks the database while it is in trouble, and while it is not.
const PROBE_IN_TROUBLE: Duration = Duration::from_secs(1);
const PROBE_HEALTHY: Duration = Duration::from_secs(5);

/// The states ListPending shows (the deliveries_open index's condition).
const OPEN: &str = "state IN ('pending', 'retrying', 'dead', 'grouped')";

/// What ListPending shows when a filter asks for silenced deliveries among others (no index has
/// this condition: such a listing reads the table in seq order).
const OPEN_OR_SILENCED: &str = "state IN ('pending', 'retrying', 'dead', 'grouped', 'silenced')";

const SILENCE_COLUMNS: &str = "id, matcher, starts_at, ends_at, created_by, comment, \
                               deliver_after, created_at, ledger_now() AS now";

const COLUMNS: &str = "seq, id, request_id, project, domain, name, org, channel, phase, state, \
                       attempts, next_attempt_at, last_error, created_at, payload, digest_id";

/// The watermark ListPending pages below (see list_pending for why it holds): the lowest
/// transaction id that is in flight in this statement's snapshot and belongs to a holder of
/// delivery_commit_order, read from pg_locks after the snapshot was taken; else the snapshot's
/// xmax (one past the newest transaction finished by then: an id at or above it was not finished
/// at the snapshot, in flight or not, and is not in the in-flight list). pg_locks gives 32-bit
/// ids (the holder's own transactionid lock, found by its virtual transaction); the snapshot's
/// in-flight list gives them whole (xid8), and the low 32 bits match the two up.
const ACCEPT_WATERMARK: &str = "\
    WITH snapshot AS (SELECT pg_current_snapshot() AS s), \
    accepting AS ( \
        SELECT held.transactionid::text::bigint AS xid32 \
        FROM pg_locks AS l JOIN pg_locks AS held ON held.virtualtransaction = l.virtualtransaction \
        WHERE l.locktype = 'relation' AND l.relation = 'delivery_commit_order'::regclass \
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
          AND held.locktype = 'transactionid') \
    SELECT least(pg_snapshot_xmax(s), \
                 (SELECT min(x) FROM pg_snapshot_xip(s) AS x \
                  WHERE x::text::bigint % 4294967296 IN (SELECT xid32 FROM accepting)) \
           )::text::bigint \
    FROM snapshot";

/// COLUMNS of `d`, beside delivery_events `e`, which has a seq and attempts of its own.
const JOINED_COLUMNS: &str = "d.seq, d.id, d.request_id, d.project, d.domain, d.name, d.org, \
                              d.channel, d.phase, d.state, d.attempts, d.next_attempt_at, \
                              d.last_error, d.created_at, d.payload, d.digest_id";

struct AcceptOp {
    request: Box<NewRequest>,
    reply: oneshot::Sender<Result<AcceptOutcome, LedgerError>>,
}

pub struct PostgresLedger {
    link: Arc<Link>,
    writer: Mutex<Option<mpsc::Sender<AcceptOp>>>,
    writer_task: Mutex<Option<JoinHandle<()>>>,
    probe_task: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// The pool and what the replica knows about the database's health: shared by the calls, the
/// writer and the probe.
struct Link {
    pool: PgPool,
    /// For the probe's own connections, which say why connecting fails where the pool only times
    /// out.
    connect: PgConnectOptions,
    /// host:port/database, for messages (never the DSN: it may hold a password).
    target: String,
    options: PostgresOptions,
    trouble: Mutex<Option<String>>,
    /// Wakes the probe when a call finds trouble, so that it checks a second later rather than
    /// at its next healthy round.
    troubled: tokio::sync::Notify,
    /// Tells the other replicas of work an accept committed, after its commit.
    announcer: super::wakeups::Announcer,
}

impl PostgresLedger {
    /// Connects to the database `dsn` names (a `postgres://` URL), brings its schema up to date,
    /// and starts this replica's writer and health probe. Replicas starting together are fine:
    /// the migrator holds an advisory lock while it works. Fails with `Unavailable` when the
    /// database cannot be reached within `options.connect_timeout`.
    pub async fn connect(dsn: &str, options: PostgresOptions) -> Result<Self, LedgerError> {
        let mut base = PgConnectOptions::from_str(dsn)?;
        if base.get_application_name().is_none() {
            base = base.application_name("flyte-notify");
        }
        let target = match base.get_socket() {
            Some(socket) => format!("{}/{}", socket.display(), base.get_database().unwrap_or("")),
            None => format!(
                "{}:{}/{}",
                base.get_host(),
                base.get_port(),
                base.get_database().unwrap_or("")
            ),
        };
        let mut conn =
            match tokio::time::timeout(options.connect_timeout, PgConnection::connect_with(&base))
                .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    return Err(LedgerError::Unavailable(format!(
                        "cannot connect to the ledger's database at {target}: {e}"
                    )));
                }
                Err(_) => {
                    return Err(LedgerError::Unavailable(format!(
                        "no answer from the ledger's database at {target} within {:?}",
                        options.connect_timeout
                    )));
                }
            };
        // On the base options, without the statement timeout: a migration may take as long as
        // it takes, and a replica waiting for another one's migration waits on its lock.
        sqlx::migrate!("src/ledger/migrations/postgres")
            .run(&mut conn)
            .await?;
        let _ = conn.close().await;

        let millis = |d: Duration| d.as_millis().max(1).to_string();
        let session = base.clone().options([
            ("statement_timeout", millis(options.statement_timeout)),
            (
                "idle_in_transaction_session_timeout",
                millis(options.statement_timeout),
            ),
            // Plan every run of a prepared statement for the table as it is then. After five
            // runs PostgreSQL may keep one generic plan for good (until an ANALYZE), and a
            // ledger's first runs see an almost empty table: the plan kept was a sequential scan,
            // which read every delivery for each batch of outcomes once the table had grown
            // (60 ms per batch at 27,000 rows). Planning these statements costs far less.
            ("plan_cache_mode", "force_custom_plan".to_string()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_lazy_with(session.clone());
        // Bounded like any call's statements.
        let announcer = super::wakeups::Announcer::spawn(pool.clone(), budget(&options));
        let link = Arc::new(Link {
            pool,
            connect: session,
            target,
            options,
            trouble: Mutex::new(None),
            troubled: tokio::sync::Notify::new(),
            announcer,
        });
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let writer_task = tokio::spawn(write(link.clone(), rx));
        let probe_task = tokio::spawn(probe(link.clone()));
        Ok(Self {
            link,
            writer: Mutex::new(Some(tx)),
            writer_task: Mutex::new(Some(writer_task)),
            probe_task: Mutex::new(Some(probe_task)),
            closed: AtomicBool::new(false),
        })
    }

    /// Closed, or known to be cut off from the database: either way, say so at once.
    fn ready(&self) -> Result<(), LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LedgerError::Closed);
        }
        self.link.refuse()
    }
}

impl Drop for PostgresLedger {
    fn drop(&mut self) {
        // The writer stops by itself once its channel is gone; the probe would run forever.
        if let Some(task) = self.probe_task.lock().expect("probe lock poisoned").take() {
            task.abort();
        }
    }
}

impl Link {
    /// Fails fast while the database is known to be unreachable: the probe clears this within a
    /// second of it coming back, and until then a call would only wait out a timeout.
    fn refuse(&self) -> Result<(), LedgerError> {
        match self.trouble.lock().expect("trouble lock poisoned").as_ref() {
            Some(reason) => Err(LedgerError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    /// Logged when it starts or changes, not at every refused call.
    fn set_trouble(&self, reason: &str) {
        let mut trouble = self.trouble.lock().expect("trouble lock poisoned");
        if trouble.as_deref() != Some(reason) {
            tracing::error!(problem = %reason, "the ledger's database cannot be used; refusing calls with UNAVAILABLE until it can");
            *trouble = Some(reason.to_string());
            self.troubled.notify_one();
        }
    }

    fn clear_trouble(&self) {
        if self
            .trouble
            .lock()
            .expect("trouble lock poisoned")
            .take()
            .is_some()
        {
            tracing::warn!(database = %self.target, "the ledger's database answers again; accepting notifications");
        }
    }

    fn unavailable(&self, reason: String) -> LedgerError {
        self.set_trouble(&reason);
        LedgerError::Unavailable(reason)
    }

    /// A short, actionable reason when `e` means the database cannot be used now (rather than
    /// that one call was wrong): the caller should retry later, so it answers UNAVAILABLE.
    fn problem(&self, e: &sqlx::Error) -> Option<String> {
        let target = &self.target;
        Some(match e {
            sqlx::Error::PoolTimedOut => format!(
                "no connection to the ledger's database at {target} within {:?}",
                self.options.connect_timeout
            ),
            sqlx::Error::Io(e) => {
                format!("lost the connection to the ledger's database at {target}: {e}")
            }
            sqlx::Error::Tls(e) => {
                format!("TLS with the ledger's database at {target} failed: {e}")
            }
            sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
                format!("the connection to the ledger's database at {target} broke: {e}")
            }
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                let message = db.message();
                match &*code {
                    "57014" => format!(
                        "the ledger's database at {target} did not finish a statement within {:?}",
                        self.options.statement_timeout
                    ),
                    "57P01" | "57P02" | "57P03" => format!(
                        "the ledger's database at {target} is shutting down or starting up: {message}"
                    ),
                    "53100" => format!("the ledger's database at {target} is out of disk space"),
                    "53200" => format!("the ledger's database at {target} is out of memory"),
                    "53300" => format!(
                        "the ledger's database at {target} has no free connection slots: {message}"
                    ),
                    "25006" => format!(
                        "the ledger's database at {target} is read-only (a standby?): {message}"
                    ),
                    "3D000" => format!("the ledger's database {target} does not exist"),
                    c if c.starts_with("08") => format!(
                        "lost the connection to the ledger's database at {target}: {message}"
                    ),
                    c if c.starts_with("28") => {
                        format!("the ledger's database at {target} refused the login: {message}")
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// What a failed statement comes to for the caller, noting trouble on the way.
    fn failed(&self, e: sqlx::Error) -> LedgerError {
        if matches!(e, sqlx::Error::PoolClosed) {
            return LedgerError::Closed;
        }
        match self.problem(&e) {
            Some(reason) => self.unavailable(reason),
            None => LedgerError::Database(e),
        }
    }

    async fn acquire(&self) -> Result<PoolConnection<Postgres>, LedgerError> {
        self.pool.acquire().await.map_err(|e| self.failed(e))
    }

    /// The client's bound on one call's statements on an acquired connection: a little over the
    /// server's statement timeout, so that the server's clean error usually comes first, but
    /// also there when the server is cut off and nothing at all comes back.
    fn budget(&self) -> Duration {
        budget(&self.options)
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<Result<T, sqlx::Error>, Elapsed> {
        tokio::time::timeout(self.budget(), work).await
    }

    /// What a bounded call on `conn` came to. A connection whose call timed out or broke is closed
    /// rather than pooled: what it is in the middle of is unknown, and a ping on a connection cut
    /// off without a reset would hold its pool slot until TCP gives up, long after the database
    /// came back.
    fn settle<T>(
        &self,
        mut conn: PoolConnection<Postgres>,
        result: Result<Result<T, sqlx::Error>, Elapsed>,
    ) -> Result<T, LedgerError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if matches!(
                    e,
                    sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_)
                ) {
                    conn.close_on_drop();
                }
                Err(self.failed(e))
            }
            Err(_) => {
                conn.close_on_drop();
                Err(self.unavailable(format!(
                    "the ledger's database at {} did not answer within {:?}",
                    self.target,
                    self.budget()
                )))
            }
        }
    }

    /// Records a batch of Enqueue calls in one transaction (see accept_all), then has work due
    /// now announced to the other replicas.
    async fn accept(&self, requests: &[&NewRequest]) -> Result<Vec<AcceptOutcome>, LedgerError> {
        self.refuse()?;
        let mut conn = self.acquire().await?;
        let result = self.bounded(accept_all(&mut conn, requests)).await;
        let (outcomes, announce) = self.settle(conn, result)?;
        if announce {
            self.announcer.announce();
        }
        Ok(outcomes)
    }

    /// Whether the database answers, and can be written to; the reason when it cannot.
    async fn check(&self) -> Result<(), String> {
        let in_trouble = self
            .trouble
            .lock()
            .expect("trouble lock poisoned")
            .is_some();
        if !in_trouble {
            let mut conn = self.acquire().await.map_err(|e| e.to_string())?;
            let result = self.bounded(read_only(&mut conn)).await;
            return match self.settle(conn, result) {
                Ok(false) => Ok(()),
                Ok(true) => Err(self.read_only_reason()),
                Err(e) => Err(e.to_string()),
            };
        }
        // A connection of its own: the pool would only say it timed out; this says why (refused,
        // unknown host, login refused, starting up...).
        let connecting = PgConnection::connect_with(&self.connect);
        let mut conn = match tokio::time::timeout(self.options.connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(self.problem(&e).unwrap_or_else(|| {
                    format!(
                        "cannot connect to the ledger's database at {}: {e}",
                        self.target
                    )
                }));
            }
            Err(_) => {
                return Err(format!(
                    "no answer from the ledger's database at {} within {:?}",
                    self.target, self.options.connect_timeout
                ));
            }
        };
        let result = self.bounded(read_only(&mut conn)).await;
        let _ = tokio::time::timeout(self.options.connect_timeout, conn.close()).await;
        match result {
            Ok(Ok(false)) => Ok(()),
            Ok(Ok(true)) => Err(self.read_only_reason()),
            Ok(Err(e)) => Err(self
                .problem(&e)
                .unwrap_or_else(|| format!("the ledger's database at {}: {e}", self.target))),
            Err(_) => Err(format!(
                "the ledger's database at {} did not answer within {:?}",
                self.target,
                self.budget()
            )),
        }
    }

    fn read_only_reason(&self) -> String {
        format!(
            "the ledger's database at {} is read-only (a standby?)",
            self.target
        )
    }
}

async fn read_only(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let value: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(&mut *conn)
        .await?;
    Ok(value == "on")
}

/// Checks the database now and then: often while it is in trouble, so that calls resume soon
/// after it comes back, and now and then while it is not, so that health notices an outage even
/// when no call is made.
async fn probe(link: Arc<Link>) {
    loop {
        let in_trouble = link
            .trouble
            .lock()
            .expect("trouble lock poisoned")
            .is_some();
        if !in_trouble {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_HEALTHY) => {}
                _ = link.troubled.notified() => {}
            }
        }
        // In trouble (or just found in trouble): a moment for the database to come back.
        if link
            .trouble
            .lock()
            .expect("trouble lock poisoned")
            .is_some()
        {
            tokio::time::sleep(PROBE_IN_TROUBLE).await;
        }
        match link.check().await {
            Ok(()) => link.clear_trouble(),
            Err(reason) => link.set_trouble(&reason),
        }
    }
}

/// The writer: takes Enqueue calls as they come and commits whatever is waiting in one
/// transaction, so that under load many calls share one commit. If the batch fails, each call is
/// tried again alone, so one call that cannot be recorded fails only its own caller; when the
/// database cannot be used, everyone hears so at once.
async fn write(link: Arc<Link>, mut rx: mpsc::Receiver<AcceptOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        metrics::histogram!(crate::telemetry::BATCH_SIZE).record(batch.len() as f64);
        let ops = std::mem::take(&mut batch);
        let requests: Vec<&NewRequest> = ops.iter().map(|op| &*op.request).collect();
        match link.accept(&requests).await {
            Ok(outcomes) => {
                for (op, outcome) in ops.into_iter().zip(outcomes) {
                    let _ = op.reply.send(Ok(outcome));
                }
            }
            Err(LedgerError::Unavailable(reason)) => {
                for op in ops {
                    let _ = op.reply.send(Err(LedgerError::Unavailable(reason.clone())));
                }
            }
            Err(e) => {
                if ops.len() > 1 {
                    tracing::warn!(error = %e, size = ops.len(), "ledger batch failed; applying its calls one by one");
                }
                for op in ops {
                    let result = link
                        .accept(&[&*op.request])
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "ledger: a call failed and was rolled back");
                    }
                    let _ = op.reply.send(result);
                }
            }
        }
    }
}

/// See Link::budget.
fn budget(options: &PostgresOptions) -> Duration {
    options.statement_timeout + Duration::from_secs(1)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Ledger for PostgresLedger {
    async fn accept(&self, request: NewRequest) -> Result<AcceptOutcome, LedgerError> {
        self.ready()?;
        let sender = self
            .writer
            .lock()
            .expect("writer lock poisoned")
            .clone()
            .ok_or(LedgerError::Closed)?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(AcceptOp {
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        // The writer bounds each batch; this bounds the wait for the batch ahead of ours as well,
        // should that one hang too.
        let bound = 2 * (self.link.options.connect_timeout + self.link.budget());
        match tokio::time::timeout(bound, rx).await {
            Ok(result) => result.map_err(|_| LedgerError::Closed)?,
            Err(_) => Err(self.link.unavailable(format!(
                "the ledger's database at {} did not record the request within {bound:?}; \
                 it may have been recorded: retry with the same request_id",
                self.link.target
            ))),
        }
    }

    async fn list_pending(&self, query: PendingQuery) -> Result<PendingPage, LedgerError> {
        self.ready()?;
        // A page token must never pass a row that commits later. Paging by seq alone is not
        // enough: nextval() hands a value out when the row is inserted, not when its transaction
        // commits, so replica A can take seq 7, replica B seq 8 and commit first; a page ending at
        // 8 hands out the token "after 8", A commits, and row 7 is behind every token given out.
        // Until migration 0008 every accept took delivery_commit_order EXCLUSIVE to its commit,
        // making seq order commit order, and all replicas' accepts waited for each other.
        //
        // Now pages follow (accept_xid, seq), the inserting transaction's id first, and only show
        // rows whose accept_xid is below a watermark W: the oldest accept still in flight when the
        // page is asked for (ACCEPT_WATERMARK). No row below W can appear later, so a token never
        // passes one. Why W holds:
        // - every transaction that inserts deliveries (accept_all, and nothing else) takes
        //   delivery_commit_order in ROW EXCLUSIVE mode before it writes anything, so before it
        //   has an id, and keeps it to its end. ROW EXCLUSIVE does not conflict with itself (and
        //   takes PostgreSQL's per-backend fast path), so accepts no longer wait for each other;
        // - ACCEPT_WATERMARK takes its snapshot, then reads pg_locks: W is the lowest id that is
        //   in flight in the snapshot and held by a holder of that lock, or the snapshot's xmax
        //   if none is. An accept with an id below W (so below xmax) was either done before the
        //   snapshot, or in flight then, so in its in-flight list, and no longer holding the lock
        //   when pg_locks was read: done. Any other has an id at or above xmax;
        // - the page is read in a later statement, so with a later snapshot that sees every one
        //   of those that committed.
        // Unlike xmin, W waits only for accepts, each bounded by the statement budget: another
        // long transaction, such as an operator's idle psql session, hides nothing. (A row that
        // comes back into these states later, as a redriven one, keeps its place, as in SQLite.)
        //
        // A token from before 0008 ("after seq N") resumes at (1, N): rows of that time all have
        // accept_xid 1, in seq order, and every later row comes after them. While replicas of
        // both kinds run side by side in a rollout, a reader of either kind may page past a row
        // the other kind is still accepting (each relies on the other's lock); delivery is not
        // affected, only a ListPending tail that runs across the rollout.
        // Each base condition is a partial index's own, so that the store uses it.
        let base = if super::filters::only_silenced(&query.filters) {
            "state = 'silenced'"
        } else if super::filters::wants_silenced(&query.filters) {
            OPEN_OR_SILENCED
        } else {
            OPEN
        };
        let (xid, seq) = match query.after {
            Some(PageToken::After { seq }) => (1, seq),
            Some(PageToken::AfterAccept { xid, seq }) => (xid, seq),
            None => (0, -1),
        };
        // One row more than asked tells whether another page exists.
        let limit = query.limit.max(1);
        let mut conn = self.link.acquire().await?;
        let work = async {
            // Its own statement, before the page's: see above.
            let watermark: i64 = sqlx::query_scalar(ACCEPT_WATERMARK)
                .fetch_one(&mut *conn)
                .await?;
            let mut sql = QueryBuilder::<Postgres>::new(format!(
                "SELECT {COLUMNS}, accept_xid::text::bigint AS accept_order FROM deliveries \
                 WHERE {base} AND accept_xid < "
            ));
            sql.push_bind(watermark.to_string())
                .push("::text::xid8 AND (accept_xid, seq) > (")
                .push_bind(xid.to_string())
                .push("::text::xid8, ")
                .push_bind(seq)
                .push(")");
            push_filters(&mut sql, &query.filters);
            sql.push(" ORDER BY accept_xid, seq LIMIT ")
                .push_bind(i64::from(limit) + 1);
            sql.build().fetch_all(&mut *conn).await
        };
        let result = self.link.bounded(work).await;
        let rows = self.link.settle(conn, result)?;
        let deliveries = rows
            .iter()
            .map(|row| {
                let (seq, delivery) = decode_listed(row)?;
                let xid: i64 = row.try_get("accept_order")?;
                Ok((PageToken::AfterAccept { xid, seq }, delivery))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(page_token::page(deliveries, limit))
    }

    async fn recently_delivered(&self, query: RecentQuery) -> Result<RecentPage, LedgerError> {
        self.ready()?;
        // Plan (EXPLAIN ANALYZE, 250k events, custom and generic plans alike): Limit ->
        // Incremental Sort (presorted key e.at) -> Nested Loop (Anti Join) over Index Scan
        // Backward using delivery_events_by_time (at >= since [AND at <= cursor]), filter kind;
        // deliveries by deliveries_id_key; NOT EXISTS by delivery_events_by_delivery
        // (delivery_id, seq > e.seq). The sort only orders events of the same millisecond by
        // seq, and the scan stops once LIMIT rows are out.
        //
        // Paging is keyset on (at, seq) of the event, newest first: no row is shown twice in
        // one pass, and none committed when its page was read is skipped. Unlike ListPending it
        // takes no commit-order lock, so the order is by `at` (the recording transaction's start)
        // and a row can commit after a page covering its time was read: it is then missing from
        // this pass (the next load of the list shows it). Events are recorded by one statement
        // each, within the statement timeout, so only paging through the last few seconds can
        // meet this; a view of recent history can afford that, the writers' hot path could not
        // afford the lock.
        let mut sql = QueryBuilder::<Postgres>::new(format!(
            "SELECT e.seq AS event_seq, e.at AS delivered_at, {JOINED_COLUMNS} \
             FROM delivery_events AS e JOIN deliveries AS d ON d.id = e.delivery_id \
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
        let mut conn = self.link.acquire().await?;
        let result = self.link.bounded(sql.build().fetch_all(&mut *conn)).await;
        let rows = self.link.settle(conn, result)?;
        let deliveries = rows
            .iter()
            .map(|row| {
                let cursor = DeliveredCursor {
                    at: row.try_get("delivered_at")?,
                    seq: row.try_get("event_seq")?,
                };
                Ok((cursor, decode_listed(row)?.1))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(page_token::recent_page(deliveries, limit))
    }

    async fn lease_due(
        &self,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<LeasedDelivery>, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self.link.bounded(lease(&mut conn, max, lease_for)).await;
        self.link.settle(conn, result)
    }

    async fn record(&self, outcomes: Vec<(DeliveryRef, Outcome)>) -> Result<Recorded, LedgerError> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        self.ready()?;
        let (silenced, sent): (Vec<_>, Vec<_>) = outcomes
            .iter()
            .cloned()
            .partition(|(_, o)| matches!(o, Outcome::Silenced { .. }));
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(async {
                let mut applied = record(&mut conn, &sent).await?;
                let (more, unsilenced) = record_silenced(&mut conn, &silenced).await?;
                applied.extend(more);
                Ok((applied, unsilenced))
            })
            .await;
        let (applied, unsilenced) = self.link.settle(conn, result)?;
        let stale: Vec<String> = outcomes
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
        Ok(Recorded {
            stale,
            unsilenced: outcomes
                .iter()
                .filter(|(d, _)| unsilenced.contains(&d.id))
                .map(|(d, _)| d.id.clone())
                .collect(),
        })
    }

    async fn create_silence(
        &self,
        silence: NewSilence,
        max_open: u32,
    ) -> Result<CreatedSilence, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(create_silence(&mut conn, &silence, max_open))
            .await;
        self.link.settle(conn, result)
    }

    async fn list_silences(&self, include_expired: bool) -> Result<Vec<Silence>, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences \
                     WHERE ends_at > ledger_now() OR $1 ORDER BY created_at, id"
                )))
                .bind(include_expired)
                .fetch_all(&mut *conn),
            )
            .await;
        let rows = self.link.settle(conn, result)?;
        Ok(rows.iter().map(decode_silence).collect::<Result<_, _>>()?)
    }

    async fn expire_silence(&self, id: &str) -> Result<Option<Silence>, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self.link.bounded(expire_silence(&mut conn, id)).await;
        self.link.settle(conn, result)
    }

    async fn settle_silences(&self, retention: Duration) -> Result<SettledSilences, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(async {
                let mut tx = conn.begin().await?;
                let released = settle_ended(&mut tx).await?;
                let pruned = sqlx::query(
                    "DELETE FROM silences WHERE settled AND ends_at <= ledger_now() - $1",
                )
                .bind(millis(retention))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(SettledSilences { released, pruned })
            })
            .await;
        self.link.settle(conn, result)
    }

    async fn write_expectation(&self, write: ExpectationWrite) -> Result<bool, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(async {
                let changed = match &write {
                    ExpectationWrite::Watch(launch_plans) => {
                        sqlx::query(
                            "INSERT INTO expectations (launch_plan, watched_since, state, updated_at) \
                             SELECT lp, ledger_now(), 'ok', ledger_now() FROM UNNEST($1::text[]) AS lp \
                             ON CONFLICT (launch_plan) DO NOTHING",
                        )
                        .bind(launch_plans)
                        .execute(&mut *conn)
                        .await?
                    }
                    ExpectationWrite::Success(lp) => {
                        sqlx::query(
                            "UPDATE expectations SET last_success_at = ledger_now(), \
                             updated_at = ledger_now(), \
                             state = CASE state WHEN 'missed' THEN 'recovering' ELSE state END \
                             WHERE launch_plan = $1",
                        )
                        .bind(lp)
                        .execute(&mut *conn)
                        .await?
                    }
                    ExpectationWrite::Transition {
                        launch_plan,
                        from,
                        to,
                        missed_deadline,
                    } => {
                        sqlx::query(
                            "UPDATE expectations SET state = $3, updated_at = ledger_now(), \
                             missed_deadline = COALESCE($4, missed_deadline) \
                             WHERE launch_plan = $1 AND state = $2",
                        )
                        .bind(launch_plan)
                        .bind(from.as_str())
                        .bind(to.as_str())
                        .bind(missed_deadline)
                        .execute(&mut *conn)
                        .await?
                    }
                };
                Ok(changed.rows_affected() > 0)
            })
            .await;
        self.link.settle(conn, result)
    }

    async fn expectations(&self) -> Result<Vec<ExpectationRow>, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(
                sqlx::query_as::<_, (String, i64, Option<i64>, String, Option<i64>)>(
                    "SELECT launch_plan, watched_since, last_success_at, state, missed_deadline \
                     FROM expectations ORDER BY launch_plan",
                )
                .fetch_all(&mut *conn),
            )
            .await;
        let rows = self.link.settle(conn, result)?;
        Ok(rows
            .into_iter()
            .map(
                |(launch_plan, watched_since, last_success_at, state, missed_deadline)| {
                    ExpectationRow {
                        launch_plan,
                        watched_since,
                        last_success_at,
                        state: ExpectationState::parse(&state).unwrap_or(ExpectationState::Ok),
                        missed_deadline,
                    }
                },
            )
            .collect())
    }

    async fn release(&self, delivery: &DeliveryRef, delay: Duration) -> Result<(), LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        // Handed back for another replica to send now (a replica stopping): tell them, in the
        // same statement, so that they need not wait for their poll.
        let notify = if delay.is_zero() {
            super::wakeups::NOTIFY_RETURNING
        } else {
            ""
        };
        let result = self
            .link
            .bounded(
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, \
                     next_attempt_at = ledger_now() + $1, updated_at = ledger_now() \
                     WHERE id = $2 AND lease_token = $3{notify}"
                )))
                .bind(millis(delay))
                .bind(&delivery.id)
                .bind(delivery.lease.0)
                .execute(&mut *conn),
            )
            .await;
        self.link.settle(conn, result).map(|_| ())
    }

    async fn next_due(&self) -> Result<Option<Duration>, LedgerError> {
        self.ready()?;
        // A leased row is due again when its lease runs out: the replica that holds it may have
        // died. The two halves follow the deliveries_due and deliveries_leased indexes.
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(
                sqlx::query_scalar::<_, Option<i64>>(
                    "SELECT LEAST( \
                         (SELECT MIN(next_attempt_at) FROM deliveries \
                          WHERE state IN ('pending', 'retrying') AND lease_until IS NULL), \
                         (SELECT MIN(GREATEST(next_attempt_at, lease_until)) FROM deliveries \
                          WHERE lease_until IS NOT NULL AND state IN ('pending', 'retrying')) \
                     ) - ledger_now()",
                )
                .fetch_one(&mut *conn),
            )
            .await;
        let until = self.link.settle(conn, result)?;
        Ok(until.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    async fn stats(&self) -> Result<LedgerStats, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        // Counts and the oldest age in one round trip; both follow the deliveries_open index.
        let result = self
            .link
            .bounded(
                // A deadline's alert waiting for its time is not late: left out until due.
                sqlx::query_as::<_, (i64, i64, i64, Option<i64>)>(sqlx::AssertSqlSafe(format!(
                    "SELECT \
                         COUNT(*) FILTER (WHERE state = 'pending'), \
                         COUNT(*) FILTER (WHERE state = 'retrying'), \
                         COUNT(*) FILTER (WHERE state = 'dead'), \
                         (SELECT ledger_now() - created_at FROM deliveries \
                          WHERE state IN ('pending', 'retrying') \
                            AND NOT (phase IN {ARMING_PHASES} AND attempts = 0 \
                                     AND next_attempt_at > ledger_now()) \
                          ORDER BY accept_xid, seq LIMIT 1) \
                     FROM deliveries WHERE {OPEN}"
                )))
                .fetch_one(&mut *conn),
            )
            .await;
        let (pending, retrying, dead, oldest) = self.link.settle(conn, result)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(LedgerStats {
            pending: count(pending),
            retrying: count(retrying),
            dead: count(dead),
            oldest_pending_age: oldest.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        })
    }

    async fn act(
        &self,
        action: OperatorAction,
        selection: Selection,
        note: String,
    ) -> Result<Acted, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(act(&mut conn, action, &selection, &note))
            .await;
        self.link.settle(conn, result)
    }

    async fn activity(
        &self,
        since: Millis,
        bucket: Duration,
    ) -> Result<Vec<ActivityBucket>, LedgerError> {
        self.ready()?;
        let width = (bucket.as_millis() as i64).max(1);
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(
                sqlx::query_as::<_, (i64, i64, i64)>(
                    "SELECT (at - $1) / $2 AS b, \
                            COUNT(*) FILTER (WHERE kind = 'delivered'), \
                            COUNT(*) FILTER (WHERE kind IN ('failed', 'dead')) \
                     FROM delivery_events WHERE at >= $1 GROUP BY b ORDER BY b",
                )
                .bind(since)
                .bind(width)
                .fetch_all(&mut *conn),
            )
            .await;
        let rows = self.link.settle(conn, result)?;
        Ok(rows
            .into_iter()
            .map(|(b, delivered, failed)| ActivityBucket {
                start: since + b * width,
                delivered: delivered.max(0) as u64,
                failed: failed.max(0) as u64,
            })
            .filter(|b| b.delivered + b.failed > 0)
            .collect())
    }

    async fn request_context(&self, request_id: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self
            .link
            .bounded(
                sqlx::query_scalar::<_, Vec<u8>>(
                    "SELECT execution FROM requests WHERE request_id = $1",
                )
                .bind(request_id)
                .fetch_optional(&mut *conn),
            )
            .await;
        self.link.settle(conn, result)
    }

    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<(StoredDelivery, Vec<HistoryEvent>)>, LedgerError> {
        self.ready()?;
        let mut conn = self.link.acquire().await?;
        let result = self.link.bounded(get(&mut conn, id)).await;
        self.link.settle(conn, result)
    }

    fn trouble(&self) -> Option<String> {
        self.link
            .trouble
            .lock()
            .expect("trouble lock poisoned")
            .clone()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the last sender lets the writer finish what is queued, then stop; each of its
        // batches is bounded, so this is too.
        self.writer.lock().expect("writer lock poisoned").take();
        let task = self
            .writer_task
            .lock()
            .expect("writer lock poisoned")
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let probe = self.probe_task.lock().expect("probe lock poisoned").take();
        if let Some(probe) = probe {
            probe.abort();
        }
        let _ =
            tokio::time::timeout(self.link.options.connect_timeout, self.link.pool.close()).await;
    }
}

/// Records a batch of requests and their deliveries in one transaction.
/// The deadline alerts of these requests' executions that have not gone out (pending, never
/// tried, not leased): disarmed, each with an event naming the request that ended them. One that
/// a replica is sending right now is left to go; the terminal phase is sent after it.
async fn disarm_deadlines(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    requests: &[&NewRequest],
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&NewRequest) -> &str| requests.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH ended AS ( \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                 AS e(project, domain, name, org, request_id)), \
         disarmed AS ( \
             UPDATE deliveries AS d SET state = 'disarmed', next_attempt_at = NULL, \
                 updated_at = ledger_now() \
             FROM ended AS e \
             WHERE d.project = e.project AND d.domain = e.domain AND d.name = e.name \
               AND d.org = e.org AND d.phase IN {ARMING_PHASES} AND d.state IN ('pending', 'silenced') \
               AND d.attempts = 0 \
               AND (d.lease_until IS NULL OR d.lease_until <= ledger_now()) \
             RETURNING d.id, e.request_id) \
         INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
         SELECT id, ledger_now(), 'disarmed', 0, \
                'disarmed: the execution reached a terminal phase first (request ' \
                    || request_id || ')' \
         FROM disarmed"
    )))
    .bind(column(|r| &r.execution_key.project))
    .bind(column(|r| &r.execution_key.domain))
    .bind(column(|r| &r.execution_key.name))
    .bind(column(|r| &r.execution_key.org))
    .bind(column(|r| &r.request_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a batch of Enqueue calls in one transaction: what each call came to, and whether it
/// committed work due now, for the other replicas to hear of.
async fn accept_all(
    conn: &mut PgConnection,
    requests: &[&NewRequest],
) -> Result<(Vec<AcceptOutcome>, bool), sqlx::Error> {
    if requests.is_empty() {
        return Ok((Vec::new(), false));
    }
    // Only the first call with a given request_id in this batch may insert it; later ones are
    // resolved against it, and ids recorded before against what is stored.
    let mut first: HashMap<&str, &NewRequest> = HashMap::new();
    let candidates: Vec<&NewRequest> = requests
        .iter()
        .copied()
        .filter(|r| first.insert(r.request_id.as_str(), r).is_none())
        .collect();
    // The commit-order lock comes first, before this transaction writes and so has an id, and is
    // held to its end: ListPending's watermark relies on both (see list_pending). ROW EXCLUSIVE:
    // accepts do not wait for each other. One simple query, so no extra round trip.
    let mut tx = conn
        .begin_with("BEGIN; LOCK TABLE delivery_commit_order IN ROW EXCLUSIVE MODE")
        .await?;
    // Sorted by request_id, so that two batches carrying the same ids (two replicas given the same
    // retried request) wait for each other in one order and never deadlock. ON CONFLICT waits for
    // a concurrent insert of the same id to end, then does nothing if it committed.
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO requests (request_id, fingerprint, unmatched, created_at, execution) \
         SELECT request_id, fingerprint, unmatched, ledger_now(), execution \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bytea[]) \
             AS r(request_id, fingerprint, unmatched, execution) \
         ORDER BY request_id \
         ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
    )
    .bind(
        candidates
            .iter()
            .map(|r| &*r.request_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        candidates
            .iter()
            .map(|r| &*r.fingerprint)
            .collect::<Vec<_>>(),
    )
    .bind(
        candidates
            .iter()
            .map(|r| i64::from(r.unmatched))
            .collect::<Vec<_>>(),
    )
    .bind(candidates.iter().map(|r| &*r.execution).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    // Requests recorded before, here or by another replica: what they produced.
    let earlier: Vec<&str> = candidates
        .iter()
        .map(|r| r.request_id.as_str())
        .filter(|id| !inserted.contains(*id))
        .collect();
    let mut recorded: HashMap<String, (String, i64, Vec<String>)> = HashMap::new();
    if !earlier.is_empty() {
        let rows = sqlx::query(
            "SELECT r.request_id, r.fingerprint, r.unmatched, \
                    array_remove(array_agg(d.id ORDER BY d.notification_index), NULL) \
             FROM requests AS r LEFT JOIN deliveries AS d \
                 ON d.request_id = r.request_id AND d.digest_members IS NULL \
             WHERE r.request_id = ANY($1) GROUP BY r.request_id",
        )
        .bind(&earlier)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            recorded.insert(
                row.try_get(0)?,
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            );
        }
    }

    let (mut grouped, new): (Vec<(&NewRequest, &NewDelivery)>, Vec<_>) = candidates
        .iter()
        .filter(|r| inserted.contains(&r.request_id))
        .flat_map(|r| r.deliveries.iter().map(move |d| (*r, d)))
        .partition(|(r, d)| d.group.is_some() && r.due_in.is_zero());
    if !new.is_empty() || !grouped.is_empty() {
        let payloads: Vec<String> = new.iter().map(|(_, d)| d.payload.encode()).collect();
        // WITH ORDINALITY / ORDER BY: seq follows the batch's order, and so ListPending's.
        sqlx::query(
            "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, \
                 org, channel, phase, state, attempts, next_attempt_at, created_at, updated_at, \
                 payload) \
             SELECT id, request_id, notification_index, project, domain, name, org, channel, \
                 phase, 'pending', 0, ledger_now() + due_in, ledger_now(), ledger_now(), payload \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::int[], $10::text[], $11::bigint[]) \
                 WITH ORDINALITY \
                 AS d(id, request_id, notification_index, project, domain, name, org, channel, \
                      phase, payload, due_in, n) \
             ORDER BY n",
        )
        .bind(new.iter().map(|(_, d)| &*d.id).collect::<Vec<_>>())
        .bind(new.iter().map(|(r, _)| &*r.request_id).collect::<Vec<_>>())
        .bind(
            new.iter()
                .map(|(_, d)| i64::from(d.notification_index))
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(r, _)| &*r.execution_key.project)
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(r, _)| &*r.execution_key.domain)
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(r, _)| &*r.execution_key.name)
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(r, _)| &*r.execution_key.org)
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(_, d)| d.payload.channel.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(new.iter().map(|(_, d)| d.phase).collect::<Vec<_>>())
        .bind(&payloads)
        .bind(
            new.iter()
                .map(|(r, _)| millis(r.due_in))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        // In key order, so that two batches upserting the same digests lock them in one order.
        grouped.sort_by(|a, b| {
            a.1.group
                .as_ref()
                .map(|g| &g.key)
                .cmp(&b.1.group.as_ref().map(|g| &g.key))
        });
        for (r, d) in grouped {
            join_group(&mut tx, r, d).await?;
        }
    }
    let disarming: Vec<&NewRequest> = candidates
        .iter()
        .copied()
        .filter(|r| r.disarms_deadlines && inserted.contains(&r.request_id))
        .collect();
    if !disarming.is_empty() {
        disarm_deadlines(&mut tx, &disarming).await?;
    }
    tx.commit().await?;
    // Other replicas' idle workers lease it now rather than at their next poll; the writer
    // announces it, after this commit (wakeups::Announcer). Work due later (a deadline, a digest)
    // waits for the poll.
    let announce = new.iter().any(|(r, _)| r.due_in.is_zero());

    let mut outcomes = Vec::with_capacity(requests.len());
    let mut claimed = HashSet::new();
    for r in requests {
        let id = r.request_id.as_str();
        // The call that inserted a request_id owns it; every other call with that id (in this
        // batch or later) is a duplicate or a conflict.
        outcomes.push(if inserted.contains(id) {
            if claimed.insert(id) {
                AcceptOutcome::Accepted {
                    delivery_ids: r.deliveries.iter().map(|d| d.id.clone()).collect(),
                }
            } else {
                let owner = first[id];
                if owner.fingerprint != r.fingerprint {
                    AcceptOutcome::Conflict
                } else {
                    AcceptOutcome::Duplicate {
                        delivery_ids: owner.deliveries.iter().map(|d| d.id.clone()).collect(),
                        unmatched: owner.unmatched,
                    }
                }
            }
        } else {
            // Not inserted means a committed row with this id exists, and rows are never deleted.
            let (fingerprint, unmatched, delivery_ids) =
                recorded.get(id).ok_or(sqlx::Error::RowNotFound)?;
            if *fingerprint != r.fingerprint {
                AcceptOutcome::Conflict
            } else {
                AcceptOutcome::Duplicate {
                    delivery_ids: delivery_ids.clone(),
                    unmatched: u32::try_from(*unmatched).unwrap_or(0),
                }
            }
        });
    }
    Ok((outcomes, announce))
}

/// Records `d` as a member of its group: it joins the group's open digest, or opens one (due
/// `wait` from now, and no sooner than `interval` after the group's previous digest was due).
/// The upsert's row lock on the digest is held to the commit, and a lease skips locked rows, so
/// no lease reads a digest's members while one is joining. The digest that takes its last
/// member is closed; the next member opens another.
async fn join_group(
    conn: &mut PgConnection,
    r: &NewRequest,
    d: &NewDelivery,
) -> Result<(), sqlx::Error> {
    let Some(group) = &d.group else {
        return Ok(());
    };
    let digest = Payload {
        channel: d.payload.channel,
        recipients: d.payload.recipients.clone(),
        content: Content::Digest,
    };
    let digest_id: String = sqlx::query_scalar(
        "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
             channel, phase, state, attempts, next_attempt_at, created_at, updated_at, payload, \
             group_key, digest_open, digest_members) \
         SELECT $1, $2, $3, $4, $5, '', $6, $7, $8, 'pending', 0, \
             GREATEST(ledger_now() + $9, \
                 COALESCE((SELECT MAX(created_at) FROM deliveries \
                           WHERE group_key = $11 AND digest_members IS NOT NULL) + $9 + $10, 0)), \
             ledger_now(), ledger_now(), $12, $11, 1 < $13, 1 \
         ON CONFLICT (group_key) WHERE digest_open DO UPDATE SET \
             digest_members = deliveries.digest_members + 1, \
             digest_open = deliveries.digest_members + 1 < $13 \
         RETURNING id",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&r.request_id)
    .bind(i64::from(d.notification_index))
    .bind(&r.execution_key.project)
    .bind(&r.execution_key.domain)
    .bind(&r.execution_key.org)
    .bind(d.payload.channel.as_str())
    .bind(d.phase)
    .bind(millis(group.wait))
    .bind(millis(group.interval))
    .bind(&group.key)
    .bind(digest.encode())
    .bind(i64::from(group.max_members))
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (id, request_id, notification_index, project, domain, name, org, \
             channel, phase, state, attempts, next_attempt_at, created_at, updated_at, payload, \
             group_key, digest_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'grouped', 0, NULL, ledger_now(), \
             ledger_now(), $10, $11, $12)",
    )
    .bind(&d.id)
    .bind(&r.request_id)
    .bind(i64::from(d.notification_index))
    .bind(&r.execution_key.project)
    .bind(&r.execution_key.domain)
    .bind(&r.execution_key.name)
    .bind(&r.execution_key.org)
    .bind(d.payload.channel.as_str())
    .bind(d.phase)
    .bind(d.payload.encode())
    .bind(&group.key)
    .bind(&digest_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A leased digest's members with their requests' execution contexts, oldest first. They are
/// fixed: the lease closed the digest, and no join was in flight when it was locked.
async fn digest_members(
    conn: &mut PgConnection,
    digest_id: &str,
) -> Result<Vec<DigestMember>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.id, d.project, d.domain, d.name, d.org, d.phase, r.execution \
         FROM deliveries d JOIN requests r ON r.request_id = d.request_id \
         WHERE d.digest_id = $1 ORDER BY d.seq",
    )
    .bind(digest_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DigestMember {
                id: row.try_get("id")?,
                execution: execution_key(row)?,
                phase: row.try_get("phase")?,
                context: Ok(Arc::from(row.try_get::<Vec<u8>, _>("execution")?)),
            })
        })
        .collect()
}

/// Leases up to `max` due deliveries in one statement. SKIP LOCKED: a row another replica is
/// leasing (or recording) right now is left to it, never waited for nor leased twice; a row it
/// leased and committed no longer matches (its lease_until is in the future) when this statement
/// locks it. A row whose lease ran out matches again: its replica died or lost it, and the new
/// lease gets a fresh token, so the old holder's outcome is refused. MATERIALIZED: the locking
/// subquery runs exactly once; inlined into a join, a rescan could lock and lease more than `max`.
async fn lease(
    conn: &mut PgConnection,
    max: usize,
    lease_for: Duration,
) -> Result<Vec<LeasedDelivery>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH due AS MATERIALIZED ( \
             SELECT seq FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ledger_now() \
               AND (lease_until IS NULL OR lease_until <= ledger_now()) \
             ORDER BY next_attempt_at, seq \
             LIMIT $1 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE deliveries AS d \
         SET lease_until = ledger_now() + $2, lease_token = nextval('lease_tokens'), \
             leases = d.leases + 1, digest_open = NULL \
         FROM due, requests AS r \
         WHERE d.seq = due.seq AND r.request_id = d.request_id \
         RETURNING d.seq, d.id, d.request_id, d.project, d.domain, d.name, d.org, d.leases, \
                   d.lease_token, d.payload, r.execution, ledger_now() - d.created_at AS age",
    )
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .bind(millis(lease_for))
    .fetch_all(&mut *conn)
    .await?;
    // Deliveries of one request share one copy of its context.
    let mut contexts: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut leased = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let request_id: String = row.try_get("request_id")?;
        let context = match contexts.get(&request_id) {
            Some(context) => context.clone(),
            None => {
                let context: Arc<[u8]> = Arc::from(row.try_get::<Vec<u8>, _>("execution")?);
                contexts.insert(request_id.clone(), context.clone());
                context
            }
        };
        let payload: String = row.try_get("payload")?;
        // A payload this binary cannot read (written by a newer version) must not stop every
        // other lease: it travels as an error, and the worker records it dead.
        let content = Payload::decode(&payload)
            .map(|(payload, own)| (payload, own.map(Arc::from).unwrap_or(context)));
        leased.push((
            seq,
            LeasedDelivery {
                delivery: DeliveryRef {
                    id: row.try_get("id")?,
                    request_id,
                    attempt: u32::try_from(row.try_get::<i64, _>("leases")?).unwrap_or(u32::MAX),
                    lease: LeaseToken(row.try_get("lease_token")?),
                },
                execution: execution_key(row)?,
                content,
                members: Vec::new(),
                accepted_at: instant_of_age(row.try_get("age")?),
            },
        ));
    }
    for (_, d) in &mut leased {
        if matches!(
            &d.content,
            Ok((
                Payload {
                    content: Content::Digest,
                    ..
                },
                _
            ))
        ) {
            d.members = digest_members(&mut *conn, &d.delivery.id).await?;
        }
    }
    leased.sort_by_key(|(seq, _)| *seq);
    Ok(leased.into_iter().map(|(_, d)| d).collect())
}

/// Applies the outcomes whose lease token is still current, each with an event in its history, in
/// one statement; returns the ids applied.
async fn record(
    conn: &mut PgConnection,
    outcomes: &[(DeliveryRef, Outcome)],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut tokens = Vec::with_capacity(outcomes.len());
    let mut states = Vec::with_capacity(outcomes.len());
    let mut delays = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::with_capacity(outcomes.len());
    for (delivery, outcome) in outcomes {
        let (state, delay, error) = match outcome {
            Outcome::Delivered => (State::Delivered, None, ""),
            Outcome::Retry { delay, error } => {
                (State::Retrying, Some(millis(*delay)), error.as_str())
            }
            Outcome::Dead { error } => (State::Dead, None, error.as_str()),
            Outcome::Silenced { .. } => continue,
        };
        ids.push(delivery.id.as_str());
        tokens.push(delivery.lease.0);
        states.push(state.as_str());
        delays.push(delay);
        errors.push(error);
    }
    let applied: Vec<String> = sqlx::query_scalar(
        "WITH outcome AS ( \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[]) \
                 AS o(id, lease_token, state, delay, error)), \
         applied AS ( \
             UPDATE deliveries AS d \
             SET state = o.state, attempts = d.attempts + 1, \
                 next_attempt_at = ledger_now() + o.delay, last_error = o.error, \
                 lease_until = NULL, lease_token = NULL, updated_at = ledger_now() \
             FROM outcome AS o \
             WHERE d.id = o.id AND d.lease_token = o.lease_token \
             RETURNING d.id, d.attempts, d.state, d.last_error), \
         members AS ( \
             UPDATE deliveries AS m SET state = 'delivered', updated_at = ledger_now() \
             FROM applied AS a \
             WHERE a.state = 'delivered' AND m.digest_id = a.id \
               AND m.state IN ('grouped', 'silenced') \
             RETURNING m.id, m.attempts, m.digest_id), \
         member_events AS ( \
             INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
             SELECT id, ledger_now(), 'delivered', attempts, 'sent in digest ' || digest_id \
             FROM members), \
         events AS ( \
             INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
             SELECT id, ledger_now(), \
                    CASE state WHEN 'delivered' THEN 'delivered' \
                               WHEN 'retrying' THEN 'failed' ELSE 'dead' END, \
                    attempts, last_error \
             FROM applied) \
         SELECT id FROM applied",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(&states)
    .bind(&delays)
    .bind(&errors)
    .fetch_all(&mut *conn)
    .await?;
    Ok(applied.into_iter().collect())
}

/// Records silenced outcomes, each only while its silence is active by the database's clock. The
/// silence row is read FOR SHARE, so an expiry (or the settling of its end) that updates it
/// waits for this statement, and its release of held deliveries then sees this one. Returns the
/// ids applied, and those whose silence was over (their leases given back, due again in a
/// second, so that a replica's copy of the silences catches up without a tight loop).
async fn record_silenced(
    conn: &mut PgConnection,
    outcomes: &[(DeliveryRef, Outcome)],
) -> Result<(HashSet<String>, HashSet<String>), sqlx::Error> {
    let mut applied = HashSet::new();
    let mut unsilenced = HashSet::new();
    for (delivery, outcome) in outcomes {
        let Outcome::Silenced { silence_id } = outcome else {
            continue;
        };
        let silenced: i64 = sqlx::query_scalar(
            "WITH s AS ( \
                 UPDATE deliveries SET state = 'silenced', silence_id = $1, \
                     next_attempt_at = NULL, last_error = 'silenced by silence ' || $1, \
                     lease_until = NULL, lease_token = NULL, updated_at = ledger_now() \
                 WHERE id = $2 AND lease_token = $3 AND EXISTS ( \
                     SELECT 1 FROM silences WHERE id = $1 AND starts_at <= ledger_now() \
                       AND ends_at > ledger_now() FOR SHARE) \
                 RETURNING id, attempts), \
             held AS ( \
                 UPDATE deliveries AS m SET state = 'silenced', silence_id = $1, \
                     updated_at = ledger_now() \
                 FROM s WHERE m.digest_id = s.id AND m.state = 'grouped' \
                 RETURNING m.id, m.attempts, m.digest_id), \
             ev AS ( \
                 INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
                 SELECT id, ledger_now(), 'silenced', attempts, $1 FROM s \
                 UNION ALL \
                 SELECT id, ledger_now(), 'silenced', attempts, \
                        $1 || ' (with digest ' || digest_id || ')' FROM held) \
             SELECT COUNT(*) FROM s",
        )
        .bind(silence_id)
        .bind(&delivery.id)
        .bind(delivery.lease.0)
        .fetch_one(&mut *conn)
        .await?;
        if silenced > 0 {
            applied.insert(delivery.id.clone());
            continue;
        }
        let given_back = sqlx::query(
            "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, \
             next_attempt_at = ledger_now() + 1000, updated_at = ledger_now() \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(&delivery.id)
        .bind(delivery.lease.0)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if given_back > 0 {
            applied.insert(delivery.id.clone());
            unsilenced.insert(delivery.id.clone());
        }
    }
    Ok((applied, unsilenced))
}

fn decode_silence(row: &PgRow) -> Result<Silence, sqlx::Error> {
    let (starts_at, ends_at, now) = (
        row.try_get("starts_at")?,
        row.try_get("ends_at")?,
        row.try_get("now")?,
    );
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
}

/// The bound on silences not yet ended holds across replicas: creators take turns on the table.
async fn create_silence(
    conn: &mut PgConnection,
    silence: &NewSilence,
    max_open: u32,
) -> Result<CreatedSilence, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("LOCK TABLE silences IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let open: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM silences WHERE ends_at > ledger_now()")
            .fetch_one(&mut *tx)
            .await?;
    if open >= i64::from(max_open) {
        return Ok(CreatedSilence::TooMany(open.max(0) as u64));
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO silences (id, matcher, starts_at, ends_at, created_by, comment, \
         deliver_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, ledger_now()) \
         RETURNING {SILENCE_COLUMNS}"
    )))
    .bind(&silence.id)
    .bind(&silence.matcher)
    .bind(silence.starts_at)
    .bind(silence.ends_at)
    .bind(&silence.created_by)
    .bind(&silence.comment)
    .bind(silence.deliver_after)
    .fetch_one(&mut *tx)
    .await?;
    let created = decode_silence(&row)?;
    tx.commit().await?;
    Ok(CreatedSilence::Created(created))
}

async fn expire_silence(conn: &mut PgConnection, id: &str) -> Result<Option<Silence>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE silences SET ends_at = ledger_now() WHERE id = $1 AND ends_at > ledger_now()",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    settle_ended(&mut tx).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let silence = row.as_ref().map(decode_silence).transpose()?;
    tx.commit().await?;
    Ok(silence)
}

/// Handles the end of each silence that ended and was not handled yet, once across replicas
/// (the first UPDATE claims it): with deliver_after, its held deliveries are pending again. The
/// deliveries are changed by a second statement, whose snapshot sees every silenced outcome that
/// committed while the first waited for its FOR SHARE lock.
async fn settle_ended(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let ended: Vec<String> = sqlx::query_scalar::<_, Option<String>>(
        "UPDATE silences SET settled = TRUE WHERE NOT settled AND ends_at <= ledger_now() \
         RETURNING CASE WHEN deliver_after THEN id END",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .flatten()
    .collect();
    if ended.is_empty() {
        return Ok(0);
    }
    // The attempt count a sender is told restarts from the recorded attempts: a silenced lease
    // was no attempt.
    let released: i64 = sqlx::query_scalar(
        "WITH released AS ( \
             UPDATE deliveries SET state = 'pending', next_attempt_at = ledger_now(), \
                 leases = attempts, last_error = '', updated_at = ledger_now() \
             WHERE state = 'silenced' AND silence_id = ANY($1) AND digest_id IS NULL \
             RETURNING id, attempts, silence_id), \
         ev AS ( \
             INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
             SELECT id, ledger_now(), 'unsilenced', attempts, \
                    'silence ' || silence_id || ' ended; sending (deliver_after)' FROM released) \
         SELECT COUNT(*) FROM released",
    )
    .bind(&ended)
    .fetch_one(&mut *conn)
    .await?;
    Ok(released.max(0) as u64)
}

/// Redrive or discard. Only dead rows are locked and changed, and no lease or outcome ever touches
/// a dead row, so this never waits for a worker; two operators acting on the same rows wait for
/// each other, and the second finds them no longer dead.
async fn act(
    conn: &mut PgConnection,
    action: OperatorAction,
    selection: &Selection,
    note: &str,
) -> Result<Acted, sqlx::Error> {
    let (set, kind) = match action {
        // A fresh budget: the attempt count restarts; the history keeps the old attempts.
        OperatorAction::Redrive => (
            "state = 'pending', attempts = 0, leases = 0, last_error = '', lease_until = NULL, \
             lease_token = NULL, next_attempt_at = ledger_now(), updated_at = ledger_now()",
            EventKind::Redriven,
        ),
        OperatorAction::Discard => (
            "state = 'discarded', next_attempt_at = NULL, updated_at = ledger_now()",
            EventKind::Discarded,
        ),
    };
    // A discarded digest's members are discarded with it, in the same statement.
    let members = match action {
        OperatorAction::Discard => {
            "members AS ( \
                 UPDATE deliveries AS m SET state = 'discarded', updated_at = ledger_now() \
                 FROM changed WHERE m.digest_id = changed.id \
                   AND m.state IN ('grouped', 'silenced') \
                 RETURNING m.id, m.attempts, m.digest_id), \
             member_events AS ( \
                 INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
                 SELECT id, ledger_now(), 'discarded', attempts, 'with digest ' || digest_id \
                 FROM members), "
        }
        OperatorAction::Redrive => "",
    };
    // `old` is read under the lock, so the event carries the attempts the delivery died with.
    let change = format!(
        "), changed AS ( \
             UPDATE deliveries AS d SET {set} FROM old WHERE d.seq = old.seq \
             RETURNING d.seq, d.id, old.attempts), {members}\
         events AS ( \
             INSERT INTO delivery_events (delivery_id, at, kind, attempts, detail) \
             SELECT id, ledger_now(), '{}', attempts, ",
        kind.as_str()
    );
    let mut acted = Acted::default();
    match selection {
        Selection::Ids(ids) => {
            let mut seen = HashSet::new();
            let ids: Vec<&str> = ids
                .iter()
                .map(String::as_str)
                .filter(|id| seen.insert(*id))
                .collect();
            if ids.is_empty() {
                return Ok(acted);
            }
            let mut sql = QueryBuilder::<Postgres>::new(
                "WITH old AS MATERIALIZED ( \
                     SELECT seq, id, attempts FROM deliveries \
                     WHERE state = 'dead' AND id = ANY(",
            );
            sql.push_bind(ids.clone())
                .push(") ORDER BY id FOR UPDATE")
                .push(&change)
                .push_bind(note.to_string())
                .push(" FROM changed) SELECT id FROM changed");
            let changed: HashSet<String> = sql
                .build_query_scalar::<String>()
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
            let unchanged: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| !changed.contains(*id))
                .collect();
            let mut states: HashMap<String, String> = HashMap::new();
            if !unchanged.is_empty() {
                for row in sqlx::query("SELECT id, state FROM deliveries WHERE id = ANY($1)")
                    .bind(&unchanged)
                    .fetch_all(&mut *conn)
                    .await?
                {
                    states.insert(row.try_get(0)?, row.try_get(1)?);
                }
            }
            for id in ids {
                if changed.contains(id) {
                    acted.changed.push(id.to_string());
                    continue;
                }
                let skip = match states.get(id) {
                    None => Skip::NotFound,
                    Some(state) => Skip::NotDead(State::parse(state).unwrap_or(State::Dead)),
                };
                acted.skipped.push((id.to_string(), skip));
            }
        }
        Selection::Filter { filters, limit } => {
            // SKIP LOCKED: dead rows another operator is acting on right now are theirs.
            let mut sql = QueryBuilder::<Postgres>::new(
                "WITH matched AS MATERIALIZED ( \
                     SELECT seq, id, attempts FROM deliveries WHERE state = 'dead'",
            );
            push_filters(&mut sql, filters);
            sql.push(" ORDER BY seq LIMIT ")
                .push_bind(i64::from(*limit) + 1)
                .push(" FOR UPDATE SKIP LOCKED), old AS (SELECT * FROM matched ORDER BY seq LIMIT ")
                .push_bind(i64::from(*limit))
                .push(&change)
                .push_bind(note.to_string())
                .push(
                    " FROM changed) \
                     SELECT COALESCE((SELECT array_agg(id ORDER BY seq) FROM changed), '{}'), \
                            (SELECT count(*) FROM matched)",
                );
            let row = sql.build().fetch_one(&mut *conn).await?;
            acted.changed = row.try_get(0)?;
            acted.more = row.try_get::<i64, _>(1)? > i64::from(*limit);
        }
    }
    // Redriven deliveries are due now: as for new ones, other replicas need not wait for a poll.
    // Sent after the change committed, so its failure is no failure of the redrive: the poll
    // finds the deliveries all the same.
    if matches!(action, OperatorAction::Redrive)
        && !acted.changed.is_empty()
        && let Err(e) = sqlx::query(super::wakeups::NOTIFY)
            .execute(&mut *conn)
            .await
    {
        tracing::debug!(error = %e, "cannot announce redriven deliveries; the poll finds them");
    }
    Ok(acted)
}

/// One delivery and its history, read from one snapshot.
async fn get(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<(StoredDelivery, Vec<HistoryEvent>)>, sqlx::Error> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM deliveries WHERE id = "));
    sql.push_bind(id);
    let Some(row) = sql.build().fetch_optional(&mut *tx).await? else {
        return Ok(None);
    };
    let (_, delivery) = decode_listed(&row)?;
    let rows = sqlx::query(
        "SELECT at, kind, attempts, detail FROM delivery_events WHERE delivery_id = $1 \
         ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
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
            attempts: u32::try_from(row.try_get::<i64, _>(2)?).unwrap_or(0),
            detail: row.try_get(3)?,
        });
    }
    Ok(Some((delivery, history)))
}

/// ` AND ...` for each filter; values are bound, never spliced.
fn push_filters(sql: &mut QueryBuilder<Postgres>, filters: &[Filter]) {
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
                // strpos, not LIKE: the value is taken literally, % and _ included.
                sql.push(format!(" AND strpos({column}, "))
                    .push_bind(filter.values[0].clone())
                    .push(") > 0");
            }
            FilterOp::ValueIn => {
                sql.push(format!(" AND {column} = ANY("))
                    .push_bind(filter.values.clone())
                    .push(")");
            }
            FilterOp::InScope => {
                // (project = $n AND domain = $m) OR ...; `1 = 0` first, so that no pairs is nothing.
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

fn execution_key(row: &PgRow) -> Result<ExecutionKey, sqlx::Error> {
    Ok(ExecutionKey {
        project: row.try_get("project")?,
        domain: row.try_get("domain")?,
        name: row.try_get("name")?,
        org: row.try_get("org")?,
    })
}

/// One row for ListPending, whatever state it is in. The columns are typed, so only what this
/// binary interprets can be unreadable (a state or payload from a newer version); such a row is
/// shown with its payload as an error that says why.
fn decode_listed(row: &PgRow) -> Result<(i64, StoredDelivery), sqlx::Error> {
    let seq: i64 = row.try_get("seq")?;
    let payload: String = row.try_get("payload")?;
    let mut payload = Payload::decode(&payload).map(|(p, _)| p);
    let state: String = row.try_get("state")?;
    let state = State::parse(&state).unwrap_or_else(|| {
        payload = Err(format!(
            "the stored row cannot be read: state {state:?} is not a state"
        ));
        State::Dead
    });
    let channel: String = row.try_get("channel")?;
    let delivery = StoredDelivery {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        execution: execution_key(row)?,
        phase: row.try_get("phase")?,
        channel: Channel::parse(&channel),
        state,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        payload,
        digest_id: row.try_get("digest_id")?,
    };
    Ok((seq, delivery))
}
